"""The camt fast lane against the streaming parser: the same answer, or it declines.

Every test parses the same bytes both ways (`fast=True` forces the lane whatever the size,
`fast=False` never takes it) and compares statements, lines and warnings - or the ParseError's
reason and location. Tests that only pass when the lane really read the file say so
(`statement_table is not None`), so a lane that declined everything could not pass them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from lxml import etree

from ingest.files.formats import camt, camt_fast
from ingest.files.loader import load_landing
from ingest.files.records import ParsedFile, ParseError, Statement, StatementLine
from tests.ingest.files.test_camt import _FUZZ_FILES, GENKGO, _listed, _mutate, parsed_files
from tests.ingest.files.test_loader import drop, rows


def both(data: bytes) -> tuple[object, object]:
    """(fast lane's answer, streaming parser's answer): a ParsedFile or (reason, location)."""
    answers = []
    for fast in (True, False):
        try:
            answers.append(camt.parse(data, fast=fast))
        except ParseError as err:
            answers.append((err.reason, err.location))
    return answers[0], answers[1]


def assert_same(data: bytes) -> ParsedFile | tuple:
    fast, slow = both(data)
    if isinstance(slow, tuple):
        assert fast == slow
        return fast
    assert fast.lines() == slow.statement_lines
    assert fast.statements == slow.statements
    assert fast.warnings == slow.warnings
    assert fast.row_count == slow.row_count
    return fast


def read_by_lane(parsed) -> bool:
    return isinstance(parsed, ParsedFile) and parsed.statement_table is not None


# --- the real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _listed("*.xml"))
def test_real_files_read_the_same(shared_data: Path, name: str):
    assert_same((shared_data / GENKGO / name).read_bytes())


def test_the_lane_reads_the_flat_real_files(shared_data: Path):
    # Flat entries (one TxDtls, parties by name, unstructured remittance) take the lane; the
    # others (structured remittance, party ids, batches) decline and read the same anyway.
    taken = sorted(name for name in _listed("*.xml")
                   if read_by_lane(assert_same((shared_data / GENKGO / name).read_bytes())))
    assert "camt053.v2.multi.statement.xml" in taken and "camt054.v8-with-UETR.xml" in taken
    assert len(taken) >= 6, taken


# --- generated statements --------------------------------------------------------------------


@examples(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parsed_files())
def test_rendered_statements_read_the_same(original: ParsedFile):
    parsed = assert_same(camt.render(original))
    # The renderer writes only shapes the lane reads; it declines amounts beyond int64 (the
    # streaming parser keeps them exact) and statements without entries (nothing to read).
    readable = original.statement_lines and all(
        abs(line.amount_minor) < 2**63 for line in original.statement_lines)
    assert read_by_lane(parsed) == bool(readable)


def _statement_file(lines: int = 40, seed: int = 3) -> bytes:
    day = dt.date(2026, 11, 20)
    rows = [StatementLine(
        statement_index=0, line_number=i, booking_date=day, value_date=day,
        amount_minor=(i * 7919) % 100_000 * (1 if i % 3 else -1) or 1, currency="EUR",
        status=("booked", "pending", "info")[i % 7 % 3], bank_reference=f"BR{i}",
        customer_reference=f"CR{i}" if i % 2 else None, end_to_end_id=f"E2E-{i}",
        remittance=f"PAYOUT po_{i} batch {i % 5}", counterparty_name=f"Party {i % 4}",
        counterparty_account="DE89370400440532013000" if i % 2 else "ACC-7",
        transaction_code=("PMNT/RCDT/ESCT", "544", None)[i % 3],
        entry_reference=f"N{i}" if i % 4 else None) for i in range(lines)]
    statement = Statement(
        index=0, message_type="camt.053", account_id="DE89370400440532013000",
        statement_id="S-1", sequence_number="7", currency="EUR", from_date=day, to_date=day,
        opening_balance_minor=10_000, opening_date=day, closing_balance_minor=10_000 + sum(
            r.amount_minor for r in rows if r.status == "booked"), closing_date=day,
        control_count=lines, control_total_minor=sum(abs(r.amount_minor) for r in rows))
    return camt.render(ParsedFile("camt", "bank_statement", [statement], rows),
                       created_at=dt.datetime(2026, 11, 21, 6, 0))


def _first_entry_sub(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


# Each variant is a shape banks write that the lane reads, or one it must decline; both ways
# the answer is the streaming parser's.
VARIANTS = {
    # read by the lane
    "pretty printed": (lambda d: etree.tostring(etree.fromstring(d), pretty_print=True,
                                                xml_declaration=True, encoding="UTF-8"), True),
    "v2 status text": (lambda d: d.replace(b"<Sts><Cd>BOOK</Cd></Sts>", b"<Sts>BOOK</Sts>"), True),
    "date-times": (lambda d: d.replace(b"<BookgDt><Dt>2026-11-20</Dt>",
                                       b"<BookgDt><DtTm>2026-11-20T10:00:00+01:00</DtTm>"), True),
    "v2 parties": (lambda d: re.sub(rb"<(Dbtr|Cdtr)><Pty>(<Nm>[^<]*</Nm>)</Pty>", rb"<\1>\2",
                                    d), True),
    "postal address": (lambda d: d.replace(b"</Nm></Pty>", b"</Nm><PstlAdr><Ctry>NL</Ctry>"
                                           b"<AdrLine>Road 1</AdrLine></PstlAdr></Pty>"), True),
    "unknown status": (lambda d: _first_entry_sub(d, b"<Cd>PDNG</Cd>", b"<Cd>WHAT</Cd>"), True),
    "empty status": (lambda d: _first_entry_sub(d, b"<Cd>PDNG</Cd>", b"<Cd> </Cd>"), True),
    "padded text": (lambda d: d.replace(b"<Ustrd>", b"<Ustrd>  \xc2\xa0").replace(
        b"</Ustrd>", b" \xe2\x80\x83</Ustrd>"), True),
    "entities": (lambda d: d.replace(b"PAYOUT", b"&#80;AY&amp;OUT&#x20;&lt;")
                 .replace(b"E2E-1<", b"&#32;NOTPROVIDED <"), True),
    "not provided": (lambda d: d.replace(b"<EndToEndId>E2E-2<", b"<EndToEndId>notprovided<"),
                     True),
    "partial bank code": (lambda d: d.replace(b"<Fmly><Cd>RCDT</Cd>", b"<Fmly><Cd> </Cd>"), True),
    "other account": (lambda d: d.replace(b"<Othr><Id>ACC-7</Id></Othr>", b"<Othr><Id>ACC-7</Id>"
                                          b"<SchmeNm><Cd>BBAN</Cd></SchmeNm></Othr>"), True),
    "five decimals": (lambda d: _first_entry_sub(d, b'Ccy="EUR">0.01<', b'Ccy="EUR">0.01000<'),
                      True),
    "whole units": (lambda d: _first_entry_sub(d, b'Ccy="EUR">0.01<', b'Ccy="EUR"> 7 <'), True),
    "plus sign": (lambda d: _first_entry_sub(d, b'Ccy="EUR">0.01<', b'Ccy="EUR">+0.01<'), True),
    "minus sign": (lambda d: _first_entry_sub(d, b'Ccy="EUR">0.01<', b'Ccy="EUR">-0.01<'), False),
    "reversal and info": (lambda d: d.replace(b"</CdtDbtInd><Sts>", b"</CdtDbtInd><RvslInd>false"
                                              b"</RvslInd><Sts>").replace(b"</Ntry>",
                                              b"<AddtlNtryInf>x</AddtlNtryInf></Ntry>"), True),
    # declined: the streaming parser reads them (or says what is wrong)
    "comment in an entry": (lambda d: _first_entry_sub(d, b"<Sts>", b"<!-- c --><Sts>"), False),
    "cdata": (lambda d: _first_entry_sub(d, b"<Ustrd>", b"<Ustrd><![CDATA[x<y]]>"), False),
    "commented entry": (lambda d: _first_entry_sub(d, b"<Ntry>", b"<!-- <Ntry></Ntry> --><Ntry>"),
                        False),
    "two details": (lambda d: _first_entry_sub(d, b"</TxDtls>", b"</TxDtls><TxDtls/>"), False),
    "structured remittance": (lambda d: _first_entry_sub(d, b"<Ustrd>PAYOUT po_3 batch 3</Ustrd>",
                              b"<Strd><CdtrRefInf><Ref>RF18</Ref></CdtrRefInf></Strd>"), False),
    "multi-line text": (lambda d: _first_entry_sub(d, b"batch 1<", b"batch\n1<"), False),
    "latin-1": (lambda d: d.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'), False),
    "bad entity": (lambda d: _first_entry_sub(d, b"PAYOUT", b"&nbsp;PAYOUT"), False),
    "char ref to a control": (lambda d: _first_entry_sub(d, b"PAYOUT", b"&#1;PAYOUT"), False),
    "]]> in text": (lambda d: _first_entry_sub(d, b"PAYOUT", b"]]>PAYOUT"), False),
    "U+FFFF in text": (lambda d: _first_entry_sub(d, b"PAYOUT", b"\xef\xbf\xbfPAYOUT"), False),
    "bad utf-8": (lambda d: _first_entry_sub(d, b"PAYOUT", b"\xc3PAYOUT"), False),
    "bad date": (lambda d: _first_entry_sub(d, b"<Dt>2026-11-20</Dt>", b"<Dt>2026-02-30</Dt>"),
                 False),
    "bad indicator": (lambda d: _first_entry_sub(d, b"<CdtDbtInd>DBIT", b"<CdtDbtInd>DEBIT"),
                      False),
    "unknown currency": (lambda d: _first_entry_sub(d, b'<Amt Ccy="EUR">0.01', b'<Amt Ccy="XYZ">0.01'),
                         False),
    "too many decimals": (lambda d: _first_entry_sub(d, b'Ccy="EUR">0.01<', b'Ccy="EUR">0.015<'),
                          False),
    "mismatched tag": (lambda d: _first_entry_sub(d, b"</NtryRef>", b"</NtryRefX>"), False),
    "entry outside a statement": (lambda d: d.replace(b"</Stmt>", b"</Stmt><Ntry></Ntry>"), False),
    "placeholder look-alike": (lambda d: _first_entry_sub(d, b"<Ntry>", b'<Ntry chFastRun="0"/>'
                                                          b"<Ntry>"), False),
    "foreign default namespace": (lambda d: d.replace(b"<Stmt>", b'<Stmt xmlns="urn:other">'),
                                  False),
    "truncated": (lambda d: d[: len(d) * 2 // 3], False),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_read_the_same(variant: str):
    change, read = VARIANTS[variant]
    data = change(_statement_file())
    assert data != _statement_file()
    parsed = assert_same(data)
    assert read_by_lane(parsed) == read


@examples(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["truncate", "flip", "delete", "insert", "element"]),
    at=st.integers(0, 40_000),
    size=st.integers(1, 40),
    junk=st.binary(min_size=1, max_size=12) | st.sampled_from(
        [b"<", b"&", b"<Ntry>", b"</Ntry>", b"</Stmt>", b"<!--", b"]]>", b"\xef\xbf\xbe", b"&#0;",
         b"\x1e", b"\x1f", b"\n\x1e", b"<Amt Ccy=", b"<Ntry chFastRun=\"0\"/>"]),
)
def test_mutated_statements_read_the_same(kind, at, size, junk):
    assert_same(_mutate(_statement_file(60), kind, at, size, junk))


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_FUZZ_FILES),
       kind=st.sampled_from(["truncate", "flip", "delete", "insert", "element"]),
       at=st.integers(0, 20_000), size=st.integers(1, 40), junk=st.binary(min_size=1, max_size=8))
def test_mutated_real_files_read_the_same(shared_data, name, kind, at, size, junk):
    assert_same(_mutate((shared_data / GENKGO / name).read_bytes(), kind, at, size, junk))


# --- chunks and worker processes -------------------------------------------------------------


def test_chunks_in_worker_processes_give_the_in_process_answer(monkeypatch):
    data = _statement_file(3_000)
    monkeypatch.setattr(camt_fast, "CHUNK_BYTES", 64 << 10)
    in_process = camt_fast.prepare(data, "Stmt", workers=0)
    in_workers = camt_fast.prepare(data, "Stmt", workers=2)
    assert in_process and in_workers
    (run,) = in_workers
    assert len(list(camt_fast._chunks(data, run))) > 10
    assert run.lines.equals(in_process[0].lines)
    assert run.totals == in_process[0].totals
    assert run.lines.num_rows == 3_000


def test_a_declined_chunk_in_a_worker_declines_the_file(monkeypatch):
    data = _statement_file(3_000)
    entries = [m.start() for m in re.finditer(rb"<Ntry>", data)]
    late = entries[2_500]  # a comment in a late chunk, after workers have answered others
    data = data[:late] + b"<!-- late -->" + data[late:]
    monkeypatch.setattr(camt_fast, "CHUNK_BYTES", 64 << 10)
    assert camt_fast.prepare(data, "Stmt", workers=2) is None
    parsed = camt.parse(data)  # small: the streaming parser, which reads it
    assert len(parsed.statement_lines) == 3_000


def test_big_files_take_the_lane_by_default(monkeypatch):
    data = _statement_file(500)
    monkeypatch.setattr(camt_fast, "MIN_BYTES", len(data))
    assert read_by_lane(camt.parse(data))
    assert read_by_lane(camt.parse(io.BytesIO(data).getvalue()))
    monkeypatch.setattr(camt_fast, "MIN_BYTES", len(data) + 1)
    assert not read_by_lane(camt.parse(data))


def test_multi_statement_lines_are_numbered_per_statement():
    first = _statement_file(30)
    second = first.replace(b"<Id>S-1</Id>", b"<Id>S-2</Id>")
    stmt_start, stmt_end = second.index(b"<Stmt>"), second.index(b"</Stmt>") + 7
    data = first.replace(b"</Stmt>", b"</Stmt>" + second[stmt_start:stmt_end], 1)
    parsed = assert_same(data)
    assert read_by_lane(parsed)
    assert [s.statement_id for s in parsed.statements] == ["S-1", "S-2"]
    numbers = [(ln.statement_index, ln.line_number) for ln in parsed.lines()]
    assert numbers == [(s, n) for s in (0, 1) for n in range(30)]


def test_lines_keep_exact_types():
    parsed = assert_same(_statement_file(10))
    schema = parsed.statement_table.schema
    assert [f.name for f in schema] == [f.name for f in dataclasses.fields(StatementLine)]
    assert str(schema.field("amount_minor").type) == "int64"
    assert str(schema.field("booking_date").type) == "date32[day]"


# --- loaded: the warehouse holds what the streaming parser reads, on DuckDB and Postgres -------

_LINE_COLUMNS = [f.name for f in dataclasses.fields(StatementLine)]


def test_lane_lines_load_as_the_parser_reads_them(settings, monkeypatch):
    data = _statement_file(300).replace(b"PAYOUT po_1 ", b"PAYOUT &amp; \xc3\xa9 po_1 ")
    expected = camt.parse(data, fast=False)
    read = []
    prepare = camt_fast.prepare
    monkeypatch.setattr(camt_fast, "prepare", lambda *a, **k: read.append(prepare(*a, **k))
                        or read[-1])
    monkeypatch.setattr(camt_fast, "MIN_BYTES", 0)
    drop(settings, "bank", "bank_1.xml", data)
    report = load_landing(settings)
    assert report.summary()["loaded"] == 1 and read and read[0] is not None

    got = rows(settings, f"SELECT {', '.join(_LINE_COLUMNS)} FROM raw.bank_statement_lines "
                         "ORDER BY statement_index, line_number")
    amount = _LINE_COLUMNS.index("amount_minor")
    assert [tuple(int(v) if i == amount else v for i, v in enumerate(row)) for row in got] == [
        dataclasses.astuple(line) for line in expected.statement_lines]
    booked = sum(ln.amount_minor for ln in expected.statement_lines if ln.status == "booked")
    (statement,) = rows(settings, "SELECT line_count, lines_total_minor, balance_check "
                                  "FROM raw.bank_statements")
    assert (statement[0], int(statement[1]), statement[2]) == (300, booked, "ok")
