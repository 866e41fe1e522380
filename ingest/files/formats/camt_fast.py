"""The fast lane for big camt files: flat entries read by one regular expression, on every core.

Why: lxml's tokenizer alone reads a big camt.053 at about 118k entries/s on one core, and the
parser's per-entry Python (`camt._add_entry_lines`) costs twice that again; issue 5 asks for 100k
lines/s. Most big statements are machine-written and flat: each `Ntry` the same handful of
elements in schema order, one `TxDtls`. For those, one compiled pattern (`_ENTRY`) turns each
entry into a delimited record in C (`re.subn`), Arrow's CSV reader splits the records, and Arrow
compute types them; chunks run in worker processes, one per core.

The fast lane only ever gives the answer the streaming parser (`camt._Reader`) gives, or
declines (`prepare` returns None and the caller runs the streaming parser over the whole file):

* Per statement the entries are one run: first `<Ntry>` to last `</Ntry>` before the statement's
  end tag. Each chunk of a run must be nothing but entries the pattern matches whole, separated
  by whitespace: the pattern spells every tag literally, in schema order, and takes text only as
  `[^<\x00-\x1f]*`, so whatever it matches is well-formed XML (with `]]>`, U+FFFE/U+FFFF and
  bytes that are not UTF-8 checked apart). Anything else - another element, a comment, two
  `TxDtls`, a multi-line text, a `Strd` remittance - declines the file.
* Text is read as the parser reads it: entity references resolved (strictly: an unknown or
  invalid reference declines), then stripped as `str.strip` does. Amounts go through the same
  `to_minor` rules (a vectorised path for the common "digits.2-digits"), dates and status codes
  likewise; a value the parser would refuse (bad amount, date, indicator, currency) declines, so
  the streaming parser raises the error with its usual location.
* The statement headers, balances, summaries and checks are read by `camt._Reader` itself, from
  the document with each run replaced by a placeholder entry that carries the run's totals. Only
  a real element is seen by that reader, so a run found inside a comment, CDATA or a foreign
  namespace leaves its placeholder unseen, and the file is declined (`_RunReader.finish`); so is
  any error in the skeleton, for the streaming parser to report with the file's own lines.

`camt.parse(..., fast=True)` forces the lane on small files (tests compare both lanes on the real
samples, generated statements and mutated files); by default it starts at `MIN_BYTES`, and uses
worker processes from `POOL_MIN_BYTES`.
"""

from __future__ import annotations

import contextlib
import operator
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest.files.amounts import AmountError, currency_exponent, to_minor

MIN_BYTES = 4 << 20  # below this the streaming parser is fast enough
POOL_MIN_BYTES = 32 << 20  # below this, worker start-up (~0.3 s each) costs more than it saves
CHUNK_BYTES = 4 << 20
RUN_ATTRIBUTE = "chFastRun"

# --- the entry pattern ---------------------------------------------------------------------------

_W = rb"[ \t\n\r]*+"  # XML whitespace between elements
_TEXT = rb"[^<\x00-\x1f]*+"  # character data on one line: no markup, no control characters
_names: list[str] = []  # the captured fields, in record order
_anonymous = iter(range(10_000))


def _field(name: str, text: bytes = _TEXT) -> bytes:
    _names.append(name)
    return b"(?P<" + name.encode() + b">" + text + b")"


def _ignored(tag: bytes) -> bytes:
    return b"<" + tag + b">" + _TEXT + b"</" + tag + b">" + _W


def _text_el(tag: bytes, name: str) -> bytes:
    return b"<" + tag + b">" + _field(name) + b"</" + tag + b">" + _W


def _opt(pattern: bytes) -> bytes:
    return b"(?:" + pattern + b")?"


def _simple_children() -> bytes:
    """Any number of elements holding only text, e.g. a postal address's lines."""
    group = b"s%d" % next(_anonymous)
    return (b"(?:<(?P<" + group + b">[A-Za-z]+)>" + _TEXT + b"</(?P=" + group + b")>" + _W
            + b")*")


def _party(tag: bytes, name: str) -> bytes:
    """`Dbtr` etc.: `Nm` (v2-v7) or `Pty/Nm` (v8), an optional flat `PstlAdr`."""
    def body(suffix: str) -> bytes:
        return (_text_el(b"Nm", name + suffix)
                + _opt(b"<PstlAdr>" + _W + _simple_children() + b"</PstlAdr>" + _W))
    return _opt(b"<" + tag + b">" + _W + b"(?:<Pty>" + _W + body("1") + b"</Pty>" + _W + b"|"
                + body("2") + b")</" + tag + b">" + _W)


def _ignored_party(tag: bytes) -> bytes:
    """A party the parser does not read (`InitgPty`): its name, under `Pty` or not, skipped."""
    def body() -> bytes:
        return _ignored(b"Nm") + _opt(b"<PstlAdr>" + _W + _simple_children() + b"</PstlAdr>"
                                      + _W)
    return _opt(b"<" + tag + b">" + _W + b"(?:<Pty>" + _W + body() + b"</Pty>" + _W + b"|"
                + body() + b")</" + tag + b">" + _W)


def _account(tag: bytes, name: str) -> bytes:
    """`DbtrAcct` etc.: `Id/IBAN` or `Id/Othr/Id`, optional `Ccy` and `Nm`."""
    return _opt(
        b"<" + tag + b">" + _W + b"<Id>" + _W
        + b"(?:" + _text_el(b"IBAN", name + "_iban")
        + b"|<Othr>" + _W + _text_el(b"Id", name + "_other")
        + _opt(b"<SchmeNm>" + _W + b"(?:" + _ignored(b"Cd") + b"|" + _ignored(b"Prtry") + b")"
               + b"</SchmeNm>" + _W)
        + _opt(_ignored(b"Issr")) + b"</Othr>" + _W + b")"
        + b"</Id>" + _W + _opt(_ignored(b"Ccy")) + _opt(_ignored(b"Nm"))
        + b"</" + tag + b">" + _W
    )


def _bank_code_pattern(prefix: str) -> bytes:
    """`BkTxCd`: empty, or `Domn` (Cd, Fmly/Cd, Fmly/SubFmlyCd) and/or `Prtry` (Cd, Issr)."""
    domain = (b"<Domn>" + _W + _text_el(b"Cd", prefix + "domain") + b"<Fmly>" + _W
              + _text_el(b"Cd", prefix + "family") + _text_el(b"SubFmlyCd", prefix + "sub")
              + b"</Fmly>" + _W + b"</Domn>" + _W)
    proprietary = (b"<Prtry>" + _W + _text_el(b"Cd", prefix + "proprietary")
                   + _opt(_ignored(b"Issr")) + b"</Prtry>" + _W)
    return (b"(?:<BkTxCd/>" + _W + b"|<BkTxCd>" + _W + _opt(domain) + _opt(proprietary)
            + b"</BkTxCd>" + _W + b")")


def _date(tag: bytes, name: str) -> bytes:
    return _opt(b"<" + tag + b">" + _W + b"(?:" + _text_el(b"Dt", name) + b"|"
                + _text_el(b"DtTm", name + "_time") + b")</" + tag + b">" + _W)


_REFS = (b"<Refs>" + _W + b"(?:" + b"|".join([
    _text_el(b"EndToEndId", "end_to_end"), _text_el(b"AcctSvcrRef", "detail_bank_ref"),
    _text_el(b"AcctOwnrTxId", "owner_ref"),
    b"(?:<(?P<r>MsgId|PmtInfId|InstrId|TxId|UETR|MndtId|ChqNb|ClrSysRef|AcctSvcrTxId|MktInfrstrctrTxId"
    b"|PrcgId)>" + _TEXT + b"</(?P=r)>" + _W + b")",
]) + b")*</Refs>" + _W)

_DETAILS = (
    b"<NtryDtls>" + _W + b"<TxDtls>" + _W + _opt(_REFS)
    + _opt(b'<Amt Ccy="[A-Z]{3}">' + _TEXT + b"</Amt>" + _W) + _opt(_ignored(b"CdtDbtInd"))
    + _opt(_bank_code_pattern("detail_"))
    + _opt(b"<RltdPties>" + _W + _ignored_party(b"InitgPty") + _party(b"Dbtr", "debtor")
           + _account(b"DbtrAcct", "debtor_acct") + _party(b"UltmtDbtr", "ult_debtor")
           + _party(b"Cdtr", "creditor") + _account(b"CdtrAcct", "creditor_acct")
           + _party(b"UltmtCdtr", "ult_creditor") + b"</RltdPties>" + _W)
    + _opt(b"<Purp>" + _W + _ignored(b"Cd") + b"</Purp>" + _W)
    + _opt(b"<RmtInf>" + _W + _opt(_text_el(b"Ustrd", "remittance")) + b"</RmtInf>" + _W)
    + _opt(_ignored(b"AddtlTxInf"))
    + b"</TxDtls>" + _W + b"</NtryDtls>" + _W
)

_ENTRY_PATTERN = (
    _W + b"<Ntry>" + _W + _opt(_text_el(b"NtryRef", "entry_ref"))
    + b'<Amt Ccy="' + _field("currency", rb"[A-Z]{3}") + b'">' + _field("amount") + b"</Amt>" + _W
    + _text_el(b"CdtDbtInd", "indicator") + _opt(_ignored(b"RvslInd"))
    + b"<Sts>" + _W + b"(?:<Cd>" + _field("status_cd") + b"</Cd>" + _W + b"|"
    + _field("status_text") + b")</Sts>" + _W
    + _date(b"BookgDt", "booking") + _date(b"ValDt", "value")
    + _opt(_text_el(b"AcctSvcrRef", "bank_ref")) + _opt(_bank_code_pattern(""))
    + _opt(_DETAILS) + _opt(_ignored(b"AddtlNtryInf")) + b"</Ntry>"
)
_ENTRY = re.compile(_ENTRY_PATTERN)
FIELDS = tuple(_names)
assert set(FIELDS) <= set(_ENTRY.groupindex), "every field is a group of the pattern"
_PICK = operator.itemgetter(*(_ENTRY.groupindex[name] - 1 for name in FIELDS))


def _record(match: re.Match) -> bytes:
    """A match as "\x1e" + "\x1f<field>" * n + "\n": the record mark makes stray text visible.
    (A function, not a template: Python 3.11 expands templates in Python, at twice the cost.)"""
    return b"\x1e\x1f" + b"\x1f".join(_PICK(match.groups(b""))) + b"\n"


# --- one chunk: entries -> typed columns -----------------------------------------------------------


class Decline(Exception):  # noqa: N818 - control flow, not an error: the streaming parser takes over
    """The fast lane cannot vouch for this input; the streaming parser reads the whole file."""


@dataclass(slots=True)
class RunTotals:
    """What `camt._Totals` counts, for a run of entries read by the fast lane."""

    count: int
    lines: int
    unsigned: int
    net: int
    credit_count: int
    credit_sum: int
    debit_count: int
    debit_sum: int
    booked: dict[str, int]
    unknown_statuses: set[str]
    first_currency: str | None

    def add_to(self, totals: Any) -> None:
        """Adds these counts and sums to `totals`: another run's, or a statement's `camt._Totals`
        (the same attributes, less first_currency)."""
        for name in ("count", "lines", "unsigned", "net", "credit_count", "credit_sum",
                     "debit_count", "debit_sum"):
            setattr(totals, name, getattr(totals, name) + getattr(self, name))
        for currency, amount in self.booked.items():
            totals.booked[currency] = totals.booked.get(currency, 0) + amount
        totals.unknown_statuses |= self.unknown_statuses


def read_chunk(chunk: bytes) -> tuple[Any, RunTotals] | None:
    """Lines (Arrow, StatementLine's columns less statement_index/line_number) and totals of a
    chunk holding only entries; None when the fast lane declines it."""
    try:
        return _read_chunk(chunk)
    except Decline:
        return None


def _read_chunk(chunk: bytes) -> tuple[Any, RunTotals]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    # Not allowed in XML character data, which the pattern's text would take. (One-byte finds
    # are memchr: a chunk without "]" or "\xef" costs nothing more.)
    if (chunk.find(b"]") >= 0 and b"]]>" in chunk) or (chunk.find(b"\xef") >= 0 and (
            b"\xef\xbf\xbe" in chunk or b"\xef\xbf\xbf" in chunk)):
        raise Decline
    records, matched = _ENTRY.subn(_record, chunk)
    # Nothing but matched entries: an unmatched element would leave its "<" behind (the fields
    # hold none), stray text would spoil a record's mark or its field count (checked below).
    if not matched or records.find(b"<") >= 0:
        raise Decline
    names = ("mark", *FIELDS)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(records),
            pacsv.ReadOptions(column_names=names, block_size=1 << 26, use_threads=False),
            pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                               newlines_in_values=False, ignore_empty_lines=True),
            pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), null_values=[],
                                 strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):  # not UTF-8, or a record out of shape
        raise Decline from None
    if table.num_rows != matched or not pc.all(pc.equal(table.column("mark"), "\x1e")).as_py():
        raise Decline
    return _typed(table)


_XML_REFERENCE = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));")
_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _is_xml_char(code: int) -> bool:
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def _unescape(text: str) -> str:
    """Resolves XML's predefined and character references exactly as the parser does, or
    declines (an unknown entity or a reference to a non-XML character is not well-formed)."""
    def resolve(match: re.Match) -> str:
        name, decimal, hexadecimal = match.groups()
        if name:
            return _PREDEFINED[name]
        code = int(decimal) if decimal else int(hexadecimal, 16)
        if not _is_xml_char(code):
            raise Decline
        return chr(code)

    resolved = _XML_REFERENCE.sub(resolve, text)
    if "&" in _XML_REFERENCE.sub("", text):
        raise Decline
    return resolved


def _python_text(raw: str) -> str | None:
    """`camt._text` of an element whose raw character data is `raw`."""
    return _unescape(raw).strip() or None


def _texts(column: Any) -> Any:
    """The column as `camt._text` reads it: references resolved, stripped, empty -> null. ASCII
    values without references are done by Arrow; the rest (rare) by Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.max(pc.binary_length(column)).as_py() in (0, None):  # an element no entry has
        return pa.nulls(len(column), pa.string())
    plain = pc.and_(pc.string_is_ascii(column), pc.invert(pc.match_substring(column, "&")))
    trimmed = pc.utf8_trim(column, " ")  # the only whitespace a plain one-line value can hold
    result = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    if pc.all(plain).as_py():
        return result
    values = result.to_pylist()
    raw = column.to_pylist()
    for index in pc.indices_nonzero(pc.invert(plain)).to_pylist():
        values[index] = _python_text(raw[index])
    return pa.array(values, pa.string())


_NO_CODE = "\x00"  # cannot occur in XML text
_STATUSES = {"BOOK": "booked", "PDNG": "pending", "FUTR": "pending", "INFO": "info"}
_NOT_PROVIDED = frozenset({"NOTPROVIDED", "NOT PROVIDED"})
_PLAIN_AMOUNT = r"^[0-9]{1,16}\.[0-9]{2}$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"


def _typed(table: Any) -> tuple[Any, RunTotals]:
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(name: str) -> Any:
        return table.column(name).combine_chunks()

    text = {name: _texts(column(name)) for name in FIELDS if name not in ("currency", "amount")}

    currency = column("currency")
    exponents = {}
    for code in pc.unique(currency).to_pylist():
        try:
            exponents[code] = currency_exponent(code)
        except AmountError:
            raise Decline from None
    indicator = text["indicator"]
    credit = pc.equal(indicator, "CRDT")
    if not pc.all(pc.is_in(indicator, pa.array(["CRDT", "DBIT"]))).as_py() \
            or indicator.null_count:
        raise Decline
    amount = _amounts(column("amount"), currency, exponents)
    signed = pc.if_else(credit, amount, pc.negate_checked(amount))

    # v8 Sts/Cd, v2-v7 Sts text; a missing or unknown code reads as "info" (camt._STATUSES)
    code = pc.fill_null(pc.coalesce(text["status_cd"], text["status_text"]), _NO_CODE)
    codes = pc.unique(code).to_pylist()
    names = [_STATUSES.get(c, "info") for c in codes]
    status = pc.take(pa.array(names, pa.string()), pc.index_in(code, pa.array(codes)))
    unknown = {"None" if c == _NO_CODE else c for c in codes if c not in _STATUSES}

    lines = pa.table({
        "booking_date": _dates(text["booking"], text["booking_time"]),
        "value_date": _dates(text["value"], text["value_time"]),
        "amount_minor": signed,
        "currency": currency,
        "status": status,
        "bank_reference": pc.coalesce(text["bank_ref"], text["detail_bank_ref"]),
        "customer_reference": text["owner_ref"],
        "end_to_end_id": _end_to_end(text["end_to_end"]),
        "remittance": text["remittance"],
        "counterparty_name": pc.if_else(
            credit,
            pc.coalesce(text["debtor1"], text["debtor2"], text["ult_debtor1"], text["ult_debtor2"]),
            pc.coalesce(text["creditor1"], text["creditor2"], text["ult_creditor1"],
                      text["ult_creditor2"])),
        "counterparty_account": pc.if_else(
            credit, pc.coalesce(text["debtor_acct_iban"], text["debtor_acct_other"]),
            pc.coalesce(text["creditor_acct_iban"], text["creditor_acct_other"])),
        "transaction_code": pc.coalesce(_bank_code_column(text, ""),
                                        _bank_code_column(text, "detail_")),
        "entry_reference": pc.coalesce(text["entry_ref"], text["bank_ref"]),
    })
    return lines, _totals(signed, credit, currency, status, unknown)


def _amounts(raw: Any, currency: Any, exponents: dict) -> Any:
    """Minor units (int64) of the amount texts, by `to_minor`'s rules; declines what it refuses."""
    import pyarrow as pa
    import pyarrow.compute as pc

    two = pc.is_in(currency, pa.array([c for c, e in exponents.items() if e == 2], pa.string()))
    plain = pc.and_(two, pc.match_substring_regex(raw, _PLAIN_AMOUNT))
    fast = pc.cast(pc.replace_substring(pc.if_else(plain, raw, "0.00"), ".", ""), pa.int64())
    if pc.all(plain).as_py():
        return fast
    values = fast.to_pylist()
    texts, currencies = raw.to_pylist(), currency.to_pylist()
    for index in pc.indices_nonzero(pc.invert(plain)).to_pylist():
        try:
            value = to_minor(_unescape(texts[index]), currencies[index])
        except AmountError:
            raise Decline from None
        if value < 0 or value >= 1 << 63:  # a signed text: the parser's sign rules, slow lane
            raise Decline
        values[index] = value
    return pa.array(values, pa.int64())


def _dates(dates: Any, times: Any) -> Any:
    """date32 of `Dt` (or the date part of `DtTm`); declines what `camt._date` would refuse."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if dates.null_count == len(dates) and times.null_count == len(times):
        return pa.nulls(len(dates), pa.date32())
    written = pc.coalesce(dates, times)
    ok = pc.match_substring_regex(written, _ISO_DATE + "($|T)")
    if not pc.all(pc.or_(ok, pc.is_null(written))).as_py() \
            or pc.any(pc.starts_with(written, "0000")).as_py():
        raise Decline
    try:
        return pc.cast(pc.utf8_slice_codeunits(written, 0, 10), pa.date32())
    except pa.ArrowInvalid:
        raise Decline from None


def _end_to_end(values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pc.all(pc.or_(pc.string_is_ascii(values), pc.is_null(values))).as_py():
        return pa.array([None if v is None or v.upper() in _NOT_PROVIDED else v
                         for v in values.to_pylist()], pa.string())
    dropped = pc.is_in(pc.ascii_upper(values), pa.array(sorted(_NOT_PROVIDED)))
    return pc.if_else(dropped, pa.scalar(None, pa.string()), values)


def _bank_code_column(text: dict, prefix: str) -> Any:
    """"Domn/Fmly/SubFmly" (the non-empty ones, as `camt._bank_code` joins them), else Prtry/Cd."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [text[prefix + name] for name in ("domain", "family", "sub")]
    complete = pc.and_(pc.and_(pc.is_valid(parts[0]), pc.is_valid(parts[1])),
                       pc.is_valid(parts[2]))
    # (Arrow's binary_join_element_wise mishandles all-null inputs: join only full rows there.)
    joined = pc.binary_join_element_wise(*(pc.fill_null(part, "") for part in parts), "/")
    joined = pc.if_else(complete, joined, pa.scalar(None, pa.string()))
    partial = pc.and_(pc.invert(complete), pc.or_(pc.or_(pc.is_valid(parts[0]),
                                                        pc.is_valid(parts[1])),
                                                  pc.is_valid(parts[2])))
    if pc.any(partial).as_py():
        values = joined.to_pylist()
        rows = list(zip(*(part.to_pylist() for part in parts), strict=True))
        for index in pc.indices_nonzero(partial).to_pylist():
            values[index] = "/".join(p for p in rows[index] if p)
        joined = pa.array(values, pa.string())
    return pc.coalesce(joined, text[prefix + "proprietary"])


def _exact_sum(values: Any) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    total = pc.sum(values.cast(pa.decimal128(38, 0))).as_py()
    return int(total) if total is not None else 0


def _totals(signed: Any, credit: Any, currency: Any, status: Any, unknown: set[str]) -> RunTotals:
    import pyarrow.compute as pc

    credits = pc.filter(signed, credit)
    debits = pc.filter(signed, pc.invert(credit))
    booked_mask = pc.equal(status, "booked")
    booked = {}
    for code in pc.unique(pc.filter(currency, booked_mask)).to_pylist():
        booked[code] = _exact_sum(pc.filter(signed, pc.and_(booked_mask, pc.equal(currency, code))))
    credit_sum, debit_sum = _exact_sum(credits), -_exact_sum(debits)
    return RunTotals(
        count=len(signed), lines=len(signed), unsigned=credit_sum + debit_sum,
        net=credit_sum - debit_sum, credit_count=len(credits), credit_sum=credit_sum,
        debit_count=len(debits), debit_sum=debit_sum, booked=booked, unknown_statuses=unknown,
        first_currency=currency[0].as_py() if len(currency) else None,
    )


# --- the document ------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    start: int  # byte offsets of the first <Ntry> and just past the last </Ntry>
    end: int
    lines: Any = None  # Arrow
    totals: RunTotals | None = None


_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)""")


def _eligible(data: bytes) -> bool:
    """UTF-8 (declared or by default): the encoding the pattern and Arrow read."""
    declared = _ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        return False
    return not data.startswith((b"\xff\xfe", b"\xfe\xff"))


def find_runs(data: bytes, record_name: str) -> list[Run] | None:
    """Each statement's entries as one byte range; None when they are not laid out that way."""
    end_tag = f"</{record_name}>".encode()
    runs, position = [], 0
    while (start := data.find(b"<Ntry>", position)) >= 0:
        close = data.find(end_tag, start)
        if close < 0:
            return None
        end = data.rfind(b"</Ntry>", start, close)
        if end < 0:
            return None
        runs.append(Run(start, end + len(b"</Ntry>")))
        position = close
    return runs


def _chunks(data: bytes, run: Run) -> Iterator[tuple[int, int]]:
    start = run.start
    while start < run.end:
        cut = data.find(b"</Ntry>", min(start + CHUNK_BYTES, run.end - 7))
        end = run.end if cut < 0 or cut + 7 >= run.end else cut + 7
        yield start, end
        start = end


def read_runs(data: bytes, runs: list[Run], pool: _Workers | None = None) -> bool:
    """Fills each run's lines and totals (in `pool`'s processes, else in this one); False when
    any chunk declines."""
    import pyarrow as pa

    pieces = [(index, start, end) for index, run in enumerate(runs)
              for start, end in _chunks(data, run)]
    results = pool.map(data, pieces) if pool else (
        read_chunk(data[start:end]) for _index, start, end in pieces)
    per_run: dict[int, list] = {index: [] for index in range(len(runs))}
    for (index, _start, _end), result in zip(pieces, results, strict=True):
        if result is None:
            return False
        per_run[index].append(result)
    for index, run in enumerate(runs):
        tables = [table for table, _totals in per_run[index]]
        run.lines = pa.concat_tables(tables)
        run.totals = per_run[index][0][1]
        for _table, totals in per_run[index][1:]:
            totals.add_to(run.totals)
    return True


class _Workers:
    """Child processes that read chunks: `python -m` this module, so no fork of a process that
    runs threads and no re-import of the caller's main module. Chunks are dealt round-robin and
    answered in order; a worker holds one chunk at a time, so memory holds a few chunks, not a
    copy of the file."""

    def __init__(self, count: int):
        self.procs = [subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE) for _ in range(count)]

    def map(self, data: bytes, pieces: list) -> Iterator:
        procs = self.procs[:len(pieces)]
        for position, (_index, start, end) in enumerate(pieces[:len(procs)]):
            _send(procs[position].stdin, data[start:end])
        for position in range(len(pieces)):
            proc = procs[position % len(procs)]
            result = _receive(proc.stdout)
            following = position + len(procs)
            if result is not None and following < len(pieces):
                _index, start, end = pieces[following]
                _send(proc.stdin, data[start:end])
            yield result
            if result is None:
                return

    def close(self) -> None:
        """Stops every worker, idle or not (a decline leaves chunks nobody wants)."""
        for proc in self.procs:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):  # unflushed bytes to a killed worker
                    if pipe is not None:
                        pipe.close()


def _send(pipe: Any, payload: bytes) -> None:
    pipe.write(len(payload).to_bytes(8, "little"))
    pipe.write(payload)
    pipe.flush()


def _receive(pipe: Any) -> Any:
    header = pipe.read(8)
    if len(header) < 8:
        raise RuntimeError("camt fast-lane worker died")
    return pickle.loads(pipe.read(int.from_bytes(header, "little")))


class _NoPandas:
    """pyarrow imports pandas (~1 s) at its first array built from a Python list, only to ask
    whether the list is a pandas object; a worker has no pandas objects."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is not loaded in camt fast-lane workers")


def _worker() -> None:
    """A worker's loop: a length-prefixed chunk in, its pickled `read_chunk` answer out. Imports
    first, while the parent is still finding the runs."""
    sys.meta_path.insert(0, _NoPandas())
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while len(header := source.read(8)) == 8:
        chunk = source.read(int.from_bytes(header, "little"))
        _send(sink, pickle.dumps(read_chunk(chunk), protocol=pickle.HIGHEST_PROTOCOL))


def skeleton(data: bytes, runs: list[Run]) -> bytes:
    """The document with each run replaced by a placeholder entry, `<Ntry chFastRun="i"/>`."""
    parts, position = [], 0
    for index, run in enumerate(runs):
        parts.append(data[position:run.start])
        parts.append(b'<Ntry %s="%d"/>' % (RUN_ATTRIBUTE.encode(), index))
        position = run.end
    parts.append(data[position:])
    return b"".join(parts)


def prepare(data: bytes, record_name: str, workers: int | None = None) -> list[Run] | None:
    """The runs of a document the fast lane can read, read; None when it declines."""
    if not _eligible(data):
        return None
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if len(data) >= POOL_MIN_BYTES else 0
    pool = _Workers(workers) if workers > 1 else None  # first: they start while runs are found
    try:
        runs = find_runs(data, record_name)
        if not runs or not read_runs(data, runs, pool):
            return None
        return runs
    finally:
        if pool:
            pool.close()


if __name__ == "__main__":  # a worker: run the module's own copy, so its pickles name it
    from ingest.files.formats.camt_fast import _worker as worker

    worker()
