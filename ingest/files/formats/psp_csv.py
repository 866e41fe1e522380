"""Clearhouse PSP settlement CSV (shared/spec/psp-settlement-csv.md): parse, sniff and render.

Decisions, where the spec leaves room:

- Header: required, and it must hold exactly the spec's ten columns, each once. Their order may
  differ (columns are read by name); render always writes the spec's order. A UTF-8 BOM is skipped.
- File name: `<channel>_<YYYY-MM-DD>.csv` gives the channel (and the settlement day, see
  `file_facts`). Any other name is refused (`bad_file_name`): the channel is what the rows are
  reconciled against, so a file that does not say it is unusable. Without a name (bytes from a
  test or a bench) the channel is None.
- Amounts: integer minor units, optional leading "-", nothing else ("12.50", "+5", " 5", "1e3"
  are refused). Every row must have net_minor == gross_minor - fee_minor. Signs: payments
  gross >= 0; refunds and chargebacks gross < 0; fee adjustments and payouts either sign.
- transaction_at: ISO 8601 in UTC with an explicit `Z` or `+00:00` (`YYYY-MM-DDTHH:MM:SS[.ffffff]Z`;
  as Arrow reads ISO 8601, a space for the T and omitted seconds pass too). Naive or other-offset
  times are refused: the spec binds UTC, and another offset means a misconfigured producer.
  Required on every row except payout rows.
- Required per row type: on payments, refunds and chargebacks at least one of channel_reference
  and merchant_reference (the platform's id): reconciliation.md's "a PSP report line carries at
  least one of them", and reconciliation matches on either; both blank is `missing_reference`.
  payout_id and payout_date on payout rows, and no channel_reference there (the spec: "blank on
  payout rows"; `unexpected_field`).
- Payout rows: gross_minor must equal the sum of net_minor of the other rows carrying that
  payout_id (same currency). A difference is a `payout_total_mismatch` *warning*, not a
  quarantine: every row is still well-formed, the payout row is what reached the bank, and
  reconciliation needs both loaded to show the break. Rows whose payout_id has no payout row in
  the file get a `payout_row_missing` warning (their total cannot be checked). Two payout rows
  for one payout_id are refused (`duplicate_payout`).
- Payout dates: payout_date is "the value date of that payout", so a row carrying a payout_id
  should carry its payout row's payout_date. A row dated otherwise is a `payout_date_mismatch`
  *warning* (one per payout and differing date, naming both dates, the first such line and how
  many rows), for the reason a total mismatch is one; each row keeps the date the file gives.
- Anything else that breaks the format is a ParseError naming the first bad line.

Speed: pyarrow.csv reads every column as text, the checks are vectorised Arrow kernels, and the
result is `ParsedFile.psp_table` (PspLine's fields; amounts int64, payout_date date32,
transaction_at timestamp[us] naive UTC). A file with an amount beyond int64 (18-decimal chain
assets; up to 38 digits are accepted) comes back as `psp_lines` with exact Python ints instead.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ingest.files.amounts import AmountError, currency_exponent
from ingest.files.csv_records import csv_records
from ingest.files.records import (
    ParsedFile,
    ParseError,
    PspLine,
    Warning_,
    read_source,
    refuse_nul,
)

FORMAT = "psp_csv"

COLUMNS = ("record_type", "channel_reference", "merchant_reference", "transaction_at", "currency",
           "gross_minor", "fee_minor", "net_minor", "payout_id", "payout_date")
RECORD_TYPES = ("payment", "refund", "chargeback", "fee_adjustment", "payout")
FILE_NAME = re.compile(
    r"(?P<channel>[A-Za-z0-9][A-Za-z0-9_.-]*?)_(?P<day>[0-9]{4}-[0-9]{2}-[0-9]{2})\.csv")

# PspLine's fields as Arrow columns: the shape of `psp_table`.
TABLE_SCHEMA = pa.schema([
    ("line_number", pa.int64()), ("record_type", pa.string()), ("channel", pa.string()),
    ("channel_reference", pa.string()), ("merchant_reference", pa.string()),
    ("transaction_at", pa.timestamp("us")), ("currency", pa.string()),
    ("gross_minor", pa.int64()), ("fee_minor", pa.int64()), ("net_minor", pa.int64()),
    ("payout_id", pa.string()), ("payout_date", pa.date32()), ("status", pa.string()),
    ("description", pa.string()),
])

_BOM = b"\xef\xbb\xbf"
_INTEGER = r"^-?[0-9]{1,38}$"
_AMOUNTS = ("gross_minor", "fee_minor", "net_minor")
_NEED_REFERENCE = ("payment", "refund", "chargeback")


# --- file name and sniffing ----------------------------------------------------------------------

def file_facts(name: str | None) -> tuple[str | None, dt.date | None]:
    """(channel, settlement day) from `<channel>_<YYYY-MM-DD>.csv`; (None, None) without a name."""
    if name is None:
        return None, None
    match = FILE_NAME.fullmatch(Path(name).name)
    day = _iso_date(match["day"]) if match else None
    if match is None or day is None:
        raise ParseError("bad_file_name",
                         f"{name!r} is not named <channel>_<YYYY-MM-DD>.csv, so its channel and "
                         "settlement day are unknown")
    return match["channel"], day


def _iso_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def sniff(head: bytes, name: str) -> bool:
    first = head.removeprefix(_BOM).split(b"\n", 1)[0].rstrip(b"\r")
    try:
        fields = next(csv.reader([first.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return False
    return sorted(fields) == sorted(COLUMNS)


# --- parse ---------------------------------------------------------------------------------------

def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    if name is None and isinstance(source, Path):
        name = source.name
    channel, _day = file_facts(name)
    data = read_source(source).removeprefix(_BOM)
    refuse_nul(data)
    header_end = _header_end(data)
    columns = _check_header(data[:header_end])
    body = _Body(data, header_end)
    text = _read_text_columns(body, columns)
    checks = _Checks(text, _line_numbers(body, text.num_rows))
    table, big = _validate(checks, channel)
    warnings = _payout_warnings(table)
    if big:
        return ParsedFile(format=FORMAT, kind="psp_bill", psp_lines=_to_lines(table),
                          warnings=warnings)
    return ParsedFile(format=FORMAT, kind="psp_bill", psp_table=table, warnings=warnings)


def _header_end(data: bytes) -> int:
    end = data.find(b"\n")
    return len(data) if end < 0 else end + 1


class _Body:
    """The records after the header, as a window on the file's bytes (a 100 MB file is not
    copied). Blank lines at the very end, which editors and concatenating tools leave, are cut."""

    def __init__(self, data: bytes, start: int):
        end = len(data)
        if data.endswith((b"\n\n", b"\n\r\n")):
            end = len(data.rstrip(b"\r\n")) + 1  # keep one line end
        self.data, self.start, self.end = data, start, max(start, end)

    def view(self) -> memoryview:
        return memoryview(self.data)[self.start:self.end]

    def has_quotes(self) -> bool:
        return self.data.find(b'"', self.start, self.end) >= 0

    def physical_lines(self, rows: int) -> int:
        """How many lines the body has. Without quotes and carriage returns every line is one
        row (Arrow refuses a line with the wrong width), so the 100 MB count is skipped."""
        if not self.has_quotes() and self.data.find(b"\r", self.start, self.end) < 0:
            return rows
        breaks = self.data.count(b"\n", self.start, self.end)
        ends_open = self.end > self.start and self.data[self.end - 1:self.end] != b"\n"
        return breaks + ends_open

    def text(self) -> str:
        """Decoded, for the slow paths only; UnicodeDecodeError positions are body-relative."""
        return bytes(self.view()).decode("utf-8")

    def line_of(self, offset: int) -> int:
        return self.data.count(b"\n", self.start, self.start + offset) + 2


def _check_header(line: bytes) -> list[str]:
    try:
        fields = next(csv.reader([line.decode("utf-8").rstrip("\r\n")]), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ParseError("bad_header", f"the header row cannot be read: {exc}", "line 1") from None
    missing = [c for c in COLUMNS if c not in fields]
    if missing:
        raise ParseError("missing_column", f"the header lacks {', '.join(missing)}", "line 1")
    unknown = [f for f in fields if f not in COLUMNS]
    if unknown:
        raise ParseError("unexpected_column", f"the header has unknown columns {unknown}",
                         "line 1")
    if len(fields) != len(COLUMNS):
        raise ParseError("duplicate_column", "the header repeats a column", "line 1")
    return fields


def _read_text_columns(body: _Body, columns: list[str]) -> pa.Table:
    """Every column as text, empty -> null, so that each check can name its first bad line."""
    if body.start >= body.end:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    try:
        return pacsv.read_csv(
            pa.py_buffer(body.view()),
            read_options=pacsv.ReadOptions(column_names=columns),
            # Quoted values may hold line breaks (RFC 4180); without quotes there are none, and
            # Arrow splits the work faster when told so.
            parse_options=pacsv.ParseOptions(newlines_in_values=body.has_quotes(),
                                              ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=True,
                null_values=[""]),  # only empty is missing: "NA" or "null" may be a reference
        )
    except pa.ArrowException as exc:
        raise _locate_csv_problem(body, len(columns), str(exc)) from None


def _locate_csv_problem(body: _Body, width: int, arrow_message: str) -> ParseError:
    """Arrow says the CSV is broken but not where: find the first bad line the slow way."""
    try:
        text = body.text()
    except UnicodeDecodeError as exc:
        return ParseError("encoding", "the file is not valid UTF-8",
                          f"line {body.line_of(exc.start)}")
    try:
        for line, row in csv_records(text, first_line=2):  # after the header
            if len(row) != width:
                return ParseError("column_count", f"expected {width} fields, found {len(row)}",
                                  f"line {line}")
    except ParseError as exc:
        return exc
    return ParseError("csv_syntax", arrow_message)


def _line_numbers(body: _Body, rows: int) -> pa.Array:
    """Physical line of each row: row + 2, unless a quoted value spans lines. A body with
    quotes is read once more by the strict reader, which refuses what RFC 4180 does not allow
    (Arrow reads `"c1"x` as c1x); files quote only where a value needs it, so few pay for it."""
    if not body.has_quotes() and body.physical_lines(rows) == rows:
        numbers = np.arange(2, rows + 2, dtype=np.int64)
        return pa.Array.from_buffers(pa.int64(), rows, [None, pa.py_buffer(numbers)])
    starts = [line for line, _ in csv_records(body.text(), first_line=2)]
    if len(starts) != rows:
        raise ParseError("csv_syntax", f"{rows} rows read but {len(starts)} records found")
    return pa.array(starts, pa.int64())


class _Checks:
    """The text columns plus what turns a failing vectorised check into a located ParseError."""

    def __init__(self, text: pa.Table, line_numbers: pa.Array):
        self.text = text
        self.lines = line_numbers

    def col(self, name: str) -> pa.ChunkedArray:
        return self.text.column(name)

    def value(self, name: str, index: int) -> str | None:
        return self.col(name)[index].as_py()

    def fail_first(self, bad, reason: str, explain: Callable[[int], str]) -> None:
        """ParseError at the first row where `bad` is true (null counts as fine)."""
        bad = pc.fill_null(bad, False)
        if not pc.any(bad).as_py():
            return
        index = pc.index(bad, True).as_py()
        raise ParseError(reason, explain(index), f"line {self.lines[index].as_py()}")

    def require(self, name: str, where=None) -> None:
        missing = pc.is_null(self.col(name))
        if where is not None:
            missing = pc.and_(where, missing)
        self.fail_first(missing, "missing_field", lambda i: self._explain_missing(name, i))

    def _explain_missing(self, name: str, index: int) -> str:
        if all(self.value(column, index) is None for column in self.text.column_names):
            return "a blank line between records"
        return f"a {self.value('record_type', index) or 'row'} needs {name}"


def _validate(c: _Checks, channel: str | None) -> tuple[pa.Table, bool]:
    for name in ("record_type", "currency", *_AMOUNTS):
        c.require(name)
    record_type = c.col("record_type")
    c.fail_first(pc.invert(pc.is_in(record_type, _value_set(RECORD_TYPES))), "bad_record_type",
                 lambda i: f"record_type {c.value('record_type', i)!r} is not one of "
                           f"{', '.join(RECORD_TYPES)}")
    _check_currencies(c)
    amounts, big = _amounts(c)
    _check_signs(c, amounts["gross_minor"])
    is_payout = pc.equal(record_type, "payout")
    _require_a_reference(c, pc.is_in(record_type, _value_set(_NEED_REFERENCE)))
    c.require("payout_id", is_payout)
    c.require("payout_date", is_payout)
    c.require("transaction_at", pc.invert(is_payout))
    # psp-settlement-csv.md: channel_reference is "blank on payout rows"
    c.fail_first(pc.and_(is_payout, pc.is_valid(c.col("channel_reference"))),
                 "unexpected_field",
                 lambda i: f"a payout row carries channel_reference "
                           f"{c.value('channel_reference', i)!r}; it is blank on payout rows")
    rows = c.text.num_rows
    table = pa.table({
        "line_number": c.lines,
        "record_type": record_type,
        "channel": pc.fill_null(pa.nulls(rows, pa.string()), channel) if channel
        else pa.nulls(rows, pa.string()),
        "channel_reference": c.col("channel_reference"),
        "merchant_reference": c.col("merchant_reference"),
        "transaction_at": _timestamps(c),
        "currency": c.col("currency"),
        **amounts,
        "payout_id": c.col("payout_id"),
        "payout_date": _payout_dates(c),
        "status": pa.nulls(rows, pa.string()),
        "description": pa.nulls(rows, pa.string()),
    })
    return (table if big else table.cast(TABLE_SCHEMA)), big


def _require_a_reference(c: _Checks, where) -> None:
    """channel_reference or merchant_reference, at least one (reconciliation.md, Keys)."""
    neither = pc.and_(pc.is_null(c.col("channel_reference")),
                      pc.is_null(c.col("merchant_reference")))
    c.fail_first(pc.and_(where, neither), "missing_reference",
                 lambda i: f"a {c.value('record_type', i)} needs channel_reference or "
                           "merchant_reference (the platform's id) to be reconciled; both are "
                           "blank")


@cache
def _value_set(values: tuple[str, ...]) -> pa.Array:
    return pa.array(values, pa.string())


def _check_currencies(c: _Checks) -> None:
    currency = c.col("currency")
    for code in pc.unique(currency).to_pylist():
        try:
            currency_exponent(code)
        except AmountError:
            c.fail_first(pc.equal(currency, code), "unknown_currency",
                         partial(_unknown_currency, code))


def _unknown_currency(code: str, _row: int) -> str:
    return f"currency {code!r} is not a known code"


def _amounts(c: _Checks) -> tuple[dict[str, pa.ChunkedArray], bool]:
    """The amount columns as int64, or as exact decimals when one does not fit int64.

    Arrow's int64 parse takes digits with an optional "-", and also hex ("0x1F"), which the
    decimal test below refuses. The net check runs with overflow checking; an overflow moves
    the file to the decimal path.
    """
    try:
        ints = {n: pc.cast(c.col(n), pa.int64()) for n in _AMOUNTS}
        for n in _AMOUNTS:
            c.fail_first(pc.invert(pc.ascii_is_decimal(pc.ascii_ltrim(c.col(n), "-"))),
                         "bad_amount", partial(_bad_amount, c, n))
        _check_net(c, ints, pc.subtract_checked(ints["gross_minor"], ints["fee_minor"]))
        return ints, False
    except pa.ArrowInvalid:
        pass  # a bad amount, or one beyond int64: the exact path below tells which
    for n in _AMOUNTS:
        c.fail_first(pc.invert(pc.match_substring_regex(c.col(n), _INTEGER)), "bad_amount",
                     partial(_bad_amount, c, n))
    exact = {n: pc.cast(c.col(n), pa.decimal256(40, 0)) for n in _AMOUNTS}
    _check_net(c, exact, pc.subtract(exact["gross_minor"], exact["fee_minor"]))
    return exact, True


def _bad_amount(c: _Checks, name: str, index: int) -> str:
    return (f"{name} {c.value(name, index)!r} is not an integer count of minor units (digits "
            "with an optional leading '-', at most 38)")


def _check_net(c: _Checks, amounts: dict, gross_less_fee) -> None:
    c.fail_first(pc.not_equal(amounts["net_minor"], gross_less_fee), "net_mismatch",
                 lambda i: f"net_minor {c.value('net_minor', i)} is not gross_minor "
                           f"{c.value('gross_minor', i)} - fee_minor {c.value('fee_minor', i)}")


def _check_signs(c: _Checks, gross) -> None:
    record_type = c.col("record_type")
    negative = pc.less(gross, pc.cast(_zero(), gross.type))
    reversal = pc.is_in(record_type, _value_set(("refund", "chargeback")))
    wrong_sign = pc.or_(pc.and_(reversal, pc.invert(negative)),
                        pc.and_(pc.equal(record_type, "payment"), negative))
    c.fail_first(wrong_sign, "bad_sign",
                 lambda i: f"a {c.value('record_type', i)} with gross_minor "
                           f"{c.value('gross_minor', i)}: payments are >= 0, refunds and "
                           "chargebacks < 0")


@cache
def _zero() -> pa.Scalar:
    return pa.scalar(0, pa.int64())


def _timestamps(c: _Checks) -> pa.ChunkedArray:
    """ISO 8601 as Arrow reads it (T or space, seconds and fraction optional), zone Z/+00:00."""
    text = c.col("transaction_at")
    c.fail_first(pc.invert(pc.or_(pc.ends_with(text, "Z"), pc.ends_with(text, "+00:00"))),
                 "bad_timestamp", lambda i: _bad_timestamp(c, i))
    try:
        aware = pc.cast(text, pa.timestamp("us", "UTC"))
    except pa.ArrowInvalid:
        raise _first_unparsable(c, "transaction_at", pa.timestamp("us", "UTC"),
                                "bad_timestamp", lambda i: _bad_timestamp(c, i)) from None
    return pc.cast(aware, pa.timestamp("us"))


def _bad_timestamp(c: _Checks, index: int) -> str:
    return (f"transaction_at {c.value('transaction_at', index)!r} is not an ISO 8601 UTC time "
            "(YYYY-MM-DDTHH:MM:SS[.ffffff]Z)")


def _payout_dates(c: _Checks) -> pa.ChunkedArray:
    try:
        return pc.cast(c.col("payout_date"), pa.date32())  # Arrow takes YYYY-MM-DD only
    except pa.ArrowInvalid:
        raise _first_unparsable(c, "payout_date", pa.date32(), "bad_date",
                                lambda i: f"payout_date {c.value('payout_date', i)!r} is not a "
                                          "YYYY-MM-DD date") from None


def _first_unparsable(c: _Checks, name: str, target: pa.DataType, reason: str,
                      explain: Callable[[int], str]) -> ParseError:
    """Arrow refused the column but not where: find the first refused chunk (a CSV block, some
    thousand rows), then the value in it."""
    offset = 0
    for chunk in c.col(name).chunks:
        try:
            pc.cast(chunk, target)
        except pa.ArrowInvalid:
            for index, value in enumerate(chunk.to_pylist(), start=offset):
                if value is None:
                    continue
                try:
                    pc.cast(pa.array([value], pa.string()), target)
                except pa.ArrowInvalid:
                    return ParseError(reason, explain(index), f"line {c.lines[index].as_py()}")
        offset += len(chunk)
    return ParseError(reason, f"{name} holds a value that cannot be read")


# --- payout totals -------------------------------------------------------------------------------

def _payout_warnings(table: pa.Table) -> list[Warning_]:
    slim = table.select(["record_type", "payout_id", "currency", "net_minor", "gross_minor",
                         "line_number", "payout_date"])
    is_payout = pc.equal(slim.column("record_type"), "payout")
    payouts = slim.filter(is_payout).to_pylist()
    _check_unique_payouts(payouts)
    members = slim.filter(pc.and_(pc.invert(is_payout), pc.is_valid(slim.column("payout_id"))))
    sums = pa.table({"payout_id": members.column("payout_id"),
                     "currency": members.column("currency"),
                     "net": _summable(members.column("net_minor"))},
                    ).group_by(["payout_id", "currency"]).aggregate([("net", "sum")])
    batch_totals = {(r["payout_id"], r["currency"]): int(r["net_sum"]) for r in sums.to_pylist()}
    warnings = []
    for row in payouts:
        stated = int(row["gross_minor"])
        computed = batch_totals.pop((row["payout_id"], row["currency"]), 0)
        if stated != computed:
            warnings.append(Warning_(
                "payout_total_mismatch",
                f"payout {row['payout_id']} (line {row['line_number']}) states gross_minor "
                f"{stated} {row['currency']} but its rows' net_minor sum to {computed} "
                f"(difference {stated - computed})"))
    for payout_id, currency in sorted(batch_totals):
        warnings.append(Warning_(
            "payout_row_missing",
            f"rows carry payout_id {payout_id} ({currency}) but the file has no payout row for "
            "it in that currency, so their total cannot be checked"))
    return warnings + _payout_date_warnings(payouts, members)


def _payout_date_warnings(payouts: list[dict], members: pa.Table) -> list[Warning_]:
    """A row dated otherwise than its payout row: one warning per payout and differing date."""
    value_dates = {r["payout_id"]: r["payout_date"] for r in payouts}
    if not value_dates:
        return []
    dated = members.filter(pc.is_valid(members.column("payout_date")))
    keys = pa.table({"payout_id": list(value_dates), "value_date": list(value_dates.values())},
                    schema=pa.schema([("payout_id", pa.string()),
                                      ("value_date", dated.schema.field("payout_date").type)]))
    joined = dated.select(["payout_id", "payout_date", "line_number"]).join(keys, "payout_id")
    differing = joined.filter(pc.not_equal(joined.column("payout_date"),
                                           joined.column("value_date")))
    groups = differing.group_by(["payout_id", "payout_date", "value_date"]).aggregate(
        [("line_number", "min"), ("line_number", "count")])
    warnings = []
    for row in sorted(groups.to_pylist(), key=lambda r: r["line_number_min"]):
        warnings.append(Warning_(
            "payout_date_mismatch",
            f"payout {row['payout_id']} is dated {row['value_date'].isoformat()} on its payout "
            f"row, but rows of it carry payout_date {row['payout_date'].isoformat()} "
            f"({row['line_number_count']} rows, first on line {row['line_number_min']})"))
    return warnings


def _summable(net: pa.ChunkedArray) -> pa.ChunkedArray:
    """int64 when no sum of these values can wrap (max |value| x rows < 2^63), else decimals."""
    if net.type == pa.int64() and len(net):
        extremes = pc.min_max(net)
        largest = max(abs(extremes["min"].as_py()), abs(extremes["max"].as_py()))
        if largest * len(net) < 2**63:
            return net
    return pc.cast(net, pa.decimal256(76, 0))


def _check_unique_payouts(payouts: list[dict]) -> None:
    seen: set[str] = set()
    for row in payouts:
        if row["payout_id"] in seen:
            raise ParseError("duplicate_payout", f"a second payout row for {row['payout_id']}",
                             f"line {row['line_number']}")
        seen.add(row["payout_id"])


def _to_lines(table: pa.Table) -> list[PspLine]:
    lines = []
    for row in table.to_pylist():
        for name in _AMOUNTS:
            row[name] = int(row[name])
        lines.append(PspLine(**row))
    return lines


# --- render --------------------------------------------------------------------------------------

def render(parsed: ParsedFile) -> bytes:
    """The spec's CSV: spec column order, "\\n" line ends, quotes only where a value needs them.

    Writes `psp_table` when there is one, else `psp_lines`; times as YYYY-MM-DDTHH:MM:SS.ffffffZ.
    """
    table = parsed.psp_table if parsed.psp_table is not None else _lines_to_table(parsed.psp_lines)
    bad = pc.invert(pc.is_in(table.column("record_type"), _value_set(RECORD_TYPES)))
    if pc.any(pc.fill_null(bad, True)).as_py():
        raise ValueError(f"the PSP CSV only has record types {', '.join(RECORD_TYPES)}")
    frame = pl.DataFrame(table.select(list(COLUMNS)))
    return frame.write_csv(None, datetime_format="%Y-%m-%dT%H:%M:%S%.6fZ",
                           date_format="%Y-%m-%d", line_terminator="\n").encode("utf-8")


def _lines_to_table(lines: list[PspLine]) -> pa.Table:
    columns = {}
    for name in COLUMNS:
        values = [getattr(line, name) for line in lines]
        if name == "transaction_at":
            values = [_naive_utc(v) for v in values]
        columns[name] = _amount_array(values) if name in _AMOUNTS else pa.array(
            values, TABLE_SCHEMA.field(name).type)
    return pa.table(columns)


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _amount_array(values: list[int]) -> pa.Array:
    """int64 when every amount fits, else exact decimal text (18-decimal assets)."""
    try:
        return pa.array(values, pa.int64())
    except (OverflowError, pa.ArrowInvalid):
        return pa.array([str(v) for v in values], pa.string())
