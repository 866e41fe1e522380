"""camt.052/053/054 parser and camt.053.001.08 renderer: the genkgo regression files, the
statement checks, errors, round trips and fuzzing of the real files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ingest.files.formats import camt
from ingest.files.records import ParsedFile, ParseError, Statement, StatementLine
from tests.shared_paths import SHARED_DATA

GENKGO = "camt/genkgo"
EUR = "EUR"
# File names for parametrising only; the tests read the files through `shared_data`.
_LISTING = SHARED_DATA / GENKGO
_MISSING = ["shared-data-missing"]  # one case, so the fixture fails loudly instead of a skip


def _listed(pattern: str) -> list[str]:
    return sorted(p.name for p in _LISTING.glob(pattern)) or _MISSING


@pytest.fixture(scope="session")
def genkgo(shared_data: Path) -> Path:
    return shared_data / GENKGO


def _summaries(shared_data_dir: Path) -> list[dict]:
    path = shared_data_dir / GENKGO / "EXPECTED_summary_from_json.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summary_ids() -> list[str]:
    if not (_LISTING / "EXPECTED_summary_from_json.jsonl").is_file():
        return _MISSING
    return [row["file"] for row in _summaries(_LISTING.parents[1])]


def _lines_of(parsed: ParsedFile, statement_index: int) -> list[StatementLine]:
    return [line for line in parsed.statement_lines if line.statement_index == statement_index]


# --- the genkgo files against their summaries and dumps -------------------------------------


@pytest.mark.parametrize("file_name", _summary_ids())
def test_genkgo_file_matches_expected_summary(shared_data: Path, file_name: str):
    expected = next(row for row in _summaries(shared_data) if row["file"] == file_name)
    parsed = camt.parse(shared_data / GENKGO / file_name)
    assert parsed.format == "camt" and parsed.kind == "bank_statement"
    by_id = {statement.statement_id: statement for statement in parsed.statements}
    for record in expected["records"]:
        statement = by_id[record["id"]]
        assert statement.account_id == record["account"]
        lines = _lines_of(parsed, statement.index)
        # No sample entry splits (their details lack amounts or are in another currency).
        assert [(line.amount_minor, line.currency) for line in lines] == [
            (int(amount), currency) for _indicator, amount, currency in record["entries"]
        ]
        for (indicator, amount, _currency), line in zip(record["entries"], lines, strict=True):
            assert (indicator == "CRDT") == (line.amount_minor >= 0) == (int(amount) >= 0)
        balances = record["balances"]
        opening = next(((int(a), c) for kind, a, c in balances if kind == "opening"), None)
        closing = next(((int(a), c) for kind, a, c in balances if kind == "closing"), None)
        # each balance in its own currency (the minimal samples close in SEK on a EUR account)
        assert (statement.opening_balance_minor, statement.opening_currency) == (
            opening or (None, None))
        assert (statement.closing_balance_minor, statement.closing_currency) == (
            closing or (None, None))
    if file_name != "camt053.v2.multi.statement.xml":  # genkgo keeps only its last statement
        assert len(parsed.statement_lines) == expected["total_entries"]


def _genkgo_dump_entries(dump_path: Path) -> list[dict]:
    return json.loads(dump_path.read_text()).get("getEntries") or []


def _genkgo_bank_code(entry: dict) -> str | None:
    code = entry.get("getBankTransactionCode") or {}
    domain = code.get("getDomain")
    if domain:
        family = domain.get("getFamily") or {}
        parts = [domain.get("getCode"), family.get("getCode"), family.get("getSubFamilyCode")]
        return "/".join(part for part in parts if part)
    return (code.get("getProprietary") or {}).get("getCode")


def _genkgo_counterparty(detail: dict, credit: bool) -> tuple[str | None, str | None]:
    parties = {
        party["getRelatedPartyType"]["__CLASS__"].rsplit("\\", 1)[-1]: party
        for party in detail.get("getRelatedParties") or []
    }
    party = parties.get("Debtor" if credit else "Creditor")
    ultimate = parties.get("UltimateDebtor" if credit else "UltimateCreditor")
    name = (party or {}).get("getRelatedPartyType", {}).get("getName")
    if name is None and ultimate:
        name = ultimate["getRelatedPartyType"].get("getName")
    account = ((party or {}).get("getAccount") or {}).get("getIdentification")
    return name, account


def _day(value: dict | None) -> dt.date | None:
    return dt.date.fromisoformat(value["0"][:10]) if value else None


@pytest.mark.parametrize("dump_name", _listed("*.json"))
def test_genkgo_file_matches_its_dump(shared_data: Path, dump_name: str):
    parsed = camt.parse(shared_data / GENKGO / dump_name.replace(".json", ".xml"))
    by_id = {statement.statement_id: statement for statement in parsed.statements}
    for entry in _genkgo_dump_entries(shared_data / GENKGO / dump_name):
        statement = by_id[entry["getRecord"]["getId"]]
        line = _lines_of(parsed, statement.index)[entry["getIndex"]]
        detail = entry.get("getTransactionDetail") or {}
        credit = entry["getCreditDebitIndicator"] == "CRDT"
        assert line.amount_minor == int(entry["getAmount"]["getAmount"])
        assert line.currency == entry["getAmount"]["getCurrency"]["getCode"]
        assert line.status == {"BOOK": "booked", "PDNG": "pending"}[entry["getStatus"]]
        assert line.booking_date == _day(entry.get("getBookingDate"))
        assert line.value_date == _day(entry.get("getValueDate"))
        assert line.bank_reference == entry.get("getAccountServicerReference")
        end_to_end = (detail.get("getReference") or {}).get("getEndToEndId")
        assert line.end_to_end_id == (None if end_to_end == "NOTPROVIDED" else end_to_end)
        message = (detail.get("getRemittanceInformation") or {}).get("getMessage")
        if message:  # genkgo keeps the first Ustrd block only; the line joins them all
            assert line.remittance is not None and line.remittance.startswith(message)
        else:
            assert line.remittance is None
        assert line.transaction_code == _genkgo_bank_code(entry)
        assert (line.counterparty_name, line.counterparty_account) == _genkgo_counterparty(
            detail, credit
        )


def test_genkgo_header_fields(genkgo: Path):
    minimal = camt.parse(genkgo / "camt053.v2.minimal.xml").statements[0]
    assert minimal.message_type == "camt.053"
    assert minimal.statement_id == "253EURNL26VAYB8060476890"
    assert minimal.sequence_number == "12312"
    assert minimal.currency == EUR
    assert minimal.created_at == dt.datetime(2015, 3, 10, 18, 43, 50, tzinfo=dt.UTC)
    assert (minimal.from_date, minimal.to_date) == (dt.date(2007, 10, 18), dt.date(2007, 10, 18))
    assert (minimal.opening_balance_minor, minimal.opening_date) == (1815, dt.date(2014, 12, 30))
    assert (minimal.closing_balance_minor, minimal.closing_date) == (-2700, dt.date(2014, 12, 31))
    v3 = camt.parse(genkgo / "camt053.v3.xml").statements[0]
    assert v3.servicer_bic == "KREDBEBB"
    named = camt.parse(genkgo / "camt052.v2.with-account-name.xml").statements[0]
    assert (named.message_type, named.account_name) == ("camt.052", "Account Owner Name")
    v1 = camt.parse(genkgo / "camt052.v1.xml").statements[0]
    assert v1.account_id == "CH2801234000123456789"  # v1 Acct/Id/PrtryAcct/Id
    v8 = camt.parse(genkgo / "camt054.v8.xml").statements[0]
    assert (v8.message_type, v8.servicer_bic, v8.balance_check) == (
        "camt.054", "UBSWCHZH80A", "not_applicable"
    )
    only_dt = camt.parse(genkgo / "camt53.only-Dt-with-DtTm.xml")
    (statement,) = only_dt.statements
    assert only_dt.statement_lines == []
    assert (statement.currency, statement.opening_balance_minor) == ("RON", 544209)
    assert statement.opening_date == dt.date(2025, 7, 23)
    assert statement.created_at == dt.datetime(2025, 7, 24, 6, 10, 29)
    assert [w.code for w in only_dt.warnings] == ["balance_missing"]


def test_multi_statement_file_has_both_statements(genkgo: Path):
    parsed = camt.parse(genkgo / "camt053.v2.multi.statement.xml")
    assert [s.statement_id for s in parsed.statements] == [
        "253EURNL26VAYB8060476890", "254EURNL26VAYB8060476890"
    ]
    assert [(s.opening_balance_minor, s.closing_balance_minor) for s in parsed.statements] == [
        (1815, 2700), (2700, 2000)
    ]
    assert [s.balance_check for s in parsed.statements] == ["ok", "ok"]
    assert [(ln.statement_index, ln.line_number, ln.amount_minor, ln.end_to_end_id)
            for ln in parsed.statement_lines] == [(0, 0, 885, "000000001"), (1, 0, -700, "000000002")]
    assert parsed.warnings == []


def test_batched_details_in_another_currency_stay_one_line(genkgo: Path):
    parsed = camt.parse(genkgo / "camt054.v4.xml")  # 200000 SEK over 3.10 + 3.20 + 3.20 CHF
    (line,) = parsed.statement_lines
    assert (line.amount_minor, line.currency) == (-20000000, "SEK")
    assert line.end_to_end_id == "UXC06170000006PI00001EE00001"  # from the first TxDtls
    assert line.counterparty_name == "Example Creditor 3 - V1"


def test_statuses(genkgo: Path):
    assert camt.parse(genkgo / "camt053.v8.xml").statement_lines[0].status == "booked"  # Sts/Cd
    assert camt.parse(genkgo / "camt052.v6.xml").statement_lines[0].status == "pending"
    data = (genkgo / "camt053.v2.multi.statement.xml").read_bytes()
    parsed = camt.parse(data.replace(b"<Sts>BOOK</Sts>", b"<Sts>XYZW</Sts>", 1))
    assert parsed.statement_lines[0].status == "info"
    assert parsed.statements[0].balance_check == "mismatch"  # the entry no longer counts
    assert {w.code for w in parsed.warnings} == {"unknown_status", "balance_mismatch"}


def test_five_decimals_file(genkgo: Path):
    parsed = camt.parse(genkgo / "camt053.v2.five.decimals.xml")
    statement = parsed.statements[0]
    # "18.150", "27.050", "8.850": the extra digit is a zero, so exact in EUR cents
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (1815, 2705)
    assert parsed.statement_lines[0].amount_minor == 885
    # 18.15 + 8.85 = 27.00, not 27.05: the file's own arithmetic is off
    assert statement.balance_check == "mismatch"
    assert [w.code for w in parsed.warnings] == ["balance_mismatch"]
    tampered = (genkgo / "camt053.v2.five.decimals.xml").read_bytes().replace(b"8.850", b"8.855")
    with pytest.raises(ParseError) as err:
        camt.parse(tampered)
    assert err.value.reason == "amount_precision"
    assert err.value.location == "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]/Amt"


def test_wrong_file_is_refused(genkgo: Path):
    with pytest.raises(ParseError) as err:
        camt.parse(genkgo / "camt053.v2.wrong.xml")
    assert err.value.reason == "no_statements"
    assert err.value.location == "/Document/BkToCstmrStmt"


def test_sniff(genkgo: Path):
    for path in genkgo.glob("*.xml"):
        assert camt.sniff(path.read_bytes()[:4096], path.name)
    assert not camt.sniff(b":20:STARTUMSE\r\n:25:10020030/1234567\r\n", "x.sta")
    assert not camt.sniff(b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:'
                          b'xsd:pain.001.001.03"><CstmrCdtTrfInitn/></Document>', "p.xml")


# --- errors ------------------------------------------------------------------------------------

MINIMAL = "camt053.v2.minimal.xml"
NTRY_1 = "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]"


@pytest.mark.parametrize(
    ("old", "new", "reason", "location"),
    [
        (b'<Amt Ccy="EUR">8.85</Amt>', b"", "missing_field", NTRY_1 + "/Amt"),
        (b'<Amt Ccy="EUR">8.85</Amt>', b"<Amt>8.85</Amt>", "missing_field", NTRY_1 + "/Amt/@Ccy"),
        (b"<CdtDbtInd>CRDT</CdtDbtInd>\n                <RvslInd>", b"<RvslInd>",
         "missing_field", NTRY_1 + "/CdtDbtInd"),
        (b"<CdtDbtInd>CRDT</CdtDbtInd>\n                <RvslInd>",
         b"<CdtDbtInd>CR</CdtDbtInd><RvslInd>", "bad_value", NTRY_1 + "/CdtDbtInd"),
        (b'<Amt Ccy="EUR">8.85</Amt>', b'<Amt Ccy="EUR">8,85</Amt>', "bad_amount",
         NTRY_1 + "/Amt"),
        (b'<Amt Ccy="EUR">8.85</Amt>', b'<Amt Ccy="XXZ">8.85</Amt>', "unknown_currency",
         NTRY_1 + "/Amt"),
        (b"<Sts>BOOK</Sts>", b"", "missing_field", NTRY_1 + "/Sts"),
        (b"<Dt>2015-01-02</Dt>", b"<Dt>2015-13-02</Dt>", "bad_date", NTRY_1 + "/ValDt"),
        (b'<Amt Ccy="EUR">18.15</Amt>', b'<Amt Ccy="EUR">18.155</Amt>', "amount_precision",
         "/Document/BkToCstmrStmt/Stmt[1]/Bal[1]/Amt"),
    ],
)
def test_field_errors_name_the_element(genkgo: Path, old, new, reason, location):
    data = (genkgo / MINIMAL).read_bytes()
    assert old in data
    with pytest.raises(ParseError) as err:
        camt.parse(data.replace(old, new, 1))
    assert (err.value.reason, err.value.location) == (reason, location)


def test_syntax_errors_give_the_line(genkgo: Path):
    data = (genkgo / MINIMAL).read_bytes()
    with pytest.raises(ParseError) as err:
        camt.parse(data[: data.index(b"<NtryDtls>")])
    assert err.value.reason == "xml_syntax" and err.value.location.startswith("line ")
    with pytest.raises(ParseError) as err:
        camt.parse(data.replace(b"</Refs>", b"</Ref>", 1))
    assert err.value.reason == "xml_syntax"
    refs_line = data[: data.index(b"</Refs>")].count(b"\n") + 1
    assert err.value.location == f"line {refs_line}"
    with pytest.raises(ParseError) as err:
        camt.parse(b"")
    assert err.value.reason == "xml_syntax"


@pytest.mark.parametrize(
    "document",
    [
        b"<Document/>",
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><CstmrCdtTrfInitn/>'
        b"</Document>",
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.056.001.01"><FIToFIPmtCxlReq/>'
        b"</Document>",
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><Other/></Document>',
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"></Document>',
        b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY x "y">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt/>'
        b"</Document>",
    ],
)
def test_not_camt(document: bytes):
    with pytest.raises(ParseError) as err:
        camt.parse(document)
    assert err.value.reason == "not_camt"


def test_prefixed_namespace_parses_the_same(genkgo: Path):
    """A root with a prefix (no default namespace to drop) reads the same as the usual form."""
    data = (genkgo / "camt054.v8.xml").read_text()
    prefixed = re.sub(r"<(/?)(?=[A-Za-z])", r"<\1c:", data).replace(
        'xmlns="urn:iso', 'xmlns:c="urn:iso'
    )
    assert "<c:Ntry>" in prefixed
    plain, with_prefix = camt.parse(data.encode()), camt.parse(prefixed.encode())
    assert with_prefix.statements == plain.statements
    assert with_prefix.statement_lines == plain.statement_lines


def test_bytes_and_path_agree(genkgo: Path):
    path = genkgo / "camt054.v8.xml"
    assert camt.parse(path) == camt.parse(path.read_bytes())


# --- batched entries and the transaction summary -----------------------------------------------

_MESSAGE_ELEMENTS = {"052": ("BkToCstmrAcctRpt", "Rpt"), "053": ("BkToCstmrStmt", "Stmt"),
                     "054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}


def _document(entries: str, summary: str = "", version: str = "08", message: str = "053") -> bytes:
    wrapper, record = _MESSAGE_ELEMENTS[message]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{message}.001.{version}">
 <{wrapper}><GrpHdr><MsgId>M1</MsgId><CreDtTm>2025-01-31T18:00:00Z</CreDtTm></GrpHdr>
  <{record}><Id>S1</Id><Acct><Id><Othr><Id>ACC-1</Id></Othr></Id><Ccy>EUR</Ccy></Acct>
   <Bal><Tp><CdOrPrtry><Cd>PRCD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt>
    <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2025-01-30</Dt></Dt></Bal>
   <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">110.00</Amt>
    <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2025-01-31</Dt></Dt></Bal>
   {summary}
   {entries}
  </{record}>
 </{wrapper}>
</Document>""".encode()


def _detail(amount: str, e2e: str, debtor: str, ccy: str = EUR) -> str:
    return (f'<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy="{ccy}">{amount}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><RltdPties><Dbtr><Pty><Nm>{debtor}</Nm></Pty></Dbtr>"
            f"<DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties>"
            f"<RmtInf><Ustrd>payout {e2e}</Ustrd></RmtInf></TxDtls>")


def _batch(details: str, reference: str = "<AcctSvcrRef>BATCH-1</AcctSvcrRef>") -> str:
    return (f'<Ntry>{reference}<Amt Ccy="EUR">10.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2025-01-31</Dt></BookgDt>"
            f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly>"
            f"</Domn></BkTxCd><NtryDtls>{details}</NtryDtls></Ntry>")


def test_batched_entry_splits_when_details_add_up():
    details = _detail("2.50", "PO-1", "Alpha") + _detail("7.50", "PO-2", "Beta")
    parsed = camt.parse(_document(_batch(details)))
    assert [(ln.line_number, ln.amount_minor, ln.end_to_end_id, ln.counterparty_name,
             ln.remittance, ln.entry_reference, ln.bank_reference, ln.transaction_code)
            for ln in parsed.statement_lines] == [
        (0, 250, "PO-1", "Alpha", "payout PO-1", "BATCH-1", "BATCH-1", "PMNT/RCDT/ESCT"),
        (1, 750, "PO-2", "Beta", "payout PO-2", "BATCH-1", "BATCH-1", "PMNT/RCDT/ESCT"),
    ]
    statement = parsed.statements[0]
    assert statement.opening_balance_minor == 10000  # PRCD when there is no OPBD
    assert statement.account_id == "ACC-1"
    assert statement.balance_check == "ok" and parsed.warnings == []


def test_batched_entry_without_reference_gets_its_position():
    details = _detail("2.50", "PO-1", "Alpha") + _detail("7.50", "PO-2", "Beta")
    parsed = camt.parse(_document(_batch(details, reference="")))
    assert {ln.entry_reference for ln in parsed.statement_lines} == {"#1"}


@pytest.mark.parametrize(
    "details",
    [
        _detail("2.50", "PO-1", "Alpha") + _detail("7.00", "PO-2", "Beta"),  # 9.50 != 10.00
        _detail("2.50", "PO-1", "Alpha") + _detail("7.50", "PO-2", "Beta", ccy="USD"),
        _detail("2.50", "PO-1", "Alpha") + "<TxDtls><Refs><EndToEndId>PO-2</EndToEndId></Refs>"
        "</TxDtls>",
    ],
)
def test_batched_entry_stays_whole_when_details_do_not_add_up(details: str):
    parsed = camt.parse(_document(_batch(details)))
    (line,) = parsed.statement_lines
    assert (line.amount_minor, line.end_to_end_id, line.counterparty_name) == (1000, "PO-1", "Alpha")
    assert line.counterparty_account == "DE89370400440532013000"


@pytest.mark.parametrize(("message", "check"), [("052", "ok"), ("054", "not_applicable")])
def test_report_and_notification_balances(message: str, check: str):
    parsed = camt.parse(_document(_batch(_detail("10.00", "PO-1", "Alpha")), message=message))
    statement = parsed.statements[0]
    assert statement.message_type == f"camt.{message}"
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (10000, 11000)
    assert statement.balance_check == check and parsed.warnings == []


V2_SUMMARY = """<TxsSummry><TtlNtries><NbOfNtries>{n}</NbOfNtries><Sum>{total}</Sum>
 <TtlNetNtryAmt>{net}</TtlNetNtryAmt><CdtDbtInd>{sign}</CdtDbtInd></TtlNtries>
 <TtlCdtNtries><NbOfNtries>1</NbOfNtries><Sum>10.00</Sum></TtlCdtNtries>
 <TtlDbtNtries><NbOfNtries>0</NbOfNtries><Sum>0</Sum></TtlDbtNtries></TxsSummry>"""


def test_transaction_summary_is_read_and_checked():
    entry = _batch(_detail("10.00", "PO-1", "Alpha"))
    summary = V2_SUMMARY.format(n=1, total="10.00", net="10.00", sign="CRDT")
    parsed = camt.parse(_document(entry, summary, version="02"))
    statement = parsed.statements[0]
    assert (statement.control_count, statement.control_total_minor) == (1, 1000)
    assert parsed.warnings == []
    summary = V2_SUMMARY.format(n=2, total="10.00", net="10.00", sign="DBIT")
    parsed = camt.parse(_document(entry, summary, version="02"))
    (warning,) = parsed.warnings
    assert warning.code == "summary_mismatch" and warning.statement_index == 0
    assert "NbOfNtries says 2" in warning.message and "net says -1000" in warning.message


# --- render ------------------------------------------------------------------------------------


def _statement(**changes) -> Statement:
    base = dict(
        index=0, message_type="camt.053", account_id="NL26VAYB8060476890", statement_id="S-1",
        sequence_number="7", currency=EUR, servicer_bic="ABNANL2A", account_name="Collections",
        created_at=dt.datetime(2025, 2, 1, 6, 0, tzinfo=dt.UTC), from_date=dt.date(2025, 1, 1),
        to_date=dt.date(2025, 1, 31), opening_balance_minor=10_000, opening_date=dt.date(2024, 12, 31),
        closing_balance_minor=10_000 + 125_00 - 20_00, closing_date=dt.date(2025, 1, 31),
        opening_currency=EUR, closing_currency=EUR,
    )
    return Statement(**(base | changes))


def _payout_lines() -> list[StatementLine]:
    return [
        StatementLine(0, 0, dt.date(2025, 1, 3), dt.date(2025, 1, 3), 125_00, EUR,
                      bank_reference="B-1", end_to_end_id="po_123", remittance="Payout po_123",
                      counterparty_name="Stripe Payments <EU> & Co", counterparty_account="IE29AIBK93115212345678",
                      transaction_code="PMNT/RCDT/ESCT", entry_reference="B-1"),
        StatementLine(0, 1, dt.date(2025, 1, 4), None, -20_00, EUR, bank_reference="B-2",
                      counterparty_name="Fees", counterparty_account="acct 42",
                      transaction_code="544", entry_reference="B-2"),
        StatementLine(0, 2, dt.date(2025, 1, 5), None, 999_99, EUR, status="pending",
                      entry_reference="N-3"),
    ]


def test_render_round_trips_a_collection_statement():
    original = ParsedFile("camt", "bank_statement", [_statement()], _payout_lines())
    data = camt.render(original)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08" in data
    assert b"<Ustrd>Payout po_123</Ustrd>" in data and b"<EndToEndId>po_123</EndToEndId>" in data
    parsed = camt.parse(data)
    assert parsed.statement_lines == original.statement_lines
    statement = parsed.statements[0]
    assert statement.balance_check == "ok"  # the pending line does not count
    statement.balance_check = "not_applicable"
    assert statement == _statement()
    assert parsed.warnings == []


def test_render_tampered_closing_balance_is_a_mismatch():
    tampered = _statement(closing_balance_minor=_statement().closing_balance_minor + 1)
    parsed = camt.parse(camt.render(ParsedFile("camt", "bank_statement", [tampered],
                                               _payout_lines())))
    assert parsed.statements[0].balance_check == "mismatch"
    (warning,) = parsed.warnings
    assert (warning.code, warning.statement_index) == ("balance_mismatch", 0)


def test_render_writes_currency_exponents():
    lines = [StatementLine(0, 0, None, None, -1500, "JPY"), StatementLine(0, 1, None, None, 1234, "KWD")]
    data = camt.render(ParsedFile("camt", "bank_statement",
                                  [_statement(currency="JPY", opening_balance_minor=None)], lines))
    assert b'<Amt Ccy="JPY">1500</Amt><CdtDbtInd>DBIT</CdtDbtInd>' in data
    assert b'<Amt Ccy="KWD">1.234</Amt><CdtDbtInd>CRDT</CdtDbtInd>' in data


def test_render_summary_and_tampered_summary():
    lines = _payout_lines()
    ok = _statement(control_count=3, control_total_minor=125_00 + 20_00 + 999_99)
    parsed = camt.parse(camt.render(ParsedFile("camt", "bank_statement", [ok], lines)))
    assert (parsed.statements[0].control_count, parsed.statements[0].control_total_minor) == (
        3, 114_499)
    assert parsed.warnings == []
    wrong = _statement(control_count=4, control_total_minor=1)
    parsed = camt.parse(camt.render(ParsedFile("camt", "bank_statement", [wrong], lines)))
    assert [w.code for w in parsed.warnings] == ["summary_mismatch"]


def test_render_refuses_what_it_cannot_write():
    with pytest.raises(ValueError):
        camt.render(ParsedFile("camt", "bank_statement"))
    with pytest.raises(ValueError):
        camt.render(ParsedFile("camt", "bank_statement", [_statement()],
                               [StatementLine(0, 0, None, None, 1, EUR, remittance="a\x00b")]))
    with pytest.raises(ValueError):
        camt.render(ParsedFile("camt", "bank_statement", [_statement()],
                               [StatementLine(5, 0, None, None, 1, EUR)]))


# --- round trip of generated statements -----------------------------------------------------

# XML-special characters and sequences, non-ASCII, and anything printable
_TEXT_PIECES = st.one_of(
    st.sampled_from(list("<>&\"' ;]") + ["]]>", "&amp;", "\u00e9", "\u4e2d", "\U0001f4b6"]),
    st.characters(codec="utf-8", categories=("L", "N", "P", "S")),
)
texts = st.lists(_TEXT_PIECES, min_size=1, max_size=12).map("".join).map(str.strip).filter(bool)
optional_texts = st.none() | texts
currencies = st.sampled_from(["EUR", "JPY", "KWD", "USD"])
days = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2099, 12, 31))
amounts = st.one_of(st.integers(-10**6, 10**6), st.integers(-(10**30), 10**30))
accounts = st.sampled_from(["NL26VAYB8060476890", "DE89370400440532013000", "ACC-1 <x&y>", "0042"])
codes = st.sampled_from(["PMNT/RCDT/ESCT", "PMNT/ICDT/DMCT", "544", "NTRF", "A/B"])


@st.composite
def parsed_files(draw) -> ParsedFile:
    statements, lines = [], []
    for index in range(draw(st.integers(1, 3))):
        currency = draw(currencies)
        count = draw(st.integers(0, 6))
        statement_lines = [
            StatementLine(
                statement_index=index, line_number=number, booking_date=draw(st.none() | days),
                value_date=draw(st.none() | days), amount_minor=draw(amounts), currency=currency,
                status=draw(st.sampled_from(["booked", "pending", "info"])),
                bank_reference=draw(optional_texts), customer_reference=draw(optional_texts),
                end_to_end_id=draw(optional_texts.filter(lambda t: t != "NOTPROVIDED")),
                remittance=draw(optional_texts), counterparty_name=draw(optional_texts),
                counterparty_account=draw(st.none() | accounts),
                transaction_code=draw(st.none() | codes), entry_reference=draw(optional_texts),
            )
            for number in range(count)
        ]
        booked = sum(ln.amount_minor for ln in statement_lines if ln.status == "booked")
        opening = draw(st.none() | amounts)
        balanced = draw(st.booleans())
        closing = (opening + booked if balanced and opening is not None
                   else draw(st.none() | amounts))
        with_dates = draw(st.booleans())
        with_summary = draw(st.booleans())
        statements.append(Statement(
            index=index, message_type="camt.053", account_id=draw(accounts),
            statement_id=draw(texts), sequence_number=draw(st.none() | st.just("12")),
            currency=currency, servicer_bic=draw(st.none() | st.just("ABNANL2A")),
            account_name=draw(optional_texts),
            created_at=draw(st.none() | st.datetimes(
                min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2099, 1, 1),
                timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
            )),
            from_date=draw(days) if with_dates else None,
            to_date=draw(days) if with_dates else None,
            opening_balance_minor=opening, opening_date=draw(days) if opening is not None else None,
            closing_balance_minor=closing, closing_date=draw(days) if closing is not None else None,
            opening_currency=currency if opening is not None else None,
            closing_currency=currency if closing is not None else None,
            control_count=count if with_summary else None,
            control_total_minor=sum(abs(ln.amount_minor) for ln in statement_lines)
            if with_summary else None,
        ))
        lines += statement_lines
    return ParsedFile("camt", "bank_statement", statements, lines)


def _expected_balance_check(statement: Statement, lines: list[StatementLine]) -> str:
    if statement.opening_balance_minor is None or statement.closing_balance_minor is None:
        return "not_applicable"
    booked = sum(ln.amount_minor for ln in lines if ln.status == "booked")
    return "ok" if statement.opening_balance_minor + booked == statement.closing_balance_minor \
        else "mismatch"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parsed_files())
def test_render_then_parse_round_trips(original: ParsedFile):
    parsed = camt.parse(camt.render(original))
    # parse falls back to AcctSvcrRef for a line without NtryRef
    expected_lines = [
        dataclasses.replace(ln, entry_reference=ln.entry_reference or ln.bank_reference)
        for ln in original.statement_lines
    ]
    assert parsed.statement_lines == expected_lines
    for statement, back in zip(original.statements, parsed.statements, strict=True):
        lines = _lines_of(original, statement.index)
        assert back.balance_check == _expected_balance_check(statement, lines)
        back.balance_check = statement.balance_check
        assert back == statement
    assert not [w for w in parsed.warnings if w.code == "summary_mismatch"]


# --- fuzzing the real files --------------------------------------------------------------------

_FUZZ_FILES = _listed("*.xml")
_JUNK = st.binary(min_size=1, max_size=12) | st.sampled_from(
    [b"<", b"&", b"<Ntry>", b"</Stmt>", b"<!--", b"]]>", b"\xff\xfe", b"&#0;", b"<Amt Ccy="]
)


def _delete_element(data: bytes, pick: int) -> bytes:
    root = etree.fromstring(data)
    elements = [el for el in root.iter() if el.getparent() is not None]
    victim = elements[pick % len(elements)]
    victim.getparent().remove(victim)
    return etree.tostring(root)


def _mutate(data: bytes, kind: str, at: int, size: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        at = min(at, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (size % 255 + 1)]) + data[at + 1 :]
    if kind == "delete":
        return data[:at] + data[at + size :]
    if kind == "insert":
        return data[:at] + junk + data[at:]
    return _delete_element(data, at)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(_FUZZ_FILES),
    kind=st.sampled_from(["truncate", "flip", "delete", "insert", "element"]),
    at=st.integers(0, 20_000),
    size=st.integers(1, 40),
    junk=_JUNK,
)
def test_mutated_files_parse_or_raise_parse_error(shared_data, name, kind, at, size, junk):
    data = _mutate((shared_data / GENKGO / name).read_bytes(), kind, at, size, junk)
    try:
        parsed = camt.parse(data)
    except ParseError as err:
        assert err.reason and err.message
        return
    assert isinstance(parsed, ParsedFile) and parsed.statements
