"""Fraud reports CSV: late fraud labels (chargebacks, issuer and customer fraud reports) ->
`FraudReport` records, loaded into `raw.fraud_reports`. Also in docs/fraud-reports.md.

Landing folder `HOME/landing/fraud_reports/`. The file name is free and nothing is read from it
(the demo's writer, `write_fraud_reports`, names files `fraud-reports-YYYY-MM-DD.csv`).

Format: CSV (RFC 4180: comma-separated, a value holding a comma, quote or line break in double
quotes), UTF-8 (a BOM is skipped), `\\n` or `\\r\\n` line ends, header row required:

    report_id,payment_id,merchant_id,kind,source,reported_at,amount_minor,currency
    fr_0001,pay_01JD...,mer_01JC...,stolen_card,chargeback,2026-12-01T10:00:00Z,12550,USD
    fr_0002,pay_01JE...,mer_01JC...,account_takeover,issuer_report,2026-12-01T11:30:00+01:00,,

The header names exactly these eight columns, each once; their order is free (rows are read by
name; `render` writes the order above). Per row:

- report_id: the report's own id, required, at most once per file;
- payment_id: the Clearhouse payment id, required;
- merchant_id: required;
- kind: card_testing | account_takeover | mule_cash_out | friendly_fraud | stolen_card | other
  (lowercase, exactly);
- source: chargeback | issuer_report | customer_claim | internal_review;
- reported_at: ISO 8601 date and time with an explicit offset:
  `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` then `Z` or `+HH:MM` / `-HH:MM` (a space for the `T` is
  accepted). Stored as naive UTC. A time without offset is refused: the producer's clock is not
  known, and a label's time decides which training window it belongs to;
- amount_minor: the disputed amount in integer minor units of `currency`: ASCII digits only
  (0 upwards, at most 38 digits; no sign, decimal point or exponent), or empty when not known;
- currency: a code of the money core's currency table (`warehouse.money.exponent`: ISO 4217 plus
  chain assets); required when amount_minor is given, checked whenever present.

Cells are trimmed of surrounding spaces; blank lines are skipped. A header-only file is valid: it
loads with 0 rows.

Quarantine: one bad row refuses the whole file (the loader writes a file in one transaction, so
nothing of it loads), with a machine-readable reason and `line N` (the physical line where the
row starts; the header is line 1). Reasons: encoding, empty_file, bad_header, missing_column,
unexpected_column, duplicate_column, csv_syntax, row_length, missing_field, unknown_kind,
unknown_source, bad_timestamp, bad_amount, missing_currency, unknown_currency, duplicate_report.

Re-sent reports (the dedupe rule). The same bytes again are skipped by the loader (SHA-256). A
different file that repeats a report_id carries an update of that report - a chargeback moving
on, a claim reclassified, an amount corrected - so the row of the file loaded later supersedes the
earlier row: the loader sets `superseded_by` on it and records the pair in
`raw.file_supersessions` (key `fraud_report|<report_id>`), and `stg_fraud_reports` keeps one
current row per report_id. "Later" is load order, not reported_at (an update usually keeps the
original report time); replaying an old file after a newer one makes the old version current
again, as it should for an operator's deliberate replay. A report_id twice in one file is
ambiguous and refuses the file (`duplicate_report`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ingest.files.amounts import AmountError, currency_exponent
from ingest.files.csv_records import csv_records
from ingest.files.records import FraudReport, ParsedFile, ParseError, read_source

FORMAT = "fraud_reports_csv"
KIND = "fraud_reports"
LANDING_SOURCE = "fraud_reports"  # HOME/landing/<this>/

COLUMNS = ("report_id", "payment_id", "merchant_id", "kind", "source", "reported_at",
           "amount_minor", "currency")
KINDS = ("card_testing", "account_takeover", "mule_cash_out", "friendly_fraud", "stolen_card",
         "other")
SOURCES = ("chargeback", "issuer_report", "customer_claim", "internal_review")

_REQUIRED = ("report_id", "payment_id", "merchant_id", "kind", "source", "reported_at")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})")
_AMOUNT = re.compile(r"[0-9]{1,38}")
_BOM = b"\xef\xbb\xbf"


# --- sniff ---------------------------------------------------------------------------------------

def sniff(head: bytes, name: str) -> bool:
    """A header row naming exactly the eight columns (any order)."""
    first = head.removeprefix(_BOM).lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    try:
        cells = next(csv.reader([first.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return False
    return sorted(cell.strip() for cell in cells) == sorted(COLUMNS)


# --- parse ---------------------------------------------------------------------------------------

def parse(source: bytes | Path, name: str | None = None) -> ParsedFile:
    data = read_source(source)
    rows = _rows(_decode(data))
    first = next(rows, None)
    if first is None:
        raise ParseError("empty_file", "the file has no header row", "line 1")
    header_line, header = first
    position = _header(header, header_line)
    reports: list[FraudReport] = []
    first_seen: dict[str, int] = {}
    for line, cells in rows:
        report = _report(line, cells, position, len(header))
        earlier = first_seen.setdefault(report.report_id, line)
        if earlier != line:
            raise ParseError("duplicate_report", f"report_id {report.report_id!r:.80} is already "
                             f"on line {earlier}", f"line {line}")
        reports.append(report)
    return ParsedFile(format=FORMAT, kind=KIND, fraud_reports=reports)


def _decode(data: bytes) -> str:
    body = data.removeprefix(_BOM)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise ParseError("encoding", f"not UTF-8: {exc.reason}", f"line {line}") from None


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, trimmed cells) of every non-blank record."""
    for line, row in csv_records(text):
        cells = [cell.strip() for cell in row]
        if any(cells):
            yield line, cells


def _header(cells: list[str], line: int) -> dict[str, int]:
    where = f"line {line}"
    missing = [c for c in COLUMNS if c not in cells]
    unknown = [c for c in cells if c not in COLUMNS]
    if missing and len(missing) == len(COLUMNS):
        raise ParseError("bad_header", "the first row is not the fraud reports header "
                         f"({','.join(COLUMNS)})", where)
    if missing:
        raise ParseError("missing_column", f"the header lacks {', '.join(missing)}", where)
    if unknown:
        raise ParseError("unexpected_column", f"the header has unknown columns {unknown}", where)
    if len(cells) != len(COLUMNS):
        raise ParseError("duplicate_column", "the header repeats a column", where)
    return {name: cells.index(name) for name in COLUMNS}


def _report(line: int, cells: list[str], position: dict[str, int], width: int) -> FraudReport:
    where = f"line {line}"
    if len(cells) != width:
        raise ParseError("row_length", f"{len(cells)} cells, the header has {width}", where)
    row = {name: cells[index] for name, index in position.items()}
    for name in _REQUIRED:
        if not row[name]:
            raise ParseError("missing_field", f"{name} is empty", where)
    if row["kind"] not in KINDS:
        raise ParseError("unknown_kind", f"kind {row['kind']!r:.40} is not one of "
                         f"{', '.join(KINDS)}", where)
    if row["source"] not in SOURCES:
        raise ParseError("unknown_source", f"source {row['source']!r:.40} is not one of "
                         f"{', '.join(SOURCES)}", where)
    amount, currency = _amount(row["amount_minor"], row["currency"], where)
    return FraudReport(line_number=line, report_id=row["report_id"],
                       payment_id=row["payment_id"], merchant_id=row["merchant_id"],
                       kind=row["kind"], source=row["source"],
                       reported_at=_timestamp(row["reported_at"], where),
                       amount_minor=amount, currency=currency)


def _timestamp(text: str, where: str) -> dt.datetime:
    if _TIMESTAMP.fullmatch(text):
        try:
            return dt.datetime.fromisoformat(text).astimezone(dt.UTC).replace(tzinfo=None)
        except (ValueError, OverflowError):
            pass
    raise ParseError("bad_timestamp", f"reported_at {text!r:.40} is not an ISO 8601 time with "
                     "an offset (e.g. 2026-12-01T10:00:00Z)", where)


def _amount(amount: str, currency: str, where: str) -> tuple[int | None, str | None]:
    if amount and not _AMOUNT.fullmatch(amount):
        raise ParseError("bad_amount", f"amount_minor {amount!r:.40} is not a whole number of "
                         "minor units (digits only, no sign or decimal point)", where)
    if amount and not currency:
        raise ParseError("missing_currency", "amount_minor is given without a currency", where)
    if currency:
        try:
            currency_exponent(currency)
        except AmountError:
            raise ParseError("unknown_currency", f"currency {currency!r:.40} is not in the "
                             "currency table", where) from None
    return (int(amount) if amount else None), (currency or None)


# --- render and the demo's writer ----------------------------------------------------------------

def render(parsed: ParsedFile) -> bytes:
    """The reports as a fraud reports CSV (columns in COLUMNS order, `\\n` line ends, times as
    `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`). Refuses (ValueError) records that `parse` would not give
    back exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in parsed.fraud_reports:
        writer.writerow([r.report_id, r.payment_id, r.merchant_id, r.kind, r.source,
                         _iso(r.reported_at), "" if r.amount_minor is None else r.amount_minor,
                         r.currency or ""])
    data = out.getvalue().encode("utf-8")
    try:
        back = parse(data).fraud_reports
    except ParseError as err:
        raise ValueError(f"not a valid fraud report: {err}") from None
    for given, read in zip(parsed.fraud_reports, back, strict=True):
        expected = replace(given, line_number=read.line_number,
                           reported_at=_naive_utc(given.reported_at))
        if read != expected:
            raise ValueError(f"report {given.report_id!r} would not read back as written "
                             f"(surrounding spaces, or an amount that is not an int?): {given}")
    return data


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValueError(f"reported_at must be a datetime, got {value!r}")
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value  # naive = UTC, as everywhere in the warehouse


def _iso(value: dt.datetime) -> str:
    return _naive_utc(value).isoformat(timespec="auto") + "Z"


_REPORT_KEYS = frozenset(COLUMNS)
_REQUIRED_KEYS = ("report_id", "payment_id", "merchant_id", "kind", "source", "reported_at")


def write_fraud_reports(landing_dir: Path, day: dt.date, reports: list[dict]) -> Path | None:
    """Write `reports` as `landing_dir/fraud_reports/fraud-reports-<day>.csv` for the loader;
    None (and no file) when there are none.

    `landing_dir` is HOME/landing (`Settings.landing_dir`). Each report is a dict with the
    COLUMNS as keys (amount_minor and currency may be left out or None; reported_at a datetime,
    naive = UTC, or an ISO 8601 text with offset); unknown keys or invalid values raise
    ValueError before anything is written. The file appears atomically (written to a dot file,
    which the loader ignores, then renamed). If a file of that day still waits in landing with
    other bytes, the new one is written beside it (`fraud-reports-<day>.2.csv`, ...), never over
    it; the same bytes again are not rewritten.
    """
    if not reports:
        return None
    records = [_record(report, line) for line, report in enumerate(reports, start=2)]
    data = render(ParsedFile(format=FORMAT, kind=KIND, fraud_reports=records))
    folder = Path(landing_dir) / LANDING_SOURCE
    folder.mkdir(parents=True, exist_ok=True)
    path, copy = folder / f"fraud-reports-{day.isoformat()}.csv", 1
    while path.exists():
        if path.read_bytes() == data:
            return path
        copy += 1
        path = folder / f"fraud-reports-{day.isoformat()}.{copy}.csv"
    tmp = folder / f".{path.name}.{os.getpid()}.part"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _record(report: dict, line: int) -> FraudReport:
    unknown = set(report) - _REPORT_KEYS
    if unknown:
        raise ValueError(f"unknown fraud report fields {sorted(unknown)}; expected {COLUMNS}")
    missing = [key for key in _REQUIRED_KEYS if report.get(key) is None]
    if missing:
        raise ValueError(f"a fraud report needs {', '.join(missing)}: {report}")
    at = report["reported_at"]
    if isinstance(at, str):
        try:
            at = _timestamp(at.strip(), "reported_at")
        except ParseError as err:
            raise ValueError(err.message) from None
    amount = report.get("amount_minor")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ValueError(f"amount_minor must be an int of minor units or None, got {amount!r}")
    return FraudReport(line_number=line, report_id=report["report_id"],
                       payment_id=report["payment_id"], merchant_id=report["merchant_id"],
                       kind=report["kind"], source=report["source"], reported_at=at,
                       amount_minor=amount, currency=report.get("currency"))
