"""Each suite passes on good data and fails on planted bad data, naming the expectation, the
count and an example; on DuckDB and Postgres. Money is exact: the planted errors are one minor
unit on amounts of 10^30, which a float comparison would call equal."""

from __future__ import annotations

from datetime import datetime

from quality.run import QualityResult, _mark_checked_through, validate

BIG = 10**30  # float(BIG + 1) == float(BIG)


def failures(result: QualityResult) -> dict[tuple[str, str | None], object]:
    return {(f.expectation, f.column): f for f in result.failures}


def assert_passes(wh, suite: str) -> QualityResult:
    result = validate(wh.settings, suite)
    assert result.success, result.markdown()
    assert result.failures == ()
    assert result.report_path.is_file()
    assert "passed" in result.report_path.read_text()
    return result


def test_raw_payments(warehouse):
    warehouse.execute(
        "INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, status, "
        "refunded_minor, captured_at) VALUES "
        "('pay_1', 'mer_1', 1250, 'USD', 'success', 0, TIMESTAMP '2026-11-20 09:30:00'), "
        "('pay_2', 'mer_1', 500, 'JPY', 'failed', 0, NULL), "
        f"('pay_3', 'mer_1', {BIG}, 'USDC', 'partially_refunded', {BIG - 1}, "
        "TIMESTAMP '2026-11-20 10:00:00')")
    ok = assert_passes(warehouse, "raw.payments")
    assert ok.rows == 3

    warehouse.execute(
        "INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, status, "
        "refunded_minor) VALUES ('pay_neg', 'mer_1', -500, 'USD', 'success', 0), "
        "('pay_odd', 'mer_1', 700, 'usd', 'teleported', 0), "
        f"('pay_over', 'mer_1', {BIG}, 'USD', 'refunded', {BIG + 1})")
    result = validate(warehouse.settings, "raw.payments")
    assert not result.success
    found = failures(result)
    amount = found[("expect_column_values_to_match_regex", "amount_minor")]
    assert amount.unexpected_count == 1
    assert amount.examples == [{"id": "pay_neg", "amount_minor": "-500"}]
    status = found[("expect_column_values_to_be_in_set", "status")]
    assert (status.unexpected_count, status.examples) == (1, [{"id": "pay_odd",
                                                               "status": "teleported"}])
    over = found[("expect_column_values_to_match_regex", "unrefunded_minor")]
    assert over.examples == [{"id": "pay_neg", "unrefunded_minor": "-500"},
                             {"id": "pay_over", "unrefunded_minor": "-1"}]
    assert found[("expect_column_values_to_match_regex", "currency")].examples == [
        {"id": "pay_odd", "currency": "usd"}]
    assert len(result.failures) == 4
    page = result.report_path.read_text()
    assert "FAILED" in page and "teleported" in page and "http" not in page
    # each run keeps its own report (the check links it); index.html is the latest
    assert ok.report_path != result.report_path and "passed" in ok.report_path.read_text()
    assert (result.report_path.parent.parent / "index.html").read_text() == page


def test_raw_refunds(warehouse):
    warehouse.execute(
        "INSERT INTO raw.refunds (id, payment_id, merchant_id, amount_minor, currency, status) "
        "VALUES ('ref_1', 'pay_1', 'mer_1', 250, 'USD', 'succeeded')")
    assert_passes(warehouse, "raw.refunds")
    warehouse.execute(
        "INSERT INTO raw.refunds (id, payment_id, merchant_id, amount_minor, currency, status) "
        "VALUES ('ref_0', 'pay_1', 'mer_1', 0, 'USD', 'unheard_of'), "
        "('ref_1', 'pay_1', 'mer_1', 250, 'USD', 'succeeded')")
    found = failures(validate(warehouse.settings, "raw.refunds"))
    assert found[("expect_column_values_to_match_regex", "amount_minor")].examples == [
        {"id": "ref_0", "amount_minor": "0"}]
    assert found[("expect_column_values_to_be_in_set", "status")].unexpected_count == 1
    duplicate = found[("expect_column_values_to_be_unique", "id")]
    assert duplicate.unexpected_count == 2
    assert {e["id"] for e in duplicate.examples} == {"ref_1"}


def test_raw_ledger_entries_balance_per_transaction(warehouse):
    insert = ("INSERT INTO raw.ledger_entries (id, transaction_id, kind, merchant_id, account, "
              "currency, amount_minor, effective_at) VALUES ")
    warehouse.execute(insert + (
        f"(1, 'txn_1', 'capture', 'mer_1', 'psp_receivable', 'USD', {BIG}, "
        "TIMESTAMP '2026-11-20 09:30:00'), "
        f"(2, 'txn_1', 'capture', 'mer_1', 'merchant_payable', 'USD', {-BIG}, "
        "TIMESTAMP '2026-11-20 09:30:00')"))
    assert_passes(warehouse, "raw.ledger_entries")
    warehouse.execute(insert + (
        f"(3, 'txn_2', 'refund', 'mer_1', 'merchant_payable', 'USD', {BIG + 1}, "
        "TIMESTAMP '2026-11-20 10:00:00'), "
        f"(4, 'txn_2', 'refund', 'mer_1', 'psp_receivable', 'USD', {-BIG}, "
        "TIMESTAMP '2026-11-20 10:00:00'), "
        "(5, 'txn_3', 'mystery', 'mer_1', 'x', 'USD', 0, TIMESTAMP '2026-11-20 10:00:00')"))
    result = validate(warehouse.settings, "raw.ledger_entries")
    found = failures(result)
    unbalanced = found[("expect_column_values_to_be_in_set", "transaction_balance_minor")]
    assert unbalanced.unexpected_count == 2
    assert sorted(e["id"] for e in unbalanced.examples) == [3, 4]
    assert {e["transaction_balance_minor"] for e in unbalanced.examples} == {"1"}
    assert unbalanced.description == "the legs of a transaction sum to zero per currency"
    assert found[("expect_column_values_to_be_in_set", "kind")].examples == [
        {"id": 5, "kind": "mystery"}]


def test_psp_lines_net_is_gross_minus_fee(warehouse):
    insert = ("INSERT INTO raw.psp_lines (psp_line_id, file_id, record_type, channel, currency, "
              "gross_minor, fee_minor, net_minor) VALUES ")
    warehouse.execute(insert + "('l1', 'f1', 'payment', 'ch_card', 'EUR', 1000, 30, 970), "
                               "('l2', 'f1', 'refund', 'ch_card', 'EUR', -200, 0, -200)")
    assert_passes(warehouse, "raw.psp_lines")
    warehouse.execute(insert + "('l3', 'f1', 'payment', 'ch_card', 'EUR', 1000, 30, 971), "
                               "('l4', 'f1', 'bonus', 'ch_card', 'EUR', 5, 0, 5), "
                               "('l5', 'f1', 'payment', 'ch_card', 'EUR', 5, NULL, 5)")
    found = failures(validate(warehouse.settings, "raw.psp_lines"))
    net = found[("expect_column_values_to_be_in_set", "net_residual_minor")]
    assert net.unexpected_count == 2
    assert net.examples == [{"psp_line_id": "l3", "net_residual_minor": "1"},
                            {"psp_line_id": "l5", "net_residual_minor": "missing"}]
    assert found[("expect_column_values_to_be_in_set", "record_type")].examples == [
        {"psp_line_id": "l4", "record_type": "bonus"}]


STATEMENT = ("INSERT INTO analytics.fct_settlement_statements (statement_id, merchant_id, "
             "settlement_cycle, period_start, period_end, status, currency, "
             "opening_balance_minor, gross_minor, refunds_minor, chargebacks_minor, fees_minor, "
             "adjustments_minor, net_activity_minor, payouts_minor, closing_balance_minor) "
             "VALUES ")


def _statement(sid: str, opening: int, gross: int, refunds: int, chargebacks: int, fees: int,
               adjustments: int, payouts: int, *, closing_off: int = 0, net_off: int = 0) -> str:
    net = opening + gross - refunds - chargebacks - fees - adjustments + net_off
    closing = net - payouts + closing_off
    return (f"('{sid}', 'mer_1', 'daily', DATE '2026-11-20', DATE '2026-11-20', 'closed', 'USD', "
            f"{opening}, {gross}, {refunds}, {chargebacks}, {fees}, {adjustments}, {net}, "
            f"{payouts}, {closing})")


def test_settlement_statements_balance_to_the_minor_unit(warehouse):
    warehouse.execute(
        "INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, status, "
        "refunded_minor, captured_at) VALUES ('pay_1', 'mer_1', 1000, 'USD', 'success', 0, "
        "TIMESTAMP '2026-11-20 09:30:00')")
    empty = validate(warehouse.settings, "analytics.fct_settlement_statements")
    (rows,) = empty.failures
    assert rows.expectation == "expect_table_row_count_to_be_between"
    assert rows.observed == "0"

    warehouse.execute(STATEMENT + ", ".join([
        _statement("s1", 0, 1000, 100, 0, 30, -5, 500),
        _statement("s2", BIG, BIG, 7, 3, 30, 0, BIG),
    ]))
    assert_passes(warehouse, "analytics.fct_settlement_statements")

    warehouse.execute(STATEMENT + ", ".join([
        _statement("s3", BIG, BIG, 7, 3, 30, 0, BIG, closing_off=1),
        _statement("s4", 0, 1000, 100, 0, 30, 0, 0, net_off=-1),
        _statement("s5", 0, 0, -1, 0, 0, 0, 0),
    ]))
    result = validate(warehouse.settings, "analytics.fct_settlement_statements")
    assert not result.success
    found = failures(result)
    closing = found[("expect_column_values_to_be_in_set", "closing_residual_minor")]
    assert (closing.unexpected_count, closing.examples) == (
        1, [{"statement_id": "s3", "closing_residual_minor": "1"}])
    assert closing.description == "closing = net_activity - payouts"
    net = found[("expect_column_values_to_be_in_set", "net_activity_residual_minor")]
    assert net.examples == [{"statement_id": "s4", "net_activity_residual_minor": "-1"}]
    assert found[("expect_column_values_to_match_regex", "refunds_minor")].examples == [
        {"statement_id": "s5", "refunds_minor": "-1"}]
    assert "s3" in result.markdown() and "closing_residual_minor" in result.markdown()


REVENUE = ("INSERT INTO analytics.fct_platform_revenue (event_id, event_kind, payment_id, "
           "merchant_id, currency, merchant_fee_minor, channel_cost_minor, "
           "agent_commission_minor, platform_net_minor) VALUES ")


def test_platform_revenue_conservation(warehouse):
    warehouse.execute(REVENUE + "('e1', 'payment', 'pay_1', 'mer_1', 'USD', 30, 10, 5, 15), "
                                "('e2', 'refund', 'pay_1', 'mer_1', 'USD', -3, -1, 0, -2)")
    assert_passes(warehouse, "analytics.fct_platform_revenue")
    warehouse.execute(REVENUE + "('e3', 'payment', 'pay_2', 'mer_1', 'USD', 30, 10, 5, 16)")
    found = failures(validate(warehouse.settings, "analytics.fct_platform_revenue"))
    assert list(found) == [("expect_column_values_to_be_in_set", "conservation_residual_minor")]
    (failure,) = found.values()
    assert (failure.unexpected_count, failure.examples) == (
        1, [{"event_id": "e3", "conservation_residual_minor": "-1"}])


def test_a_missing_column_or_table_fails(warehouse):
    warehouse.execute("ALTER TABLE raw.refunds DROP COLUMN currency")
    result = validate(warehouse.settings, "raw.refunds")
    schema = failures(result)[("expect_table_columns_to_match_set", None)]
    assert "currency" in schema.observed
    warehouse.execute("DROP TABLE analytics.fct_platform_revenue")
    (missing,) = validate(warehouse.settings, "analytics.fct_platform_revenue").failures
    assert missing.expectation == "table_exists"


def _insert_payments(warehouse, *rows: tuple[str, int, str]) -> None:
    """(id, amount_minor, _extracted_at) rows of an otherwise valid USD payment."""
    warehouse.execute(
        "INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, status, "
        "refunded_minor, _extracted_at) VALUES " + ", ".join(
            f"('{pid}', 'mer_1', {amount}, 'USD', 'success', 0, TIMESTAMP '2026-11-20 {at}')"
            for pid, amount, at in rows))


def test_raw_suites_check_what_arrived_since_the_last_pass_until_it_passes(warehouse):
    """A raw table is checked whole the first time, then on the rows extracted since the last
    passing check: rows that failed are checked again on every run - an unrelated later extract
    does not let them through - until a corrected extract passes."""
    _insert_payments(warehouse, ("pay_old", 100, "01:00:00"))
    assert assert_passes(warehouse, "raw.payments").rows == 1
    _insert_payments(warehouse, ("pay_new", 200, "02:00:00"))
    assert assert_passes(warehouse, "raw.payments").rows == 1  # only what came since

    _insert_payments(warehouse, ("pay_bad", -7, "03:00:00"))
    found = failures(validate(warehouse.settings, "raw.payments"))
    assert found[("expect_column_values_to_match_regex", "amount_minor")].examples == [
        {"id": "pay_bad", "amount_minor": "-7"}]
    _insert_payments(warehouse, ("pay_next", 300, "04:00:00"))  # an unrelated later extract
    again = validate(warehouse.settings, "raw.payments")
    assert not again.success and again.rows == 2
    assert failures(again)[("expect_column_values_to_match_regex", "amount_minor")].examples == [
        {"id": "pay_bad", "amount_minor": "-7"}]

    warehouse.execute("UPDATE raw.payments SET amount_minor = 7, "
                      "_extracted_at = TIMESTAMP '2026-11-20 05:00:00' WHERE id = 'pay_bad'")
    assert assert_passes(warehouse, "raw.payments").rows == 2  # pay_bad corrected, pay_next
    assert assert_passes(warehouse, "raw.payments").rows == 0


def test_raw_ledger_legs_balance_over_the_whole_table(warehouse):
    """Only the rows since the last pass are checked, but a transaction whose legs came in two
    extracts balances over the whole table."""
    warehouse.execute(
        "INSERT INTO raw.ledger_entries (id, transaction_id, kind, merchant_id, account, "
        "currency, amount_minor, effective_at, _extracted_at) VALUES "
        "(1, 'ltx_1', 'capture', 'mer_1', 'a', 'USD', 100, TIMESTAMP '2026-11-20 00:00:00', "
        "TIMESTAMP '2026-11-20 01:00:00'), "
        "(2, 'ltx_1', 'capture', 'mer_1', 'b', 'USD', -100, TIMESTAMP '2026-11-20 00:00:00', "
        "TIMESTAMP '2026-11-20 02:00:00')")
    # as if the check had passed after the first extract
    _mark_checked_through(warehouse.settings, "raw.ledger_entries", datetime(2026, 11, 20, 1))
    assert assert_passes(warehouse, "raw.ledger_entries").rows == 1


def test_reports_beyond_the_kept_number_are_removed(warehouse, monkeypatch):
    import quality.run

    monkeypatch.setattr(quality.run, "KEEP_REPORTS", 3)
    warehouse.execute("INSERT INTO raw.payments (id, merchant_id, amount_minor, currency, "
                      "status, refunded_minor) VALUES ('pay_1', 'mer_1', 1, 'USD', 'failed', 0)")
    paths = [validate(warehouse.settings, "raw.payments").report_path for _ in range(5)]
    assert len(set(paths)) == 5  # one per run, in time order
    assert sorted(paths[0].parent.glob("*.html")) == paths[-3:]

