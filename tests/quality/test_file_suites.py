"""The suites of the raw file tables (bank statements and their lines, chain logs, FX rates,
fraud reports): good rows pass, planted bad rows fail naming the expectation, the count and an
example; superseded rows are not checked. On DuckDB and Postgres."""

from __future__ import annotations

from quality.run import validate
from tests.quality.test_suites import BIG, assert_passes, failures

STATEMENTS = ("INSERT INTO raw.bank_statements (statement_uid, file_id, statement_index, format, "
              "message_type, account_id, currency, opening_balance_minor, closing_balance_minor, "
              "lines_total_minor, balance_check, line_count, superseded_by) VALUES ")


def test_bank_statements_an_ok_balance_check_holds(warehouse):
    warehouse.execute(STATEMENTS + (
        f"('f1:0', 'f1', 0, 'camt', 'camt.053', 'DE89', 'EUR', {BIG}, {BIG + 500}, 500, 'ok', "
        "1, NULL), "
        "('f1:1', 'f1', 1, 'camt', 'camt.054', 'DE89', NULL, NULL, NULL, 0, 'not_applicable', "
        "0, NULL), "
        "('f2:0', 'f2', 0, 'mt940', 'mt940', 'DE89', 'EUR', 0, 7, 5, 'mismatch', 1, NULL), "
        # a superseded file's statement is not checked (the file that replaced it is)
        "('f0:0', 'f0', 0, 'camt', 'camt.999', 'DE89', 'eur', 0, 1, 0, 'ok', 0, 'f1')"))
    ok = assert_passes(warehouse, "raw.bank_statements")
    assert ok.rows == 3
    warehouse.execute(STATEMENTS + (
        f"('f3:0', 'f3', 0, 'camt', 'camt.053', 'DE89', 'EUR', {BIG}, {BIG + 501}, 500, 'ok', "
        "1, NULL), "
        "('f3:1', 'f3', 1, 'camt', 'camt.999', 'DE89', 'EUR', 0, 0, 0, 'maybe', 0, NULL)"))
    result = validate(warehouse.settings, "raw.bank_statements")
    assert not result.success
    found = failures(result)
    balance = found[("expect_column_values_to_be_in_set", "balance_residual_minor")]
    assert (balance.unexpected_count, balance.examples) == (
        1, [{"statement_uid": "f3:0", "balance_residual_minor": "1"}])
    assert found[("expect_column_values_to_be_in_set", "message_type")].examples == [
        {"statement_uid": "f3:1", "message_type": "camt.999"}]
    assert found[("expect_column_values_to_be_in_set", "balance_check")].examples == [
        {"statement_uid": "f3:1", "balance_check": "maybe"}]
    assert len(result.failures) == 3


LINES = ("INSERT INTO raw.bank_statement_lines (statement_line_id, statement_uid, file_id, "
         "statement_index, line_number, account_id, booking_date, value_date, amount_minor, "
         "currency, status, superseded_by) VALUES ")


def test_bank_statement_lines_sit_on_a_current_statement(warehouse):
    warehouse.execute(STATEMENTS + (
        "('f1:0', 'f1', 0, 'camt', 'camt.053', 'DE89', 'EUR', 0, 500, 500, 'ok', 2, NULL), "
        "('f0:0', 'f0', 0, 'camt', 'camt.053', 'DE89', 'EUR', 0, 500, 500, 'ok', 1, 'f1')"))
    warehouse.execute(LINES + (
        f"('f1:0:0', 'f1:0', 'f1', 0, 0, 'DE89', DATE '2026-11-20', NULL, {BIG}, 'EUR', "
        "'booked', NULL), "
        f"('f1:0:1', 'f1:0', 'f1', 0, 1, 'DE89', NULL, DATE '2026-11-21', {-BIG}, 'EUR', "
        "'pending', NULL), "
        "('f0:0:0', 'f0:0', 'f0', 0, 0, 'DE89', NULL, NULL, 5, 'eur', 'odd', 'f1')"))
    assert assert_passes(warehouse, "raw.bank_statement_lines").rows == 2
    warehouse.execute(LINES + (
        "('f9:0:0', 'f9:0', 'f9', 0, 0, 'DE89', DATE '2026-11-20', NULL, 5, 'EUR', 'booked', "
        "NULL), "
        "('f1:0:2', 'f1:0', 'f1', 0, 2, 'DE89', NULL, DATE '2026-11-20', 5, 'eur', 'booked', "
        "NULL), "
        "('f1:0:3', 'f1:0', 'f1', 0, 3, 'DE89', DATE '2026-11-20', NULL, 5, 'EUR', 'queued', "
        "NULL), "
        "('f1:0:0', 'f1:0', 'f1', 0, 0, 'DE89', DATE '2026-11-20', NULL, 5, 'EUR', 'booked', "
        "NULL)"))
    found = failures(validate(warehouse.settings, "raw.bank_statement_lines"))
    orphan = found[("expect_column_values_to_be_in_set", "statement_is_current")]
    assert orphan.examples == [{"statement_line_id": "f9:0:0", "statement_is_current": "no"}]
    assert found[("expect_column_values_to_not_be_null", "booking_date")].examples == [
        {"statement_line_id": "f1:0:2", "booking_date": None}]
    assert found[("expect_column_values_to_be_in_set", "status")].examples == [
        {"statement_line_id": "f1:0:3", "status": "queued"}]
    assert found[("expect_column_values_to_match_regex", "currency")].unexpected_count == 1
    assert found[("expect_column_values_to_be_unique", "statement_line_id")].unexpected_count == 2
    assert len(found) == 5


CHAIN = ("INSERT INTO raw.chain_logs (chain_log_id, file_id, network, block_number, "
         "transaction_hash, log_index, token_address, from_address, to_address, value_text, "
         "value_minor, removed) VALUES ")
TX = "0x" + "ab" * 32
ADDR = "0x" + "12" * 20


def _log(log_id: str, value_text: str, value_minor: str, removed: str = "false", *,
         tx: str = TX, block: int = 10, network: str = "eip155:84532") -> str:
    return (f"('{log_id}', 'c1', '{network}', {block}, '{tx}', 0, '{ADDR}', '{ADDR}', '{ADDR}', "
            f"'{value_text}', {value_minor}, {removed})")


def test_chain_logs_values_are_exact(warehouse):
    huge = "1" * 60  # a uint256 beyond DECIMAL(38,0): value_minor stays NULL
    warehouse.execute(CHAIN + ", ".join([
        _log("l1", str(BIG + 1), str(BIG + 1)),
        _log("l1:removed", str(BIG + 1), str(BIG + 1), "true"),
        _log("l2", huge, "NULL"),
    ]))
    assert_passes(warehouse, "raw.chain_logs")
    warehouse.execute(CHAIN + ", ".join([
        _log("l3", str(BIG + 1), str(BIG)),
        _log("l4", "12", "NULL", "NULL"),
        _log("l5", "7", "7", tx="0x" + "AB" * 32, block=-1, network="ethereum"),
    ]))
    found = failures(validate(warehouse.settings, "raw.chain_logs"))
    value = found[("expect_column_values_to_be_in_set", "value_minor_matches_text")]
    assert value.examples == [
        {"chain_log_id": "l3", "value_minor_matches_text": f"value_minor {BIG}"},
        {"chain_log_id": "l4", "value_minor_matches_text": "value_minor missing"}]
    assert found[("expect_column_values_to_not_be_null", "removed")].unexpected_count == 1
    assert found[("expect_column_values_to_match_regex", "transaction_hash")].examples[0][
        "chain_log_id"] == "l5"
    assert found[("expect_column_values_to_be_between", "block_number")].examples == [
        {"chain_log_id": "l5", "block_number": -1}]
    assert ("expect_column_values_to_match_regex", "network") in found
    assert len(found) == 5


FX = ("INSERT INTO raw.fx_rates (fx_rate_id, file_id, source, rate_date, base_currency, "
      "quote_currency, rate_text, rate) VALUES ")


def _rate(rid: str, text: str, rate: str, quote: str = "USD") -> str:
    return f"('{rid}', 'x1', 'ecb', DATE '2026-11-20', 'EUR', '{quote}', '{text}', {rate})"


def test_fx_rates_are_positive_and_stored_as_published(warehouse):
    warehouse.execute(FX + ", ".join([
        _rate("r1", "1.1172", "1.1172"), _rate("r2", "163.450", "163.45", "JPY"),
        _rate("r3", "100", "100", "ISK"), _rate("r4", "0.000012345678", "0.000012345678", "VND"),
    ]))
    assert_passes(warehouse, "raw.fx_rates")
    warehouse.execute(FX + ", ".join([
        _rate("r5", "0", "0", "GBP"), _rate("r6", "1.1172", "1.1173", "CHF"),
        _rate("r7", "-1.5", "-1.5", "usd"), _rate("r1", "1.1172", "1.1172"),
    ]))
    result = validate(warehouse.settings, "raw.fx_rates")
    assert not result.success
    found = failures(result)
    positive = found[("expect_column_values_to_match_regex", "rate")]
    assert positive.examples == [{"fx_rate_id": "r5", "rate": "0.000000000000"},
                                 {"fx_rate_id": "r7", "rate": "-1.500000000000"}]
    assert positive.description == "rate > 0"
    stored = found[("expect_column_values_to_be_in_set", "rate_matches_text")]
    assert stored.examples == [{"fx_rate_id": "r6", "rate_matches_text": "rate 1.117300000000"}]
    assert found[("expect_column_values_to_match_regex", "rate_text")].examples == [
        {"fx_rate_id": "r7", "rate_text": "-1.5"}]
    assert found[("expect_column_values_to_match_regex", "quote_currency")].examples == [
        {"fx_rate_id": "r7", "quote_currency": "usd"}]
    assert found[("expect_column_values_to_be_unique", "fx_rate_id")].unexpected_count == 2
    assert len(found) == 5


REPORTS = ("INSERT INTO raw.fraud_reports (fraud_report_line_id, file_id, line_number, report_id, "
           "payment_id, merchant_id, kind, source, reported_at, amount_minor, currency, "
           "superseded_by) VALUES ")


def _report(line_id: str, report: str, kind: str = "stolen_card", source: str = "chargeback",
            amount: str = "1250", currency: str = "'USD'", superseded: str = "NULL") -> str:
    return (f"('{line_id}', '{line_id.split(':')[0]}', 2, '{report}', 'pay_1', 'mer_1', "
            f"'{kind}', '{source}', TIMESTAMP '2026-12-01 10:00:00', {amount}, {currency}, "
            f"{superseded})")


def test_fraud_reports_one_current_row_per_report(warehouse):
    warehouse.execute(REPORTS + ", ".join([
        _report("f1:2", "fr_1", superseded="'f2'"),  # updated by f2: not checked
        _report("f2:2", "fr_1", kind="friendly_fraud"),
        _report("f2:3", "fr_2", kind="account_takeover", source="issuer_report", amount="NULL",
                currency="NULL"),
        _report("f2:4", "fr_3", kind="other", source="internal_review", amount=str(BIG)),
    ]))
    assert assert_passes(warehouse, "raw.fraud_reports").rows == 3
    warehouse.execute(REPORTS + ", ".join([
        _report("f3:2", "fr_1"),  # a second current row of fr_1
        _report("f3:3", "fr_4", kind="phishing", source="rumour"),
        _report("f3:4", "fr_5", currency="NULL"),
    ]))
    found = failures(validate(warehouse.settings, "raw.fraud_reports"))
    twice = found[("expect_column_values_to_be_unique", "report_id")]
    assert twice.unexpected_count == 2
    assert sorted(e["fraud_report_line_id"] for e in twice.examples) == ["f2:2", "f3:2"]
    assert found[("expect_column_values_to_be_in_set", "kind")].examples == [
        {"fraud_report_line_id": "f3:3", "kind": "phishing"}]
    assert found[("expect_column_values_to_be_in_set", "source")].unexpected_count == 1
    currency = found[("expect_column_values_to_not_be_null", "currency")]
    assert currency.examples == [{"fraud_report_line_id": "f3:4", "currency": None}]
    assert currency.description == "a currency wherever an amount is given"
    assert len(found) == 4
