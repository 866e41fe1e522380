"""BAI2 parser and renderer: the ministryofjustice sample files against the bai2 library and the
manifest's figures, trailer checks (quarantine vs warning), type codes, round trips, fuzzing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import string
from pathlib import Path

import pytest
from bai2 import bai2 as bai2_library
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files.formats import bai2 as fmt
from ingest.files.records import ParsedFile, ParseError, Statement, StatementLine
from tests.ingest.files.statement_checks import (
    check_damaged_files_parse_or_are_quarantined,
    render_round_trip,
)

BAI2 = "bai2"
SAMPLES = ["account_trailer_amount_blank_example.bai2", "citi_example.bai2", "nwb_example.bai2",
           "svb_us_example.bai2"]
CITI = """01,CITIDIRECT,8888888,150716,0713,00131100,,,2/
02,8888888,CITIGB00,1,150715,2340,GBP,2/
03,77777777,GBP,010,10000,,,015,10000,,,/
16,191,001,V,150715,,1234567890,RP12312312312312/
88,FR:FP SIP INCOMING
88,ENDT:20150715
88,TRID:RP12312312312312
88,PY:RP1231231231231200                 A1234BC 22/03/66
88,BI:22222222
88,OB:111111 BUCKINGHAM PALACE OB3:BARCLAYS BANK PLC
88,BO:11111111 BO1:DOE JO
49,20001,10/
98,20001,1,12/
99,20001,1,14/
"""


@pytest.fixture(scope="session")
def samples(shared_data: Path) -> Path:
    return shared_data / BAI2 / "ministryofjustice"


def _expected(shared_data: Path) -> dict[str, dict]:
    text = (shared_data / BAI2 / "EXPECTED_by_python-bai2_0.15.0.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {row["file"].split("/")[-1]: row for row in rows}


def _lines_of(parsed: ParsedFile, statement_index: int) -> list[StatementLine]:
    return [line for line in parsed.statement_lines if line.statement_index == statement_index]


def _parse_text(text: str) -> ParsedFile:
    return fmt.parse(text.encode("ascii"))


def _replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


# --- the samples ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_expected_figures(samples: Path, shared_data: Path, name: str):
    expected = _expected(shared_data)[name]
    parsed = fmt.parse(samples / name)
    assert parsed.format == "bai2" and parsed.kind == "bank_statement"
    assert len(parsed.statements) == expected["accounts"]
    assert len(parsed.statement_lines) == expected["transactions"]
    # Every account trailer agrees with its records (no warning), so their sum is the file's.
    assert not [w for w in parsed.warnings if w.code != "balance_mismatch"]
    assert sum(s.control_total_minor for s in parsed.statements) == expected["file_control_total"]
    # The parser checks the 99 trailer's record and group counts; this is what it accepted.
    trailer = (samples / name).read_text().strip().splitlines()[-1].rstrip("/").split(",")
    assert (int(trailer[2]), int(trailer[3])) == (expected["groups"], expected["record_count"])
    assert all(isinstance(line.amount_minor, int) for line in parsed.statement_lines)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_the_library(samples: Path, name: str):
    parsed = fmt.parse(samples / name)
    library = bai2_library.parse_from_file(open(samples / name))  # noqa: SIM115
    accounts = [(group, account) for group in library.children for account in group.children]
    assert len(accounts) == len(parsed.statements)
    for statement, (group, account) in zip(parsed.statements, accounts, strict=True):
        header = account.header
        assert statement.account_id == header.customer_account_number
        assert statement.currency == (header.currency or group.header.currency)
        assert statement.to_date == group.header.as_of_date
        assert statement.sequence_number == library.header.file_id
        summaries = {item.type_code.code: item.amount for item in header.summary_items}
        assert statement.opening_balance_minor == summaries.get("010")
        assert statement.closing_balance_minor == summaries.get("015")
        assert (statement.control_total_minor, statement.control_count) == (
            account.trailer.account_control_total, account.trailer.number_of_records)
        lines = _lines_of(parsed, statement.index)
        assert len(lines) == len(account.children)
        for line, detail in zip(lines, account.children, strict=True):
            sign = -1 if detail.type_code.transaction.value == "debit" else 1
            assert line.amount_minor == sign * detail.amount
            assert line.transaction_code == detail.type_code.code
            assert line.bank_reference == detail.bank_reference
            assert line.customer_reference == detail.customer_reference
            assert line.remittance == (detail.text.strip() if detail.text else None)
            if detail.availability and "date" in detail.availability:
                assert line.value_date == detail.availability["date"]


def test_citi_sample(samples: Path):
    parsed = fmt.parse(samples / "citi_example.bai2")
    statement, line = parsed.statements[0], parsed.statement_lines[0]
    assert (statement.account_id, statement.currency, statement.servicer_bic) == (
        "77777777", "GBP", "CITIGB00")
    assert statement.statement_id == "00131100:77777777"
    assert statement.created_at == dt.datetime(2015, 7, 16, 7, 13)
    # 10000 + 1 is not 10000: the bank's own example does not reconcile; it loads flagged.
    assert statement.balance_check == "mismatch"
    assert [w.code for w in parsed.warnings] == ["balance_mismatch"]
    assert (line.amount_minor, line.status, line.value_date, line.booking_date) == (
        1, "booked", dt.date(2015, 7, 15), dt.date(2015, 7, 15))
    assert line.remittance.startswith("FR:FP SIP INCOMING ENDT:20150715 TRID:")
    assert line.remittance.endswith("BO:11111111 BO1:DOE JO")


def test_natwest_sample(samples: Path):
    parsed = fmt.parse(samples / "nwb_example.bai2")
    statement = parsed.statements[0]
    # The account states GBP; the group leaves it blank (the library's USD default is the group's).
    assert (statement.account_id, statement.currency) == ("88888888 600004", "GBP")
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (36521, 33845)
    assert statement.balance_check == "ok"
    assert statement.created_at == dt.datetime(2010, 2, 15, 14, 59, 35)
    assert [x.amount_minor for x in parsed.statement_lines] == [-971, -100, -123, -1571, 89]
    assert parsed.statement_lines[-1].remittance.endswith("INTERNATIONAL-5373 CLIE NT SECCY AC TFR")


def test_svb_sample(samples: Path):
    parsed = fmt.parse(samples / "svb_us_example.bai2")
    assert [(s.account_id, s.to_date, s.balance_check) for s in parsed.statements] == [
        ("1234567890", dt.date(2022, 2, 1), "ok"), ("1234567890", dt.date(2022, 2, 2), "ok")]
    first = parsed.statement_lines[0]
    assert (first.amount_minor, first.bank_reference, first.customer_reference,
            first.remittance) == (490196, "172629", None, "SOME PAYMENT ACH OFFSET")


def test_blank_account_trailer_total_is_zero(samples: Path):
    parsed = fmt.parse(samples / "account_trailer_amount_blank_example.bai2")
    assert [(s.account_id, s.currency, s.control_total_minor, s.control_count, s.balance_check)
            for s in parsed.statements] == [("12345", "USD", 0, 2, "not_applicable"),
                                            ("54321", "USD", 0, 2, "not_applicable")]
    assert not parsed.warnings


def test_sniff(samples: Path):
    assert all(fmt.sniff((samples / name).read_bytes()[:4096], name) for name in SAMPLES)
    assert fmt.sniff(b"\xef\xbb\xbf01,A,B,260302,0800,1,,,2/\n", "x.txt")
    assert not fmt.sniff(b":20:STMT\n:25:NL91ABNA0417164300\n", "x.sta")
    assert not fmt.sniff(b"id,amount\n01,2\n", "x.csv")


# --- trailers: quarantine the file, warn about a subtotal --------------------------------------


@pytest.mark.parametrize(("line", "new", "reason", "location"), [
    (14, "99,20002,1,14/", "trailer_total_mismatch", "line 14"),
    (14, "99,20001,1,15/", "record_count_mismatch", "line 14"),
    (14, "99,20001,2,14/", "record_count_mismatch", "line 14"),
    (1, "01,CITIDIRECT,8888888,150716,0713,00131100,,,1/", "unsupported_version", "line 1"),
    (2, "02,8888888,CITIGB00,1,150732,2340,GBP,2/", "bad_date", "line 2"),
    (3, "03,77777777,XXZ,010,10000,,,015,10000,,,/", "unknown_currency", "line 3"),
    (3, "03,77777777,GBP,010,1O000,,,015,10000,,,/", "bad_amount", "line 3"),
    (4, "16,191,-001,V,150715,,1234567890,RP12312312312312/", "bad_amount", "line 4"),
    (4, "16,191,,V,150715,,1234567890,RP12312312312312/", "missing_field", "line 4"),
    (4, "16,19A,001,V,150715,,1234567890,RP12312312312312/", "bad_field", "line 4"),
    (4, "16,191,001,Q,150715,,1234567890,RP12312312312312/", "bad_field", "line 4"),
    (4, "98,20001,1,12/", "unexpected_record", "line 4"),
    (4, "17,191,001/", "bad_record", "line 4"),
    (12, "49,20001/", "missing_field", "line 12"),
    (1, "88,CONTINUED", "not_bai2", "line 1"),
])
def test_broken_files_are_quarantined(line: int, new: str, reason: str, location: str):
    with pytest.raises(ParseError) as err:
        _parse_text(_replace_line(CITI, line, new))
    assert (err.value.reason, err.value.location) == (reason, location)


@pytest.mark.parametrize(("text", "reason", "location"), [
    (CITI.rsplit("99,", 1)[0], "truncated", "line 13"),  # no file trailer
    (CITI.replace("88,FR:FP SIP INCOMING\n", ""), "record_count_mismatch", "line 13"),
    (CITI + "01,AGAIN/\n", "unexpected_record", "line 15"),
    ("", "not_bai2", "line 1"),
    ("hello,world\n", "not_bai2", "line 1"),
    ("01,A,B,150716,0713,1,,,2/\n99,0,0,2/\n", "missing_field", "line 2"),
])
def test_truncated_and_garbled_files_are_quarantined(text: str, reason: str, location: str):
    with pytest.raises(ParseError) as err:
        _parse_text(text)
    assert (err.value.reason, err.value.location) == (reason, location)


@pytest.mark.parametrize(("line", "new", "codes"), [
    (12, "49,20000,10/", ["trailer_total_mismatch"]),
    (12, "49,20001,11/", ["record_count_mismatch"]),
    (13, "98,20000,1,12/", ["trailer_total_mismatch"]),
    (13, "98,20001,2,12/", ["record_count_mismatch"]),
    (13, "98,20001,1,13/", ["record_count_mismatch"]),
    (2, "02,8888888,CITIGB00,4,150715,2340,GBP,2/", ["group_status"]),
])
def test_wrong_subtotals_are_warnings(line: int, new: str, codes: list[str]):
    parsed = _parse_text(_replace_line(CITI, line, new))
    assert sorted(w.code for w in parsed.warnings) == sorted([*codes, "balance_mismatch"])
    assert len(parsed.statement_lines) == 1


# --- type codes, funds types, currencies --------------------------------------------------------


def _file(account_records: list[str], group_currency: str = "USD", amounts: int | None = None,
          ) -> str:
    """A one-group, one-account file around the given 03..16 records, trailers computed (pass
    `amounts` when availability fields make the simple sum wrong)."""
    if amounts is None:
        amounts = 0
        for record in account_records:
            fields = record.rstrip("/").split(",")
            if fields[0] == "16":
                amounts += int(fields[2])
            elif fields[0] == "03":
                amounts += sum(int(x) for x in fields[4::4] if x)
    count = len(account_records) + 1
    return "\n".join(["01,BANK,CUST,260302,0800,7,,,2/",
                      f"02,CUST,BANK,1,260301,2400,{group_currency},2/", *account_records,
                      f"49,{amounts},{count}/", f"98,{amounts},1,{count + 2}/",
                      f"99,{amounts},1,{count + 4}/", ""])


def test_type_codes_sign_the_amounts():
    parsed = _parse_text(_file([
        "03,1234,USD,010,100000,,,015,100149,,/",
        "16,142,1000,,R1,C1,ACH credit", "16,451,300,,R2,C2,ACH debit",
        "16,890,777,,R3,,non-monetary", "16,195,50,0,R4,,wire in",
        "16,575,701,1,R5,,ZBA debit", "16,720,100,,R6,,loan payment"]))
    lines = parsed.statement_lines
    assert [(x.transaction_code, x.amount_minor, x.status) for x in lines] == [
        ("142", 1000, "booked"), ("451", -300, "booked"), ("890", 777, "info"),
        ("195", 50, "booked"), ("575", -701, "booked"), ("720", 100, "booked")]
    assert parsed.statements[0].balance_check == "ok"  # 100000 + 149, the 890 left out
    assert lines[0].remittance == "ACH credit" and lines[2].customer_reference is None


def test_funds_availability_fields_are_skipped():
    parsed = _parse_text(_file([
        "03,1234,USD,010,5,,,015,20,,S,1,2,2/",
        "16,115,10,S,5,4,1,AX13612,B096132,LOCKBOX DEPOSIT",
        "16,191,5,D,2,1,1,2,4,1234567890,RP1/"], amounts=5 + 20 + 10 + 5))
    first, second = parsed.statement_lines
    assert (first.bank_reference, first.customer_reference, first.remittance) == (
        "AX13612", "B096132", "LOCKBOX DEPOSIT")
    assert (second.bank_reference, second.customer_reference, second.remittance) == (
        "1234567890", "RP1", None)
    assert parsed.statements[0].balance_check == "ok"


@pytest.mark.parametrize(("account_currency", "group_currency", "expected"), [
    ("", "", "USD"), ("", "EUR", "EUR"), ("JPY", "EUR", "JPY")])
def test_currency_defaults(account_currency: str, group_currency: str, expected: str):
    parsed = _parse_text(_file([f"03,1234,{account_currency},010,5,,/", "16,142,5,,,,x"],
                               group_currency))
    assert parsed.statements[0].currency == parsed.statement_lines[0].currency == expected


def test_text_keeps_commas_and_a_summary_may_continue():
    parsed = _parse_text(_file(["03,1234,USD,010,0,,,015,2,,/", "88,040,0,,/",
                                "16,142,2,,BR,CR,PAYOUT, BATCH 7/", "88,MORE TEXT"]))
    line = parsed.statement_lines[0]
    assert line.remittance == "PAYOUT, BATCH 7,MORE TEXT"  # "/" ends a field, 88 starts one
    assert parsed.statements[0].closing_balance_minor == 2


# --- render -------------------------------------------------------------------------------------


def _fields(record) -> dict:
    return dataclasses.asdict(record)


_RECOMPUTED = ("control_total_minor", "control_count", "created_at")


@pytest.mark.parametrize("name", SAMPLES)
def test_render_round_trips_every_sample(samples: Path, name: str):
    parsed, again, rendered = render_round_trip(fmt, samples / name)
    for before, after in zip(parsed.statements, again.statements, strict=True):
        expected = {k: v for k, v in _fields(before).items() if k not in _RECOMPUTED}
        assert {k: v for k, v in _fields(after).items() if k not in _RECOMPUTED} == expected
    # The bai2 library checks every trailer render computed.
    library = bai2_library.parse_from_string(rendered.decode(), check_integrity=True)
    assert library.trailer.number_of_records == len(rendered.decode().splitlines())


def test_render_wraps_text_into_continuations():
    statement = Statement(index=0, message_type="bai2", account_id="000123", statement_id=None,
                          sequence_number="7", currency="USD", to_date=dt.date(2026, 3, 2),
                          opening_balance_minor=0, closing_balance_minor=-2500)
    text = "CLEARHOUSE PAYOUT po_123 " + "MERCHANT SETTLEMENT BATCH " * 5 + "END/"
    line = StatementLine(0, 0, dt.date(2026, 3, 2), None, -2500, "USD", bank_reference="B1",
                         customer_reference="po_123", remittance=text, transaction_code="142")
    rendered = fmt.render(ParsedFile(format="bai2", kind="bank_statement",
                                     statements=[statement], statement_lines=[line]),
                          sender_id="121000358").decode()
    records = rendered.splitlines()
    assert records[0] == "01,121000358,CLEARHOUSE,260302,0000,7,,,2/"
    assert records[3] == "16,699,2500,,B1,po_123/"  # 142 is a credit: a debit gets 699
    assert all(len(record) <= 80 for record in records)
    back = fmt.parse(rendered.encode()).statement_lines[0]
    assert (back.amount_minor, back.remittance, back.transaction_code) == (-2500, text, "699")


_REF = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=16)
_TEXT = st.text(string.ascii_letters + string.digits + " .,-/:", min_size=1, max_size=200).map(
    lambda t: " ".join(t.split())).filter(bool)
_CODES = [None, "142", "165", "195", "399", "451", "475", "699", "890"]


@st.composite
def parsed_files(draw) -> ParsedFile:
    parsed = ParsedFile(format="bai2", kind="bank_statement")
    for index in range(draw(st.integers(1, 4))):
        currency = draw(st.sampled_from(["USD", "EUR", "JPY", "GBP", "KWD"]))
        as_of = draw(st.dates(dt.date(2001, 1, 1), dt.date(2060, 12, 31)))
        statement = Statement(
            index=index, message_type="bai2",
            account_id=draw(st.text(string.digits, min_size=4, max_size=12)),
            statement_id=None, sequence_number="42", currency=currency, to_date=as_of,
            opening_balance_minor=draw(st.none() | st.integers(-10**14, 10**14)),
            closing_balance_minor=draw(st.none() | st.integers(-10**14, 10**14)))
        for number in range(draw(st.integers(0, 5))):
            code = draw(st.sampled_from(_CODES))
            info = code == "890"
            amount = draw(st.integers(0 if info else -10**12, 10**12))
            parsed.statement_lines.append(StatementLine(
                index, number, as_of, draw(st.none() | st.dates(dt.date(2001, 1, 1),
                                                                 dt.date(2060, 12, 31))),
                amount, currency, status="info" if info else "booked",
                bank_reference=draw(st.none() | _REF), customer_reference=draw(st.none() | _REF),
                remittance=draw(st.none() | _TEXT), transaction_code=code))
        parsed.statements.append(statement)
    return parsed


def _expected_code(line: StatementLine) -> str:
    direction = {"142": 1, "165": 1, "195": 1, "399": 1, "451": -1, "475": -1, "699": -1,
                 "890": 0}.get(line.transaction_code or "")
    if line.status == "info":
        return "890"
    wanted = -1 if line.amount_minor < 0 else 1
    return line.transaction_code if direction == wanted else ("699" if wanted < 0 else "399")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parsed_files())
def test_render_parse_round_trip(parsed: ParsedFile):
    rendered = fmt.render(parsed, sender_id="BANKUS33")
    again = fmt.parse(rendered)
    assert [(s.account_id, s.currency, s.to_date, s.opening_balance_minor,
             s.closing_balance_minor, s.servicer_bic) for s in again.statements] == [
        (s.account_id, s.currency, s.to_date, s.opening_balance_minor, s.closing_balance_minor,
         "BANKUS33") for s in parsed.statements]
    expected_lines = [dataclasses.replace(x, transaction_code=_expected_code(x))
                      for x in parsed.statement_lines]
    assert [_fields(x) for x in again.statement_lines] == [_fields(x) for x in expected_lines]
    for statement in again.statements:
        booked = [x.amount_minor for x in _lines_of(again, statement.index)
                  if x.status == "booked"]
        if statement.opening_balance_minor is None or statement.closing_balance_minor is None:
            assert statement.balance_check == "not_applicable"
        else:
            ok = statement.opening_balance_minor + sum(booked) == statement.closing_balance_minor
            assert statement.balance_check == ("ok" if ok else "mismatch")
    assert not [w for w in again.warnings if w.code != "balance_mismatch"]
    assert fmt.render(again, sender_id="BANKUS33") == rendered


# --- fuzzing the real files ---------------------------------------------------------------


# Record starts and field ends a damaged BAI2 file may gain.
_FRAGMENTS = [b",", b"/", b"\n88,", b"\n16,142,5,,,,x", b"\n49,", b"\n03,1,USD/", b"-", b"9" * 40]


def test_damaged_files_parse_or_are_quarantined(samples: Path):
    files = {name: (samples / name).read_bytes() for name in SAMPLES}
    files["citi_text"] = CITI.encode()
    check_damaged_files_parse_or_are_quarantined(fmt.parse, files, _FRAGMENTS, max_delete=20,
                                                 max_insert=8)
