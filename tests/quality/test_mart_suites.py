"""The suites of the commission, reconciliation and statement-line marts and of the fraud scores:
good rows pass, planted bad rows fail naming the expectation, the count and an example. Money is
exact: the planted errors are one minor unit on amounts of 10^30. On DuckDB and Postgres."""

from __future__ import annotations

from quality.run import validate
from tests.quality.test_suites import BIG, REVENUE, STATEMENT, _statement, assert_passes, failures

LINES = ("INSERT INTO analytics.fct_settlement_statement_lines (line_id, statement_id, "
         "merchant_id, settlement_cycle, period_start, period_end, currency, line_type, "
         "item_type, is_late, payment_id, refund_id, payout_id, adjustment_id, psp_line_id, "
         "fx_derivation, gross_minor, fee_minor, net_minor) VALUES ")


def _line(line_id: str, statement: str, item: str, gross: int, fee: int, *, net_off: int = 0,
          line_type: str | None = None, link: str | None = "x", fx: str = "none") -> str:
    links = {"payment": 0, "refund": 1, "payout": 2, "adjustment": 3, "chargeback": 4}
    ids = ["NULL"] * 5
    if link is not None and item in links:
        ids[links[item]] = f"'{link}'"
    return (f"('{line_id}', '{statement}', 'mer_1', 'daily', DATE '2026-11-20', "
            f"DATE '2026-11-20', 'USD', '{line_type or item}', '{item}', false, "
            f"{', '.join(ids)}, '{fx}', {gross}, {fee}, {gross - fee + net_off})")


def test_settlement_statement_lines_add_up_to_their_statement(warehouse):
    lines = [
        _line("payment:pay_1", "s1", "payment", BIG, 30),
        _line("refund:ref_1", "s1", "refund", -100, -3),
        _line("chargeback:pay_2", "s1", "chargeback", -50, 0),
        _line("payout:wd_1", "s1", "payout", -500, 0),
        _line("adjustment:adj_1", "s1", "adjustment", 5, 0),
    ]
    # s1: gross BIG, refunds 100, chargebacks 50, fees 27, adjustments -5 - 2, payouts 500
    warehouse.execute(STATEMENT + _statement("s1", 0, BIG, 100, 50, 27, -7, 500))
    warehouse.execute(LINES + ", ".join(lines))
    # a correction is a difference: a payment's fee lowered by 2 after its statement closed
    warehouse.execute(
        LINES.replace("is_late,", "is_late, is_correction, item_id,")
        + _line("correction:payment:pay_0:1", "s1", "payment", 0, -2, line_type="adjustment")
        .replace("'payment', false,", "'payment', true, true, 'payment:pay_0',"))
    ok = assert_passes(warehouse, "analytics.fct_settlement_statement_lines")
    assert ok.rows == 6

    warehouse.execute(STATEMENT + _statement("s2", 0, 1000, 0, 0, 30, 0, 0))
    warehouse.execute(LINES + ", ".join([
        _line("payment:pay_3", "s2", "payment", 1000, 30, net_off=1),
        _line("payment:pay_4", "s2", "payment", -5, 0, link=None),
        _line("refund:ref_2", "s2", "refund", -10, 3),
        _line("payout:wd_2", "s2", "payout", -10, 1),
        _line("bonus:b_1", "s2", "adjustment", 0, 0, line_type="bonus", fx="guessed"),
    ]))
    result = validate(warehouse.settings, "analytics.fct_settlement_statement_lines")
    assert not result.success
    found = failures(result)
    net_found = found[("expect_column_values_to_be_in_set", "net_residual_minor")]
    assert net_found.examples == [{"line_id": "payment:pay_3", "net_residual_minor": "1"}]
    gross = found[("expect_column_values_to_match_regex", "item_gross_minor")]
    assert gross.examples == [{"line_id": "payment:pay_4", "item_gross_minor": "-5"}]
    fee = found[("expect_column_values_to_match_regex", "item_fee_minor")]
    assert fee.examples == [{"line_id": "refund:ref_2", "item_fee_minor": "-3"}]
    assert found[("expect_column_values_to_be_in_set", "other_fee_minor")].examples == [
        {"line_id": "payout:wd_2", "other_fee_minor": "1"}]
    assert found[("expect_column_values_to_not_be_null", "payment_id")].examples == [
        {"line_id": "payment:pay_4", "payment_id": None}]
    assert found[("expect_column_values_to_be_in_set", "line_type")].unexpected_count == 1
    assert found[("expect_column_values_to_be_in_set", "fx_derivation")].unexpected_count == 1
    tie = found[("expect_column_values_to_be_in_set", "statement_tie_residual_minor")]
    # every line of s2 (and none of s1) shows the statement's residual
    assert tie.unexpected_count == 5
    assert {e["line_id"].split(":")[0] for e in tie.examples} <= {
        "payment", "refund", "payout", "bonus"}
    assert len(found) == 8


def test_statement_lines_without_their_statements_mart(warehouse):
    """The tie-out reads fct_settlement_statements: without it the expectation fails (the rest
    still runs)."""
    warehouse.execute(LINES + _line("payment:pay_1", "s1", "payment", 1000, 30))
    warehouse.execute("DROP TABLE analytics.fct_settlement_statements")
    (missing,) = validate(warehouse.settings, "analytics.fct_settlement_statement_lines").failures
    assert missing.column == "statement_tie_residual_minor"
    assert missing.observed.startswith("error:")


COMMISSIONS = ("INSERT INTO analytics.fct_commissions (commission_id, event_id, event_kind, "
               "payment_id, merchant_id, beneficiary_id, level, model, rate_bps, pct_bps, "
               "fixed_minor, amount_minor, currency) VALUES ")


def _commission(event: str, kind: str, agent: str, level: int, model: str, amount: int, *,
                rate: bool = True) -> str:
    rates = {"markup": "150, NULL, 10", "percentage": "NULL, 50, NULL",
             "fixed": "NULL, NULL, 25"}.get(model, "NULL, NULL, NULL")
    if not rate:
        rates = "NULL, NULL, NULL"
    return (f"('{event}:{agent}:{level}', '{event}', '{kind}', 'pay_1', 'mer_1', '{agent}', "
            f"{level}, '{model}', {rates}, {amount}, 'USD')")


def test_commissions_signs_rates_and_the_revenue_tie(warehouse):
    warehouse.execute(REVENUE + (
        f"('pay_1', 'payment', 'pay_1', 'mer_1', 'USD', {BIG}, 10, {BIG - 3}, 13), "
        "('ref_1', 'refund', 'pay_1', 'mer_1', 'USD', -5, 0, -5, 0)"))
    warehouse.execute(COMMISSIONS + ", ".join([
        _commission("pay_1", "payment", "ag_1", 1, "markup", -3),  # a negative spread: allowed
        _commission("pay_1", "payment", "ag_2", 2, "percentage", BIG - 25),
        _commission("pay_1", "payment", "ag_3", 3, "fixed", 25),
        _commission("ref_1", "refund", "ag_2", 2, "percentage", -5),
    ]))
    assert assert_passes(warehouse, "analytics.fct_commissions").rows == 4

    warehouse.execute(REVENUE + "('pay_2', 'payment', 'pay_2', 'mer_1', 'USD', 30, 10, 5, 15)")
    warehouse.execute(COMMISSIONS + ", ".join([
        _commission("pay_2", "payment", "ag_2", 1, "percentage", -1),
        _commission("pay_2", "payment", "ag_3", 2, "fixed", 5, rate=False),
        _commission("pay_9", "payment", "ag_3", 1, "bonus", 5),
    ]))
    found = failures(validate(warehouse.settings, "analytics.fct_commissions"))
    direction = found[("expect_column_values_to_match_regex", "platform_paid_direction_minor")]
    assert direction.examples == [{"commission_id": "pay_2:ag_2:1",
                                   "platform_paid_direction_minor": "-1"}]
    tie = found[("expect_column_values_to_be_in_set", "revenue_tie_residual_minor")]
    assert sorted((e["commission_id"], e["revenue_tie_residual_minor"]) for e in tie.examples) == [
        ("pay_2:ag_2:1", "-1"), ("pay_2:ag_3:2", "-1"), ("pay_9:ag_3:1", "missing")]
    assert found[("expect_column_values_to_not_be_null", "fixed_minor")].examples == [
        {"commission_id": "pay_2:ag_3:2", "fixed_minor": None}]
    assert found[("expect_column_values_to_be_in_set", "model")].examples == [
        {"commission_id": "pay_9:ag_3:1", "model": "bonus"}]
    assert len(found) == 4


AGENT_STATEMENTS = ("INSERT INTO analytics.fct_agent_commission_statements (statement_id, "
                    "agent_id, currency, period_start, period_end, settlement_cycle, "
                    "opening_balance_minor, earned_minor, reversed_minor, net_minor, "
                    "closing_balance_minor, adjustments_minor) VALUES ")


def _agent_statement(agent: str, month: int, opening: int, earned: int, reversed_: int, *,
                     net_off: int = 0, closing_off: int = 0) -> str:
    net = earned + reversed_ + net_off
    return (f"('{agent}:USD:2026-{month:02d}', '{agent}', 'USD', DATE '2026-{month:02d}-01', "
            f"DATE '2026-{month:02d}-28', 'monthly', {opening}, {earned}, {reversed_}, {net}, "
            f"{opening + net + closing_off}, 0)")


def test_agent_commission_statements_roll_forward_and_tie_to_the_commissions(warehouse):
    warehouse.execute(COMMISSIONS + ", ".join([
        _commission("pay_1", "payment", "ag_1", 1, "percentage", 100),
        _commission("pay_2", "payment", "ag_1", 1, "percentage", BIG),
        _commission("ref_2", "refund", "ag_1", 1, "percentage", -1),
    ]))
    warehouse.execute(AGENT_STATEMENTS + ", ".join([
        _agent_statement("ag_1", 10, 0, 100, 0),
        _agent_statement("ag_1", 11, 100, BIG, -1),
    ]))
    assert_passes(warehouse, "analytics.fct_agent_commission_statements")

    warehouse.execute(AGENT_STATEMENTS + ", ".join([
        _agent_statement("ag_2", 10, 5, 10, 0),  # the first statement opens at 5
        _agent_statement("ag_2", 11, 15, 10, -2, net_off=1),
        _agent_statement("ag_3", 11, 0, BIG, 0, closing_off=1),
    ]))
    result = validate(warehouse.settings, "analytics.fct_agent_commission_statements")
    assert not result.success
    found = failures(result)
    assert found[("expect_column_values_to_be_in_set", "opening_residual_minor")].examples == [
        {"statement_id": "ag_2:USD:2026-10", "opening_residual_minor": "5"}]
    assert found[("expect_column_values_to_be_in_set", "net_residual_minor")].examples == [
        {"statement_id": "ag_2:USD:2026-11", "net_residual_minor": "1"}]
    closing = found[("expect_column_values_to_be_in_set", "closing_residual_minor")]
    assert closing.examples == [{"statement_id": "ag_3:USD:2026-11",
                                 "closing_residual_minor": "1"}]
    tie = found[("expect_column_values_to_be_in_set", "commissions_tie_residual_minor")]
    # only each agent's latest statement is tied; ag_2 and ag_3 have no commission rows
    assert sorted((e["statement_id"], e["commissions_tie_residual_minor"])
                  for e in tie.examples) == [("ag_2:USD:2026-11", "missing"),
                                             ("ag_3:USD:2026-11", "missing")]
    assert len(found) == 4


MATCHES = ("INSERT INTO analytics.fct_reconciliation_matches (match_id, match_type, channel, "
           "currency, payment_id, statement_line_id, chain_tx_hash, amount_minor, matched_on) "
           "VALUES ")


def test_reconciliation_matches_name_their_evidence(warehouse):
    warehouse.execute(MATCHES + (
        f"('m1', 'exact_reference', 'ch_card', 'USD', 'pay_1', NULL, NULL, {BIG}, "
        "DATE '2026-11-21'), "
        "('m2', 'payout_batch', 'ch_card', 'USD', NULL, 'f1:0:0', NULL, 970, DATE '2026-11-22'), "
        "('m3', 'chain', 'ch_usdc', 'USDC', 'pay_2', NULL, '0xab', 5, DATE '2026-11-20'), "
        "('m4', 'exact_reference', 'ch_card', 'USD', 'pay_1', NULL, NULL, -100, "
        "DATE '2026-11-21')"))
    assert_passes(warehouse, "analytics.fct_reconciliation_matches")
    warehouse.execute(MATCHES + (
        "('m5', 'payout_batch', 'ch_card', 'USD', NULL, NULL, NULL, 970, DATE '2026-11-22'), "
        "('m6', 'hunch', 'ch_card', 'USD', 'pay_3', NULL, NULL, 5, DATE '2026-11-22'), "
        "('m1', 'fuzzy', 'ch_card', 'USD', 'pay_4', NULL, NULL, 5, NULL)"))
    found = failures(validate(warehouse.settings, "analytics.fct_reconciliation_matches"))
    assert found[("expect_column_values_to_not_be_null", "statement_line_id")].examples == [
        {"match_id": "m5", "statement_line_id": None}]
    assert found[("expect_column_values_to_be_in_set", "match_type")].examples == [
        {"match_id": "m6", "match_type": "hunch"}]
    assert found[("expect_column_values_to_be_unique", "match_id")].unexpected_count == 2
    assert found[("expect_column_values_to_not_be_null", "matched_on")].unexpected_count == 1
    assert len(found) == 4


BREAKS = ("INSERT INTO analytics.fct_reconciliation_breaks (break_id, break_type, channel, "
          "currency, payment_id, ledger_amount_minor, channel_amount_minor, delta_minor, "
          "first_seen, age_days, status, resolved_at, resolved_by, candidates) VALUES ")


def _break(bid: str, kind: str, ledger: str, channel: str, delta: str, *, status: str = "open",
           resolved_at: str = "NULL", resolved_by: str = "NULL", candidates: str = "NULL") -> str:
    return (f"('{bid}', '{kind}', 'ch_card', 'USD', 'pay_1', {ledger}, {channel}, {delta}, "
            f"DATE '2026-11-20', 3, '{status}', {resolved_at}, {resolved_by}, {candidates})")


def test_reconciliation_breaks_delta_and_resolution(warehouse):
    warehouse.execute(BREAKS + ", ".join([
        _break("b1", "amount_mismatch", str(BIG), str(BIG - 10), "-10"),
        _break("b2", "missing_in_channel", "1000", "NULL", "NULL"),
        _break("b3", "missing_in_ledger", "NULL", "500", "NULL", status="resolved",
               resolved_at="DATE '2026-11-22'", resolved_by="'match:m1'"),
        _break("b4", "ambiguous", "NULL", "500", "NULL", candidates="'pay_1,pay_2'"),
    ]))
    assert_passes(warehouse, "analytics.fct_reconciliation_breaks")
    warehouse.execute(BREAKS + ", ".join([
        _break("b5", "fee_mismatch", str(BIG), str(BIG + 30), "29"),
        _break("b6", "amount_mismatch", "500", "500", "0"),
        _break("b7", "missing_in_ledger", "NULL", "500", "500", status="resolved"),
        _break("b8", "duplicate_in_channel", "5", "5", "0", resolved_at="DATE '2026-11-22'"),
        _break("b9", "lost_in_space", "5", "5", "0", candidates="NULL"),
        _break("b10", "ambiguous", "NULL", "5", "NULL"),
    ]))
    found = failures(validate(warehouse.settings, "analytics.fct_reconciliation_breaks"))
    delta = found[("expect_column_values_to_be_in_set", "delta_residual_minor")]
    assert delta.examples == [{"break_id": "b5", "delta_residual_minor": "-1"},
                              {"break_id": "b7", "delta_residual_minor": "delta without both sides"}]
    assert found[("expect_column_values_to_not_be_in_set", "mismatch_delta_minor")].examples == [
        {"break_id": "b6", "mismatch_delta_minor": "0"}]
    assert found[("expect_column_values_to_not_be_null", "resolved_at")].examples == [
        {"break_id": "b7", "resolved_at": None}]
    assert found[("expect_column_values_to_not_be_null", "resolved_by")].unexpected_count == 1
    assert found[("expect_column_values_to_be_null", "resolved_at")].examples[0] == {
        "break_id": "b8", "resolved_at": "2026-11-22"}
    assert found[("expect_column_values_to_be_in_set", "break_type")].examples == [
        {"break_id": "b9", "break_type": "lost_in_space"}]
    assert found[("expect_column_values_to_not_be_null", "candidates")].examples == [
        {"break_id": "b10", "candidates": None}]
    assert len(found) == 7


SCORES = ("INSERT INTO analytics.fct_fraud_scores (payment_id, merchant_id, created_at, score, "
          "decision, reasons, model_version, scored_at) VALUES ")


def _score(payment: str, score: int, decision: str, version: str = "'pay-v1'") -> str:
    return (f"('{payment}', 'mer_1', TIMESTAMP '2026-11-20 09:30:00', {score}, '{decision}', "
            f"'', {version}, TIMESTAMP '2026-11-21 00:15:00')")


def test_fraud_scores(warehouse):
    assert_passes(warehouse, "analytics.fct_fraud_scores")  # no champion yet: empty is fine
    warehouse.execute(SCORES + ", ".join([
        _score("pay_1", 0, "approve"), _score("pay_2", 99, "block"), _score("pay_3", 60, "review"),
    ]))
    assert assert_passes(warehouse, "analytics.fct_fraud_scores").rows == 3
    warehouse.execute(SCORES + ", ".join([
        _score("pay_4", 100, "block"), _score("pay_5", 10, "maybe"),
        _score("pay_1", -1, "approve", version="NULL"),
    ]))
    result = validate(warehouse.settings, "analytics.fct_fraud_scores")
    found = failures(result)
    score = found[("expect_column_values_to_be_between", "score")]
    assert sorted((e["payment_id"], e["score"]) for e in score.examples) == [
        ("pay_1", -1), ("pay_4", 100)]
    assert found[("expect_column_values_to_be_in_set", "decision")].examples == [
        {"payment_id": "pay_5", "decision": "maybe"}]
    assert found[("expect_column_values_to_be_unique", "payment_id")].unexpected_count == 2
    assert found[("expect_column_values_to_not_be_null", "model_version")].unexpected_count == 1
    assert len(found) == 4
