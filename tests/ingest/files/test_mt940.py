"""MT940/MT942 parser and renderer: the WoLpH/mt940 sample files against the mt-940 library and
the manifest's figures, quarantine and warnings, details and references, round trips, fuzzing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import string
from decimal import Decimal
from pathlib import Path

import mt940
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest.files.formats import mt940 as fmt
from ingest.files.records import ParsedFile, ParseError, Statement, StatementLine
from tests.ingest.files.statement_checks import (
    check_damaged_files_parse_or_are_quarantined,
    render_round_trip,
)
from warehouse.money import exponent

MT940 = "mt940"
# Fragments and garbled files: quarantined with this reason at this line.
QUARANTINED = {
    "betterplace/amount_formats.sta": ("unexpected_field", "line 2"),  # six :60F:, no :20:/:25:
    "betterplace/currency_in_25.sta": ("missing_field", "line 1"),  # only a :25:
    "betterplace/empty_86.sta": ("not_mt940", "line 1"),  # only an :86: (of no line)
    "betterplace/empty_entry_date.sta": ("missing_field", "line 1"),  # a :61: with no currency
    "betterplace/empty_line.sta": ("missing_field", "line 2"),  # only a :20:
    "betterplace/missing_crlf_at_end.sta": ("missing_field", "line 1"),  # only a :62F:
    "betterplace/sepa_snippet_broken.sta": ("unexpected_field", "line 6"),  # :25: for :86:
    "self-provided/empty_non_swift.sta": ("not_mt940", "line 1"),
    "self-provided/invalid_statement.sta": ("not_mt940", "line 1"),
    "self-provided/raphaelm.sta": ("unknown_currency", "line 13"),  # DEM left ISO 4217 in 2002
    "self-provided/sparkassen.sta": ("missing_field", "line 1"),  # a :61: with no statement
    "self-provided/gv_codes.sta": ("truncated", "line 7"),  # two :61:, no closing :62F:
}
ASN = "ASNB/0708271685_09022020_164516.940.txt"
# balance_check per statement and the warnings, for every sample that parses.
CHECKS = {
    ASN: (["ok"] * 31, []),
    "betterplace/sepa_mt9401.sta": (["ok"] * 26, []),  # RC signed as a debit: all reconcile
    "betterplace/sepa_snippet.sta": (["ok", "mismatch"], ["balance_mismatch"]),
    "betterplace/with_binary_character.sta": (["ok", "ok"], []),
    "jejik/abnamro.sta": (["mismatch", "mismatch"], ["balance_mismatch"] * 2),
    "jejik/generic.sta": (["ok", "ok"], []),
    "jejik/ing.sta": (["mismatch"], ["balance_mismatch"]),
    "jejik/knab.sta": (["ok", "mismatch"], ["balance_mismatch"]),
    "jejik/postfinance.sta": (["ok", "mismatch"], ["balance_mismatch"]),
    "jejik/rabobank-iban.sta": (["ok", "ok"], []),
    "jejik/rabobank.sta": (["mismatch", "ok", "mismatch", "ok"], ["balance_mismatch"] * 2),
    "jejik/sns.sta": (["ok", "ok"], []),
    "jejik/triodos.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/details_60-63.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/february_30.sta": (["ok"], []),
    "self-provided/long_statement_number.sta": (["ok"], []),
    "self-provided/malformed_details.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/mt942.sta": (["not_applicable"], ["control_total_mismatch"]),
    "self-provided/overly_long_details.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/raiffeisen-cmi.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/transaction_details_wrapped.sta": (["ok"], []),
    "self-provided/whitespace.sta": (["mismatch"], ["balance_mismatch"]),
    "self-provided/wrapped_timestamp.sta": (["ok"], []),
}
PARSED = sorted(CHECKS)
LIBRARY_READS = [name for name in PARSED if name != ASN]  # mt-940 5.1.1 fails on ASN's IBANs


@pytest.fixture(scope="session")
def samples(shared_data: Path) -> Path:
    return shared_data / MT940


def _lines_of(parsed: ParsedFile, statement_index: int) -> list[StatementLine]:
    return [line for line in parsed.statement_lines if line.statement_index == statement_index]


def _parse_text(text: str) -> ParsedFile:
    return fmt.parse(text.encode("utf-8"))


def _minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(exponent(currency)))


# --- every sample: the listing is complete ------------------------------------------------


def test_every_sample_file_has_an_expectation(samples: Path):
    files = {str(p.relative_to(samples)) for p in samples.rglob("*")
             if p.suffix in (".sta", ".txt")}
    assert files == set(CHECKS) | set(QUARANTINED)


@pytest.mark.parametrize("name", PARSED)
def test_sample_balance_checks_and_warnings(samples: Path, name: str):
    parsed = fmt.parse(samples / name)
    checks, warnings = CHECKS[name]
    assert parsed.format == "mt940" and parsed.kind == "bank_statement"
    assert [s.balance_check for s in parsed.statements] == checks
    assert sorted(w.code for w in parsed.warnings) == sorted(warnings)
    assert [s.index for s in parsed.statements] == list(range(len(checks)))
    for statement in parsed.statements:
        lines = _lines_of(parsed, statement.index)
        assert [line.line_number for line in lines] == list(range(len(lines)))
        assert all(line.currency == statement.currency for line in lines)
        assert all(isinstance(line.amount_minor, int) for line in lines)


@pytest.mark.parametrize("name", sorted(QUARANTINED))
def test_broken_samples_are_quarantined(samples: Path, name: str):
    reason, location = QUARANTINED[name]
    with pytest.raises(ParseError) as err:
        fmt.parse(samples / name)
    assert (err.value.reason, err.value.location) == (reason, location)


# --- against the mt-940 library (the oracle) ---------------------------------------------------


def _reference(value: str | None) -> str | None:
    """The library's reference as we keep it: stripped, NONREF as None, no "KREF+" prefix (the
    library glues the :61: placeholder to the :86: KREF value)."""
    if value is None:
        return None
    value = value.split("\n")[-1].strip()
    return None if value in ("", "NONREF") else value


def _balance(data: dict, kind: str):
    balance = data.get(f"final_{kind}_balance") or data.get(f"intermediate_{kind}_balance")
    if balance is None:
        return None, None
    amount = balance.amount
    return _minor(amount.amount, amount.currency), balance.date


@pytest.mark.parametrize("name", LIBRARY_READS)
def test_sample_matches_the_library_statement_by_statement(samples: Path, name: str):
    data = (samples / name).read_bytes()
    ours = fmt.parse(data)
    # Options.all(): RC signed as a debit and ?31 as the counterparty account, as we do.
    theirs = mt940.parse_statements(data, options=mt940.Options.all())
    assert len(theirs) == len(ours.statements)
    for statement, expected in zip(ours.statements, theirs, strict=True):
        info = expected.data
        assert statement.statement_id == info.get("transaction_reference")
        assert statement.account_id == info.get("account_identification")
        opening = (statement.opening_balance_minor, statement.opening_date)
        closing = (statement.closing_balance_minor, statement.closing_date)
        assert opening == _balance(info, "opening")
        assert closing == _balance(info, "closing")
        lines = _lines_of(ours, statement.index)
        assert len(lines) == len(expected.transactions)
        for line, transaction in zip(lines, expected.transactions, strict=True):
            _assert_same_line(line, transaction.data)


def _assert_same_line(line: StatementLine, expected: dict) -> None:
    assert line.amount_minor == _minor(expected["amount"].amount, line.currency)
    assert line.value_date == expected["date"]
    assert line.booking_date == (expected.get("entry_date") or expected["date"])
    assert line.transaction_code == expected["id"]
    assert line.customer_reference == _reference(expected.get("customer_reference"))
    assert line.bank_reference == _reference(expected.get("bank_reference"))
    for ours, key in ((line.end_to_end_id, "end_to_end_reference"),
                      (line.counterparty_name, "applicant_name"),
                      (line.counterparty_account, "applicant_iban")):
        if expected.get(key) is not None:  # the library reads German structured :86: only
            assert ours == _reference(expected[key])
    details = expected.get("transaction_details")
    if details is not None and line.remittance is not None:
        # Ours joins the lines; the library keeps line breaks and (ING) glues the statement's
        # closing :86: onto the last line. Compare the ASCII text without whitespace.
        squeeze = "".join(ch for ch in details if ch.isascii() and not ch.isspace())
        assert squeeze.startswith("".join(
            ch for ch in line.remittance if ch.isascii() and not ch.isspace()))


# --- against the manifest's EXPECTED files --------------------------------------------------


def _expected(samples: Path, file_name: str) -> list[dict]:
    text = (samples / file_name).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _reversals(data: bytes) -> list[list[int]]:
    """Per statement, the amounts of RC lines the library (5.1.1 defaults) counts as credits."""
    return [[_minor(t.data["amount"].amount, t.data["amount"].currency)
             for t in statement.transactions if t.data["status"] == "RC"]
            for statement in mt940.parse_statements(data)]


def _figure(text: str) -> tuple[int, dt.date, str]:
    """"C 404.81 EUR 2020-01-31" -> (40481, date, "EUR")."""
    parts = text.split()
    amount = Decimal(parts[-3]) if len(parts) == 4 else Decimal(parts[0])
    currency, day = parts[-2], dt.date.fromisoformat(parts[-1])
    minor = _minor(abs(amount), currency)
    sign = -1 if (parts[0] == "D" or amount < 0) else 1
    return sign * minor, day, currency


@pytest.mark.parametrize("name", LIBRARY_READS)
def test_sample_matches_expected_file_figures(samples: Path, name: str):
    row = next(r for r in _expected(samples, "EXPECTED_by_mt-940_5.1.1.jsonl") if r["file"] == name)
    parsed = fmt.parse(samples / name)
    assert len(parsed.statement_lines) == row["n_tx"] == row["yml_n"]
    currency = parsed.statements[0].currency
    reversed_credits = sum(sum(x) for x in _reversals((samples / name).read_bytes()))
    expected_sum = _minor(Decimal(row["sum_amount"]), currency) - 2 * reversed_credits
    assert sum(line.amount_minor for line in parsed.statement_lines) == expected_sum
    # The library keeps the last :60F:/:62F: it saw: one of our statements has it.
    for key, field in (("opening", "opening"), ("closing", "closing")):
        if row[key] is not None:
            amount, day, _ = _figure(row[key])
            assert (amount, day) in {(getattr(s, f"{field}_balance_minor"),
                                      getattr(s, f"{field}_date")) for s in parsed.statements}


def test_sample_statements_match_expected_per_statement_figures(samples: Path):
    rows = _expected(samples, "EXPECTED_per_statement_by_mt-940_5.1.1.jsonl")
    checked = 0
    for row in rows:
        if row["file"] in QUARANTINED:
            continue
        data = (samples / row["file"]).read_bytes()
        parsed = fmt.parse(data)
        assert len(parsed.statements) == row["n_statements"]
        reversals = _reversals(data)
        for statement, expected in zip(parsed.statements, row["statements"], strict=True):
            lines = _lines_of(parsed, statement.index)
            assert statement.statement_id == expected["ref"]
            assert statement.account_id == expected["account"]
            assert (statement.sequence_number or "").startswith(expected["stmt_no"])
            assert len(lines) == expected["n_tx"]
            total = _minor(Decimal(expected["sum"]), statement.currency)
            assert sum(x.amount_minor for x in lines) == total - 2 * sum(reversals[statement.index])
            for key in ("opening", "closing"):
                if key in expected:
                    amount, day, currency = _figure(expected[key])
                    assert (getattr(statement, f"{key}_balance_minor"),
                            getattr(statement, f"{key}_date"), statement.currency) == (
                        amount, day, currency)
            if "reconciles" in expected:
                # Statements with an RC line only reconcile with RC signed as a debit.
                reconciles = expected["reconciles"] or bool(reversals[statement.index])
                assert statement.balance_check == ("ok" if reconciles else "mismatch")
            checked += 1
    assert checked == 58  # gv_codes.sta (no closing balance) is quarantined as truncated


def test_asn_file_matches_the_library_test_figures(samples: Path):
    # The manifest's row from the library's own test (the library itself fails on this file).
    expected = next(r for r in _expected(samples, "EXPECTED_by_mt-940_5.1.1.jsonl")
                    if r["file"] == ASN and "n_tx" in r)
    parsed = fmt.parse(samples / ASN)
    assert len(parsed.statement_lines) == expected["n_tx"] == 8
    last = parsed.statements[-1]
    assert last.account_id == expected["account"] == "NL81ASNB9999999999"
    assert last.sequence_number == f"{expected['statement_number']}/{expected['sequence_number']}"
    assert (last.opening_balance_minor, last.opening_date) == _figure(expected["opening"])[:2]
    assert (last.closing_balance_minor, last.closing_date) == _figure(expected["closing"])[:2]
    assert (last.opening_balance_minor, last.closing_balance_minor) == (40481, 50123)
    first = parsed.statement_lines[0]
    assert (first.amount_minor, first.transaction_code, first.customer_reference) == (
        -6500, "NOVB", "NL47INGB9999999999")
    assert first.remittance == "NL47INGB9999999999 hr gjlm paulissen Betaling sieraden"
    assert all(s.message_type == "mt940" for s in parsed.statements)


# --- details, references, dates -----------------------------------------------------------


def test_german_structured_details(samples: Path):
    line = fmt.parse(samples / "betterplace/sepa_snippet.sta").statement_lines[0]
    assert line.remittance.startswith("166?00GUTSCHRIFT?100399?20EREF+EndToEndId TFNR 22 004?21")
    assert line.end_to_end_id == "EndToEndId TFNR 22 004 00001"  # ?20 and ?21 joined
    assert line.counterparty_name == "KARL        KAUFMANN"  # ?32 + ?33
    assert line.counterparty_account == "DE14508800500194785000"  # ?31
    assert (line.transaction_code, line.customer_reference, line.bank_reference) == (
        "NTRF", None, "0724710333343453")


def test_kref_placeholder_takes_the_reference_from_86(samples: Path):
    parsed = fmt.parse(samples / "betterplace/sepa_mt9401.sta")
    line = _lines_of(parsed, 1)[1]
    assert line.customer_reference.startswith("TFNr 01005 PayId CTSc-01 EBB")
    assert line.bank_reference == "BD7CFA74485E7E69"


def test_unknown_tags_inside_86_are_continuation_text(samples: Path):
    wrapped = fmt.parse(samples / "self-provided/wrapped_timestamp.sta").statement_lines[0]
    assert "?24/PL 12-09-2014T16:26:37 Fo?25lgenr. 007" in wrapped.remittance
    stamped = fmt.parse(samples / "self-provided/transaction_details_wrapped.sta")
    assert stamped.statement_lines[0].remittance.endswith("?602017-01-01T13:12:11")


def test_dutch_structured_details(samples: Path):
    first, second = _lines_of(fmt.parse(samples / "jejik/rabobank-iban.sta"), 0)
    assert first.end_to_end_id == "01-01-2013 12:00 0030000987654321"
    assert first.counterparty_name == "CONTRA ACCOUNT HOLDER"  # joined across a 65-char wrap
    assert first.customer_reference == "EREF"
    assert second.counterparty_name == "JOHN DOE" and second.end_to_end_id is None


def test_fixed_width_references_and_repeated_86(samples: Path):
    line = fmt.parse(samples / "jejik/rabobank.sta").statement_lines[0]
    assert (line.transaction_code, line.customer_reference) == ("N044", "0121470966")
    assert line.remittance == ("Terugboeking NIET AKKOORD MET AFSCHRIJVING "
                               "KOSTEN KINDEROPVANG JUNI 20095731")


def test_wrapped_free_text_joins_hard_wraps_without_a_space(samples: Path):
    line = fmt.parse(samples / "jejik/abnamro.sta").statement_lines[0]
    assert line.remittance == (
        "GIRO   428428 KPN - DIGITENNE    BETALINGSKENM.  0000000421886595314606715"
        "                       BETREFT FACTUUR D.D. 20-05-2011 INCL. 1,44 BTW")


def test_statement_level_86_is_not_a_line_remittance(samples: Path):
    last = fmt.parse(samples / "jejik/ing.sta").statement_lines[-1]
    assert last.remittance == ("0111111111 Hr S Marechal ROSMALEN Hr S Marechal ROSMALEN "
                               "Betaling transactiedatum: 22-07-2010")


def test_funds_code_and_nonref(samples: Path):
    parsed = fmt.parse(samples / "jejik/postfinance.sta")
    line = parsed.statement_lines[0]
    assert (line.amount_minor, line.transaction_code, line.customer_reference,
            line.bank_reference) == (7970, "FMSC", "01916", None)
    hungarian = fmt.parse(samples / "self-provided/raiffeisen-cmi.sta").statement_lines[0]
    assert (hungarian.amount_minor, hungarian.currency) == (206663700, "HUF")  # "CF" credit


def test_february_30_is_the_last_day_of_february(samples: Path):
    parsed = fmt.parse(samples / "self-provided/february_30.sta")
    line = parsed.statement_lines[0]
    assert (line.value_date, line.booking_date) == (dt.date(2016, 2, 29), dt.date(2016, 3, 1))
    assert (line.amount_minor, parsed.statements[0].balance_check) == (-600, "ok")


def test_stray_bytes_and_utf8_survive(samples: Path):
    parsed = fmt.parse(samples / "betterplace/with_binary_character.sta")
    assert [s.statement_id for s in parsed.statements] == ["STAR1ÜTßUMS", "STAR1ÜTUMS"]
    raw = (samples / "betterplace/with_binary_character.sta").read_bytes()
    dirty = raw.replace(b":86:051", b":86:\x00\x1a051\xfc", 1)  # NUL, EOF mark, latin-1 u-umlaut
    line = fmt.parse(dirty).statement_lines[0]
    assert line.remittance.startswith("051ü?00Bank")
    assert fmt.parse(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n")).statement_lines == \
        parsed.statement_lines


def test_mt942_interim_report(samples: Path):
    parsed = fmt.parse(samples / "self-provided/mt942.sta")
    statement = parsed.statements[0]
    assert (statement.message_type, statement.currency, statement.account_id) == (
        "mt942", "EUR", "GJB0291077111")
    assert statement.created_at == dt.datetime(2016, 10, 30, 17, 30)
    assert (statement.control_count, statement.control_total_minor) == (1, -230)
    line = parsed.statement_lines[0]
    assert (line.amount_minor, line.transaction_code, line.bank_reference, line.remittance) == (
        -42, "MCI0", "055001022000001", "REMIT:Costs to MT940 Parsing. This is Somuchfun.")


STATEMENT = """:20:REF1
:25:{account}
:28C:7/1
:60F:C{opening}EUR100,00
{lines}:62F:C{closing}EUR{closing_amount}
-
"""


def _statement(lines: str, closing_amount: str = "100,00", account: str = "NL91ABNA0417164300",
               opening: str = "191230", closing: str = "200103") -> str:
    return STATEMENT.format(account=account, opening=opening, lines=lines, closing=closing,
                            closing_amount=closing_amount)


def test_entry_date_year_rolls_over_in_both_directions():
    parsed = _parse_text(_statement(":61:1912310102C5,00NTRFA\n:61:2001021231D5,00NTRFB\n"))
    later, earlier = parsed.statement_lines
    assert (later.value_date, later.booking_date) == (dt.date(2019, 12, 31), dt.date(2020, 1, 2))
    assert (earlier.value_date, earlier.booking_date) == (dt.date(2020, 1, 2),
                                                          dt.date(2019, 12, 31))
    assert parsed.statements[0].balance_check == "ok"


def test_reversal_marks():
    parsed = _parse_text(_statement(":61:200102RC5,00NTRFX\n:61:200102RD2,00NTRFY\n", "97,00"))
    assert [x.amount_minor for x in parsed.statement_lines] == [-500, 200]
    assert parsed.statements[0].balance_check == "ok"


def test_supplementary_details_stand_in_for_a_missing_86():
    parsed = _parse_text(_statement(":61:200102C5,00NTRFREF//BANK\nSUPPLEMENTARY\n", "105,00"))
    assert parsed.statement_lines[0].remittance == "SUPPLEMENTARY"


def test_end_to_end_id_styles():
    lines = (":61:200102C1,00NTRFA\n:86:166?00GUTSCHRIFT?20EREF+E2E-1?21SVWZ+text\n"
             ":61:200102C1,00NTRFB\n:86:/EREF/E2E-2/REMI/payout\n"
             ":61:200102C1,00NTRFC\n:86:Payout EREF+E2E-3\n"
             ":61:200102C1,00NTRFD\n:86:EREF+NONREF\n")
    parsed = _parse_text(_statement(lines, "104,00"))
    assert [x.end_to_end_id for x in parsed.statement_lines] == ["E2E-1", "E2E-2", "E2E-3", None]


def test_account_forms():
    bic_iban = _parse_text(_statement("", account="ABNANL2A/NL91ABNA0417164300")).statements[0]
    assert (bic_iban.account_id, bic_iban.servicer_bic) == ("NL91ABNA0417164300", "ABNANL2A")
    as_written = _parse_text(_statement("", account="50880050/0194774600888")).statements[0]
    assert (as_written.account_id, as_written.servicer_bic) == ("50880050/0194774600888", None)
    option_p = _parse_text(_statement("").replace(":25:NL91ABNA0417164300",
                                                  ":25P:NL91ABNA0417164300\nABNANL2AXXX"))
    assert option_p.statements[0].servicer_bic == "ABNANL2AXXX"


def test_swift_blocks_give_the_message_type():
    body = _statement("").replace(":60F:C191230EUR100,00\n", "").replace(
        ":62F:C200103EUR100,00\n", ":34F:EUR0,\n")
    wrapped = f"{{1:F01BANKBEBBAXXX0000000000}}{{2:O942BANKBEBBAXXXN}}{{4:\n{body}}}{{5:}}\n"
    parsed = _parse_text(wrapped)
    assert parsed.statements[0].message_type == "mt942"
    assert parsed.statements[0].balance_check == "not_applicable" and not parsed.warnings
    # Some exports put the first field on the block-4 line itself.
    body = _statement(":61:200102C1,00NTRFA\n", "101,00")
    same_line = _parse_text(f"{{1:F01BANKBEBBAXXX0000000000}}{{2:O940BANKBEBBAXXXN}}{{4:{body}}}")
    statement = same_line.statements[0]
    assert (statement.statement_id, statement.message_type, statement.balance_check) == (
        "REF1", "mt940", "ok")
    with pytest.raises(ParseError) as err:
        _parse_text(f"{{4:{_statement('').replace(':25:NL91ABNA0417164300', ':28:1')}}}")
    assert (err.value.reason, err.value.location) == ("missing_field", "line 1")


@pytest.mark.parametrize(("lines", "reason", "location"), [
    (":61:200102X5,00NTRFA\n", "bad_statement_line", "line 5"),
    (":61:200102C1,234NTRFA\n", "amount_precision", "line 5"),
    (":61:201332C1,00NTRFA\n", "bad_date", "line 5"),
    (":61:200102C1,00NTRFA\n:61:200102C1,00NTRFB\n:60F:C191230EUR1,00\n", "unexpected_field",
     "line 7"),
    (":86:x\n:25:NL91ABNA0417164300\n", "unexpected_field", "line 6"),
])
def test_refusals(lines: str, reason: str, location: str):
    with pytest.raises(ParseError) as err:
        _parse_text(_statement(lines))
    assert (err.value.reason, err.value.location) == (reason, location)


def test_refusals_of_balances_and_currencies():
    with pytest.raises(ParseError) as err:
        _parse_text(_statement("").replace(":60F:C191230EUR", ":60F:C191230XXZ"))
    assert (err.value.reason, err.value.location) == ("unknown_currency", "line 4")
    with pytest.raises(ParseError) as err:
        _parse_text(_statement("").replace(":62F:C200103EUR", ":62F:C200103USD"))
    assert err.value.reason == "currency_mismatch"
    with pytest.raises(ParseError) as err:
        _parse_text(_statement("").replace(":60F:C191230EUR100,00", ":60F:C191230EUR1.00"))
    assert (err.value.reason, err.value.location) == ("bad_balance", "line 4")
    with pytest.raises(ParseError) as err:  # a line after the closing balance
        _parse_text(_statement("") + ":61:200103C1,00NTRFA\n")
    assert (err.value.reason, err.value.location) == ("unexpected_field", "line 7")


def test_sniff(samples: Path):
    assert fmt.sniff((samples / ASN).read_bytes()[:4096], "x.940.txt")
    assert fmt.sniff((samples / "jejik/ing.sta").read_bytes()[:4096], "ing.sta")
    assert not fmt.sniff(b"01,BANK,CUST,260302,0800,1,,,2/\n02,", "x.bai2")
    assert not fmt.sniff(b"<?xml version='1.0'?><Document>", "x.xml")
    assert not fmt.sniff(b"id,amount,currency\n1,2.00,EUR\n", "x.csv")


# --- render ---------------------------------------------------------------------------------


def _fields(record) -> dict:
    return dataclasses.asdict(record)


@pytest.mark.parametrize("name", PARSED)
def test_render_round_trips_every_sample(samples: Path, name: str):
    parsed, again, _rendered = render_round_trip(fmt, samples / name)
    for before, after in zip(parsed.statements, again.statements, strict=True):
        expected = _fields(before)
        if before.message_type == "mt942":  # render states :90D:/:90C: from the lines
            expected.update(control_total_minor=sum(x.amount_minor for x in again.statement_lines),
                            control_count=len(again.statement_lines))
        assert _fields(after) == expected


def test_render_writes_eref_and_wraps_at_65():
    statement = Statement(index=0, message_type="mt940", account_id="DE89370400440532013000",
                          statement_id="STMT1", sequence_number="1/1", currency="EUR",
                          servicer_bic="COBADEFFXXX", opening_balance_minor=0,
                          opening_date=dt.date(2026, 3, 1), closing_balance_minor=12345,
                          closing_date=dt.date(2026, 3, 2))
    line = StatementLine(0, 0, dt.date(2026, 3, 2), dt.date(2026, 3, 2), 12345, "EUR",
                         bank_reference="BR1", customer_reference="po_123",
                         end_to_end_id="po_123", remittance="Clearhouse payout po_123 for "
                         "merchant m_1, settlement of 2026-03-01, 42 payments", transaction_code="NTRF")
    parsed = ParsedFile(format="mt940", kind="bank_statement", statements=[statement],
                        statement_lines=[line])
    text = fmt.render(parsed).decode()
    assert ":25:COBADEFFXXX/DE89370400440532013000\r\n" in text
    assert ":61:260302C123,45NTRFpo_123//BR1\r\n" in text
    assert ":86:/EREF/po_123/REMI/Clearhouse payout" in text
    assert all(len(x) <= 65 for x in text.split("\r\n"))
    back = fmt.parse(text.encode()).statement_lines[0]
    assert back.end_to_end_id == "po_123"
    assert back.remittance == "/EREF/po_123/REMI/" + line.remittance


_REF = st.text(string.ascii_letters + string.digits + "-.", min_size=1, max_size=16)
_TEXT = st.text(string.ascii_letters + string.digits + " .,-():'", min_size=1, max_size=150)


def _iban(country: str, body: str) -> str:
    digits = "".join(str(int(ch, 36)) for ch in body + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{body}"


@st.composite
def _statement_lines(draw, index: int, currency: str, base: dt.date) -> list[StatementLine]:
    lines = []
    for number in range(draw(st.integers(0, 5))):
        value_date = base + dt.timedelta(days=draw(st.integers(-20, 20)))
        booking = value_date + dt.timedelta(days=draw(st.sampled_from([0, 0, 1, -3, 120, -150])))
        line = StatementLine(
            index, number, booking, value_date, draw(st.integers(-10**12, 10**12)), currency,
            bank_reference=draw(st.none() | _REF),
            customer_reference=draw(st.none() | _REF),
            end_to_end_id=draw(st.none() | st.text(string.ascii_letters + string.digits + "-_.",
                                                   min_size=1, max_size=35)),
            remittance=draw(st.none() | _TEXT.map(lambda t: " ".join(t.split())).filter(bool)),
            transaction_code=draw(st.sampled_from([None, "NTRF", "NMSC", "FCHG", "S103"])))
        assume(_NO_REF not in (line.bank_reference, line.customer_reference, line.end_to_end_id))
        lines.append(line)
    return lines


_NO_REF = "NONREF"


@st.composite
def parsed_files(draw) -> ParsedFile:
    parsed = ParsedFile(format="mt940", kind="bank_statement")
    for index in range(draw(st.integers(1, 3))):
        currency = draw(st.sampled_from(["EUR", "USD", "JPY", "KWD", "CHF"]))
        base = draw(st.dates(dt.date(2001, 1, 1), dt.date(2060, 12, 31)))
        interim = draw(st.booleans())
        if draw(st.booleans()):
            account = _iban("DE", draw(st.text(string.digits, min_size=18, max_size=18)))
            bic = draw(st.sampled_from([None, "COBADEFFXXX", "DEUTDEFF"]))
        else:
            account, bic = draw(st.text(string.digits, min_size=6, max_size=12)), None
        lines = draw(_statement_lines(index, currency, base))
        statement = Statement(
            index=index, message_type="mt942" if interim else "mt940", account_id=account,
            statement_id=draw(st.text(string.ascii_uppercase + string.digits, min_size=1,
                                      max_size=16)),
            sequence_number=draw(st.none() | st.from_regex(r"\d{1,5}/\d{1,3}", fullmatch=True)),
            currency=currency, servicer_bic=bic)
        if interim:
            statement.created_at = dt.datetime.combine(base, dt.time(draw(st.integers(0, 23)),
                                                                     draw(st.integers(0, 59))))
            statement.to_date = base
        else:
            statement.opening_balance_minor = draw(st.integers(-10**12, 10**12))
            statement.opening_date = base - dt.timedelta(days=1)
            total = statement.opening_balance_minor + sum(x.amount_minor for x in lines)
            statement.closing_balance_minor = draw(st.sampled_from([total, total + 1]))
            statement.closing_date = base
        parsed.statements.append(statement)
        parsed.statement_lines.extend(lines)
    return parsed


def _after_round_trip(parsed: ParsedFile) -> tuple[list[dict], list[dict]]:
    """What parse(render(parsed)) must give: the same records, with what MT940 adds."""
    lines = []
    for line in parsed.statement_lines:
        expected = _fields(line)
        remittance = line.remittance
        if line.end_to_end_id:
            remittance = f"/EREF/{line.end_to_end_id}" + (f"/REMI/{remittance}" if remittance
                                                          else "")
        expected.update(remittance=remittance, transaction_code=line.transaction_code or "NMSC")
        lines.append(expected)
    statements = []
    for statement in parsed.statements:
        expected = _fields(statement)
        own = [x.amount_minor for x in parsed.statement_lines
               if x.statement_index == statement.index]
        if statement.message_type == "mt942":
            expected.update(control_total_minor=sum(own), control_count=len(own))
        else:
            ok = statement.opening_balance_minor + sum(own) == statement.closing_balance_minor
            expected.update(balance_check="ok" if ok else "mismatch")
        expected.update(  # MT940's balances are in the statement's currency
            opening_currency=statement.currency if statement.opening_balance_minor is not None
            else None,
            closing_currency=statement.currency if statement.closing_balance_minor is not None
            else None)
        statements.append(expected)
    return statements, lines


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parsed_files())
def test_render_parse_round_trip(parsed: ParsedFile):
    rendered = fmt.render(parsed)
    again = fmt.parse(rendered)
    statements, lines = _after_round_trip(parsed)
    assert [_fields(x) for x in again.statements] == statements
    assert [_fields(x) for x in again.statement_lines] == lines
    assert not [w for w in again.warnings if w.code != "balance_mismatch"]
    assert fmt.render(again) == rendered


# --- fuzzing the real files ---------------------------------------------------------------


# Fields, block starts and message ends a damaged MT940 file may gain.
_FRAGMENTS = [b":61:", b"\n:86:", b"\n-\n", b"{2:O942", b",", b"\n:20:X\n", b"?20EREF+"]


def test_damaged_files_parse_or_are_quarantined(samples: Path):
    files = {name: (samples / name).read_bytes() for name in PARSED}
    check_damaged_files_parse_or_are_quarantined(fmt.parse, files, _FRAGMENTS, max_delete=40,
                                                 max_insert=12)
