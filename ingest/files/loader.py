"""Load the landing zone: each file once, by content hash, into the raw tables - or quarantine it.

A file dropped under `HOME/landing/<source>/` ends in exactly one state:
- **loaded**: its rows are in the raw tables, `raw.landed_files` holds its format, row count,
  totals per currency and any warnings (a statement whose arithmetic does not hold is loaded and
  flagged, never silently accepted), and the file moves to `HOME/archive/<source>/`;
- **quarantined**: it moves to `HOME/quarantine/<source>/` next to a `.reason.json` with the
  machine-readable reason and the line or element where parsing failed.

Each file is one warehouse transaction, so a bad or crashing file never blocks the others and
nothing is half-written. The same bytes again are recognised by SHA-256 and skipped (for the
PSP settlement CSV, whose name carries channel and day, name + bytes). A corrected
re-send (same account + statement sequence + period, or same PSP channel + settlement day, with
different bytes) supersedes the earlier rows: they get `superseded_by`, and the pair is recorded
in `raw.file_supersessions`. Fraud reports supersede per report: a later file repeating a
report_id supersedes that report's earlier row only (formats/fraud_reports.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingest.files import formats
from ingest.files.formats import psp_csv
from ingest.files.records import (
    ChainLog,
    FraudReport,
    FxRate,
    ParsedFile,
    ParseError,
    PspLine,
    StatementLine,
    Warning_,
    as_utf8,
)
from ingest.files.schema import (
    BANK_STATEMENT_LINES,
    BANK_STATEMENTS,
    CHAIN_HEADS,
    CHAIN_LOGS,
    FILE_SUPERSESSIONS,
    FRAUD_REPORTS,
    FX_RATES,
    LANDED_FILES,
    PSP_LINES,
)
from ingest.files.warehouse_io import open_files_writer
from ingest.raw_schema import RAW_SCHEMA
from warehouse.settings import Settings

log = logging.getLogger(__name__)

# The reason for a file whose rows could not be written (the warehouse failed mid-file): the
# transaction is rolled back, the file quarantined, and handing it in again retries it.
LOAD_FAILED = "load_failed"
# The location of a quarantine whose finding is about the file as a whole.
WHOLE_FILE = "whole file"
_DAY_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_HEAD_BYTES = 4096


@dataclass
class FileOutcome:
    path: str
    source: str
    file_id: str
    status: str  # "loaded" | "quarantined" | "duplicate"
    format: str | None = None
    rows: int = 0
    reason: str | None = None
    location: str | None = None
    message: str | None = None
    totals: dict[str, str] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    files: list[FileOutcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.status == "loaded")

    def summary(self) -> dict:
        return {"loaded": self.count("loaded"), "quarantined": self.count("quarantined"),
                "duplicates": self.count("duplicate"), "rows": self.rows,
                "seconds": round(self.seconds, 3)}


# --- finding files ------------------------------------------------------------------------------

def pending_files(settings: Settings, sources: list[str] | None = None) -> list[tuple[str, Path]]:
    """(source, path) of every file waiting in the landing zone, oldest first."""
    found = []
    root = settings.landing_dir
    if not root.is_dir():
        return []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if sources and source_dir.name not in sources:
            continue
        for path in source_dir.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                found.append((source_dir.name, path))
    found.sort(key=lambda sp: (sp[1].stat().st_mtime, str(sp[1])))
    return found


RESENT_PREFIX = "resent-"


def land(settings: Settings, path: Path, source: str) -> Path:
    """Copy an operator's file into the landing zone (the original stays where it was). When a
    file of that name with other bytes waits there already (a corrected re-send), this one goes
    in a folder of its own under its own name - a PSP settlement file's name is its channel and
    day - and, copied later, is loaded after it (and supersedes it)."""
    target_dir = settings.landing_dir / source
    target = target_dir / path.name
    if target.exists() and target.read_bytes() != path.read_bytes():
        target = target_dir / f"{RESENT_PREFIX}{time.time_ns()}" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


# --- parsing ------------------------------------------------------------------------------------

def detect_and_parse(data: bytes, name: str, source: str) -> ParsedFile:
    data = as_utf8(data)
    head = data[:_HEAD_BYTES]
    tried = []
    for fmt in formats.candidates(source):
        module = formats.module(fmt)
        if module.sniff(head, name):
            return module.parse(data, name)
        tried.append(fmt)
    raise ParseError("unknown_format",
                     f"the file matches none of the formats expected in landing/{source} "
                     f"({', '.join(tried)})", "line 1")


# --- rows -> Arrow ------------------------------------------------------------------------------

def _arrow(records: list, cls, extra: dict[str, list]) -> pa.Table:
    columns = {f.name: [getattr(r, f.name) for r in records] for f in fields(cls)}
    columns.update(extra)
    return pa.table({name: _array(values) for name, values in columns.items()})


def _array(values: list) -> pa.Array:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return pa.array(values, pa.bool_())
    if isinstance(sample, int):
        try:
            return pa.array(values, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            # Amounts beyond int64 (18-decimal assets) go as exact text; the insert casts.
            return pa.array([None if v is None else str(v) for v in values], pa.string())
    if sample is None:
        return pa.array(values, pa.string())
    return pa.array(values)


def _totals_by_currency(pairs) -> dict[str, str]:
    totals: dict[str, int] = defaultdict(int)
    for currency, amount in pairs:
        totals[currency] += amount
    return {k: str(v) for k, v in sorted(totals.items())}


def _exact(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Amounts as DECIMAL(38,0), so sums are exact: int64 sums of 18-decimal assets would
    overflow, and amounts beyond int64 arrive as text (_array)."""
    return pc.cast(column, pa.decimal128(38, 0))


def _sums(table: pa.Table, by: str, amount: str) -> dict[str, str]:
    """Exact sums of `amount` per value of `by`, as {value: "minor units"}."""
    sums = pa.table({"key": table.column(by), "amount": _exact(table.column(amount))}) \
        .group_by("key").aggregate([("amount", "sum")])
    return _totals_by_currency(zip(sums.column("key").to_pylist(),
                                   map(int, sums.column("amount_sum").to_pylist()), strict=True))


def _per_statement(lines: pa.Table | None) -> tuple[dict[int, int], dict[int, int]]:
    """Per statement index: how many lines, and the booked lines' amounts summed exactly."""
    if lines is None:
        return {}, {}
    counts = lines.group_by("statement_index").aggregate([("statement_index", "count")])
    booked = pc.equal(lines.column("status"), "booked")
    totals = pa.table({"i": pc.filter(lines.column("statement_index"), booked),
                       "amount": _exact(pc.filter(lines.column("amount_minor"), booked))}) \
        .group_by("i").aggregate([("amount", "sum")])
    return (dict(zip(counts.column("statement_index").to_pylist(),
                     counts.column("statement_index_count").to_pylist(), strict=True)),
            dict(zip(totals.column("i").to_pylist(),
                     map(int, totals.column("amount_sum").to_pylist()), strict=True)))


def _statement_key(stmt, fmt: str) -> str | None:
    reference = stmt.sequence_number or stmt.statement_id
    period = stmt.to_date or stmt.closing_date
    if not stmt.account_id or not reference or period is None:
        return None
    return f"{fmt}|{stmt.message_type}|{stmt.account_id}|{reference}|{period.isoformat()}"


# --- the loader ---------------------------------------------------------------------------------

class FileLoader:
    def __init__(self, settings: Settings, writer=None):
        self.settings = settings
        self.own_writer = writer is None
        self.writer = writer or open_files_writer(settings)
        self._retrying: set[str] = set()

    def close(self) -> None:
        if self.own_writer:
            self.writer.close()

    def __enter__(self) -> FileLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # One file ---------------------------------------------------------------------------------

    def load(self, path: Path, source: str) -> FileOutcome:
        data = path.read_bytes()
        file_id = file_identity(path.name, data)
        known = self.writer.fetchall(
            f"SELECT status, reason FROM {RAW_SCHEMA}.landed_files WHERE file_id = $1", (file_id,))
        if known and known[0][1] == LOAD_FAILED:
            # A failed write is no verdict on the file: handed in again, it is read again (its
            # registry row is replaced in the same transaction as the new outcome).
            self._retrying.add(file_id)
            known = []
        if known:
            self._archive(path, source, file_id, quarantined=known[0][0] == "quarantined",
                          duplicate=True)
            return FileOutcome(str(path), source, file_id, "duplicate")
        try:
            parsed = detect_and_parse(data, path.name, source)
        except ParseError as err:
            # a finding about the file as a whole (empty, no rates, ...) has no one line
            return self._quarantine(path, source, file_id, len(data), err.reason, err.message,
                                    err.location or WHOLE_FILE)
        except Exception as err:  # a parser bug must not block the batch either
            log.exception("parser crashed on %s", path)
            return self._quarantine(path, source, file_id, len(data), "parser_error",
                                    f"{type(err).__name__}: {err}", WHOLE_FILE)
        outcome = FileOutcome(str(path), source, file_id, "loaded", format=parsed.format,
                              rows=parsed.row_count,
                              warnings=[asdict(w) for w in parsed.warnings])
        self.writer.begin()
        try:
            self._write(parsed, path, source, file_id, len(data), outcome)
            self.writer.commit()
        except Exception as err:  # nothing of the file stays; the batch goes on without it
            self.writer.rollback()
            log.exception("loading %s failed; rolled back and quarantined", path)
            return self._quarantine(path, source, file_id, len(data), LOAD_FAILED,
                                    f"{type(err).__name__}: {err}", "warehouse write")
        self._archive(path, source, file_id)
        return outcome

    def _write(self, parsed: ParsedFile, path: Path, source: str, file_id: str, size: int,
               outcome: FileOutcome) -> None:
        short = file_id[:16]
        if parsed.kind == "bank_statement":
            outcome.totals = self._write_statements(parsed, short, file_id, outcome)
        elif parsed.kind == "psp_bill":
            outcome.totals = self._write_psp(parsed, path.name, short, file_id, outcome)
        elif parsed.kind == "chain_logs":
            outcome.totals = self._write_chain(parsed, file_id)
        elif parsed.kind == "fx_rates":
            outcome.totals = self._write_fx(parsed, file_id, outcome)
        elif parsed.kind == "fraud_reports":
            outcome.totals = self._write_fraud_reports(parsed, short, file_id, outcome)
        else:
            raise ValueError(f"unknown parsed kind {parsed.kind!r}")
        self._register(file_id, source, parsed.format, parsed.kind, path, size, "loaded",
                       rows=parsed.row_count, totals=outcome.totals, warnings=outcome.warnings)

    def _write_statements(self, parsed: ParsedFile, short: str, file_id: str,
                          outcome: FileOutcome) -> dict:
        statements = parsed.statements
        uids, keys = [], []
        for stmt in statements:
            key = _statement_key(stmt, parsed.format)
            uids.append(f"{short}:{stmt.index}")
            keys.append(key)
            if key:
                outcome.superseded += [old for old in self._supersede(
                    "bank_statements", key, file_id) if old not in outcome.superseded]
        # Column-wise (Arrow compute) from here, not line by line: statements run to 1M+ lines.
        lines = parsed.statement_table if parsed.statement_table is not None else (
            _arrow(parsed.statement_lines, StatementLine, {}) if parsed.statement_lines else None)
        counts, booked = _per_statement(lines)
        self.writer.insert(BANK_STATEMENTS, _arrow(statements, type(statements[0]), {
            "statement_uid": uids, "file_id": [file_id] * len(uids), "supersession_key": keys,
            "format": [parsed.format] * len(uids),
            "statement_index": [s.index for s in statements],
            "line_count": [counts.get(s.index, 0) for s in statements],
            "lines_total_minor": [booked.get(s.index, 0) for s in statements],
        }) if statements else pa.table({}))
        if lines is None:
            return {}
        n = lines.num_rows
        index = lines.column("statement_index")
        statement_uid = pc.binary_join_element_wise(
            pa.repeat(pa.scalar(short), n), pc.cast(index, pa.string()), ":")
        position = pc.index_in(index, value_set=pa.array([s.index for s in statements],
                                                         pa.int64()))
        lines = (lines
                 .append_column("statement_line_id", pc.binary_join_element_wise(
                     statement_uid, pc.cast(lines.column("line_number"), pa.string()), ":"))
                 .append_column("statement_uid", statement_uid)
                 .append_column("account_id", pc.take(
                     pa.array([s.account_id for s in statements], pa.string()), position)))
        self.writer.insert(BANK_STATEMENT_LINES, lines, {"file_id": file_id})
        return _sums(lines, "currency", "amount_minor")

    def _write_psp(self, parsed: ParsedFile, name: str, short: str, file_id: str,
                   outcome: FileOutcome) -> dict:
        table = parsed.psp_table
        if table is None:
            table = _arrow(parsed.psp_lines, PspLine, {})
        if parsed.format == "psp_csv":  # its name is its channel and day, rows or none
            channel, day = psp_csv.file_facts(name)
        else:
            day_match = _DAY_IN_NAME.search(name)
            day = dt.date.fromisoformat(day_match.group(1)) if day_match else None
            channel = None
            if table.num_rows and "channel" in table.column_names:
                channel = table.column("channel")[0].as_py()
        # A PSP settlement CSV is one per channel and day (its name says which); a fund-flow
        # bill, which names no merchant, is told apart by its file name.
        # WeChat and Alipay bills say who and when themselves (ParsedFile.bill_key): the same
        # bill under another name supersedes too, instead of loading its rows twice.
        if parsed.format == "psp_csv" and channel and day:
            key = f"psp|{parsed.format}|{channel}|{day.isoformat()}"
        elif parsed.bill_key:
            key = f"psp|{parsed.format}|bill:{parsed.bill_key}"
        else:
            key = f"psp|{parsed.format}|name:{name}"
        outcome.superseded += self._supersede("psp_lines", key, file_id)
        n = table.num_rows
        # Column-wise (Arrow compute), not row by row: big settlement files have 1M+ lines.
        ids = pc.binary_join_element_wise(
            pa.repeat(pa.scalar(short), n), pc.cast(table.column("line_number"), pa.string()),
            ":")
        table = table.append_column("psp_line_id", ids)
        self.writer.insert(PSP_LINES, table, {
            "file_id": file_id, "format": parsed.format, "supersession_key": key,
            "settlement_date": day})
        if pa.types.is_integer(table.schema.field("gross_minor").type):
            return _sums(table, "currency", "gross_minor")
        return _totals_by_currency(zip(table.column("currency").to_pylist(),
                                       map(int, table.column("gross_minor").to_pylist()),
                                       strict=True))

    def _write_chain(self, parsed: ParsedFile, file_id: str) -> dict:
        logs = parsed.chain_logs
        ids = self._chain_log_ids(logs)
        # Logs are facts of the chain: the same log in a later file is the same row.
        new_ids, new_logs = self._not_yet_loaded("chain_logs", "chain_log_id", ids, logs)
        if new_ids:
            self.writer.insert(CHAIN_LOGS, _arrow(new_logs, ChainLog, {
                "chain_log_id": new_ids, "file_id": [file_id] * len(new_ids),
                "value_text": [str(x.value) for x in new_logs],
                "value_minor": [str(x.value) if x.value < 10**38 else None for x in new_logs],
            }).drop_columns(["value"]))
        heads = dict(parsed.chain_heads)  # what the file's node had seen, else its newest log
        if not heads:
            for x in logs:
                heads[x.network] = max(heads.get(x.network, 0), x.block_number)
        for network, block in heads.items():
            self.writer.insert(CHAIN_HEADS, pa.table({
                "file_id": [file_id], "network": [network], "latest_block": [block],
                "seen_at": [dt.datetime.now(dt.UTC).replace(tzinfo=None)]}))
        return _totals_by_currency((x.token_address, x.value) for x in logs if not x.removed)

    def _chain_log_ids(self, logs: list) -> list[str]:
        """`network:tx:log_index` (`:removed` for a reorg's removal of it) for a log's first
        block; a transaction mined again in another block after a reorg is another log of the
        chain: `network:tx:log_index@<block hash, else number>` (reconciliation.md: a payment
        matches a Transfer log by transaction hash - the re-mined one must not be taken for the
        removed one)."""
        def block(x) -> str:
            return x.block_hash or str(x.block_number)

        bases = [f"{x.network}:{x.transaction_hash}:{x.log_index}" for x in logs]
        probes = sorted({b + suffix for b in bases for suffix in ("", ":removed")})
        stored = self.writer.existing_values(
            "chain_logs", "chain_log_id", probes,
            "coalesce(block_hash, cast(block_number as varchar))") if probes else {}
        first_block: dict[str, str] = {}  # a log's base id -> the block that first carried it
        ids = []
        for base, x in zip(bases, logs, strict=True):
            owner = first_block.setdefault(
                base, stored.get(base) or stored.get(base + ":removed") or block(x))
            key = base if owner == block(x) else f"{base}@{block(x)}"
            ids.append(key + (":removed" if x.removed else ""))
        return ids

    def _write_fx(self, parsed: ParsedFile, file_id: str, outcome: FileOutcome) -> dict:
        rates: list[FxRate] = parsed.fx_rates
        ids = [f"{r.source}:{r.rate_date.isoformat()}:{r.base_currency}:{r.quote_currency}"
               for r in rates]
        stored = self.writer.existing_values("fx_rates", "fx_rate_id", sorted(set(ids)),
                                             "rate_text") if ids else {}
        self._flag_rate_conflicts(ids, rates, stored, outcome)
        fresh = {i: r for i, r in zip(ids, rates, strict=True) if i not in stored}
        new_ids, new_rates = list(fresh), list(fresh.values())
        if new_ids:
            self.writer.insert(FX_RATES, _arrow(new_rates, FxRate, {
                "fx_rate_id": new_ids, "file_id": [file_id] * len(new_ids),
                "rate_text": [r.rate for r in new_rates],
            }))
        days = sorted({r.rate_date for r in rates})
        return {"rates": str(len(rates)), "new_rates": str(len(new_ids)),
                "first_date": days[0].isoformat() if days else "",
                "last_date": days[-1].isoformat() if days else ""}

    @staticmethod
    def _flag_rate_conflicts(ids: list[str], rates: list[FxRate], stored: dict[str, str],
                             outcome: FileOutcome) -> None:
        """A published rate is a fact: the first one stored stays. A file that gives another
        value for a stored source, day and pair is loaded with a `rate_conflict` warning that
        names both values, never silently."""
        conflicts = [(i, stored[i], r.rate) for i, r in zip(ids, rates, strict=True)
                     if i in stored and Decimal(stored[i]) != Decimal(r.rate)]
        if conflicts:
            shown = "; ".join(f"{i}: stored {old}, this file {new}"
                              for i, old, new in conflicts[:10])
            outcome.warnings.append(asdict(Warning_(
                "rate_conflict", f"{len(conflicts)} rate(s) differ from the ones already "
                f"stored, which stay: {shown}")))

    def _write_fraud_reports(self, parsed: ParsedFile, short: str, file_id: str,
                             outcome: FileOutcome) -> dict:
        reports: list[FraudReport] = parsed.fraud_reports
        if reports:
            self.writer.insert(FRAUD_REPORTS, _arrow(reports, FraudReport, {
                "fraud_report_line_id": [f"{short}:{r.line_number}" for r in reports],
                "file_id": [file_id] * len(reports)}))
            outcome.superseded += self._supersede_reports(file_id)
        return _totals_by_currency((r.currency, r.amount_minor) for r in reports
                                   if r.amount_minor is not None)

    def _supersede_reports(self, file_id: str) -> list[str]:
        """A report_id this file repeats is an update: the earlier current row gets
        superseded_by, each (earlier file, report) is recorded; returns the earlier files."""
        table = f"{RAW_SCHEMA}.fraud_reports"
        repeated = (f"WHERE superseded_by IS NULL AND file_id <> $1 AND report_id IN "
                    f"(SELECT report_id FROM {table} WHERE file_id = $1)")
        earlier = self.writer.fetchall(
            f"SELECT DISTINCT file_id, report_id FROM {table} {repeated} "
            "ORDER BY file_id, report_id", (file_id,))
        if not earlier:
            return []
        self.writer.execute(f"UPDATE {table} SET superseded_by = $1 {repeated}", (file_id,))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.writer.insert(FILE_SUPERSESSIONS, pa.table({
            "superseded_file_id": [old for old, _ in earlier],
            "superseding_file_id": [file_id] * len(earlier),
            "supersession_key": [f"fraud_report|{report}" for _, report in earlier],
            "superseded_at": [now] * len(earlier)}))
        return sorted({old for old, _ in earlier})

    # Registry, supersession, files ------------------------------------------------------------

    def _not_yet_loaded(self, table: str, column: str, ids: list[str], records: list
                        ) -> tuple[list[str], list]:
        """The records (and their ids) not in raw.<table> yet, each id once."""
        existing = self.writer.existing(table, column, sorted(set(ids))) if ids else set()
        fresh = {i: r for i, r in zip(ids, records, strict=True) if i not in existing}
        return list(fresh), list(fresh.values())

    def _supersede(self, table: str, key: str, file_id: str) -> list[str]:
        old = [r[0] for r in self.writer.fetchall(
            f"SELECT DISTINCT file_id FROM {RAW_SCHEMA}.{table} WHERE supersession_key = $1 "
            "AND superseded_by IS NULL AND file_id <> $2", (key, file_id))]
        for old_file in old:
            self.writer.execute(
                f"UPDATE {RAW_SCHEMA}.{table} SET superseded_by = $1 "
                "WHERE supersession_key = $2 AND file_id = $3", (file_id, key, old_file))
            if table == "bank_statements":
                self.writer.execute(
                    f"UPDATE {RAW_SCHEMA}.bank_statement_lines SET superseded_by = $1 "
                    f"WHERE statement_uid IN (SELECT statement_uid FROM {RAW_SCHEMA}.bank_statements "
                    "WHERE supersession_key = $2 AND file_id = $3)", (file_id, key, old_file))
            self.writer.insert(FILE_SUPERSESSIONS, pa.table({
                "superseded_file_id": [old_file], "superseding_file_id": [file_id],
                "supersession_key": [key],
                "superseded_at": [dt.datetime.now(dt.UTC).replace(tzinfo=None)]}))
        return old

    def _register(self, file_id: str, source: str, fmt: str | None, kind: str | None, path: Path,
                  size: int, status: str, *, rows: int = 0, totals=None, warnings=None,
                  reason=None, location=None, message=None, stored: Path | None = None) -> None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        landed = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
        if file_id in self._retrying:
            self.writer.execute(f"DELETE FROM {RAW_SCHEMA}.landed_files WHERE file_id = $1",
                                (file_id,))
        self.writer.insert(LANDED_FILES, pa.table({
            "file_id": [file_id], "source": [source], "format": pa.array([fmt], pa.string()),
            "kind": pa.array([kind], pa.string()), "original_name": [path.name],
            "stored_path": [str(stored or self._archive_path(path, source, file_id))],
            "size_bytes": [size], "status": [status], "reason": pa.array([reason], pa.string()),
            "location": pa.array([location], pa.string()),
            "message": pa.array([message], pa.string()), "row_count": [rows],
            "totals": [json.dumps(totals or {})], "warnings": [json.dumps(warnings or [])],
            "landed_at": [landed], "processed_at": [now]}))

    def _quarantine(self, path: Path, source: str, file_id: str, size: int, reason: str,
                    message: str, location: str | None) -> FileOutcome:
        target = self.settings.quarantine_dir / source / f"{file_id[:12]}__{path.name}"
        self.writer.begin()
        try:
            self._register(file_id, source, None, None, path, size, "quarantined", reason=reason,
                           location=location, message=message, stored=target)
            self.writer.commit()
        except Exception:
            self.writer.rollback()
            raise
        self._archive(path, source, file_id, quarantined=True, reason={
            "file": path.name, "file_id": file_id, "source": source, "reason": reason,
            "message": message, "location": location})
        return FileOutcome(str(path), source, file_id, "quarantined", reason=reason,
                           location=location, message=message)

    def _archive_path(self, path: Path, source: str, file_id: str) -> Path:
        return self.settings.home_dir / "archive" / source / f"{file_id[:12]}__{path.name}"

    def _archive(self, path: Path, source: str, file_id: str, *, quarantined: bool = False,
                 duplicate: bool = False, reason: dict | None = None) -> None:
        """Move the file out of the landing zone (after the warehouse commit: a crash in between
        leaves it in landing, and the next run recognises it by hash and only moves it)."""
        failed_copy = self.settings.quarantine_dir / source / f"{file_id[:12]}__{path.name}"
        if quarantined:
            target = failed_copy
        else:
            target = self._archive_path(path, source, file_id)
            if file_id in self._retrying:  # loaded now: the failed attempt's copy goes
                failed_copy.unlink(missing_ok=True)
                failed_copy.with_name(failed_copy.name + ".reason.json").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if reason is not None:
            target.with_name(target.name + ".reason.json").write_text(json.dumps(reason, indent=2))
        if duplicate and target.exists():
            path.unlink(missing_ok=True)
        elif path.exists():
            shutil.move(str(path), target)
        if path.parent.name.startswith(RESENT_PREFIX):  # land()'s folder for a re-send: done
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def file_identity(name: str, data: bytes) -> str:
    """SHA-256 of the bytes; for a PSP settlement CSV, whose name carries its channel and day
    (`<channel>_<YYYY-MM-DD>.csv`), of the name too: two channels' identical files (say, both
    empty for the day) are two files."""
    digest = hashlib.sha256()
    if psp_csv.FILE_NAME.fullmatch(name):
        digest.update(name.encode() + b"\0")
    digest.update(data)
    return digest.hexdigest()


def load_landing(settings: Settings, *, sources: list[str] | None = None,
                 paths: list[tuple[str, Path]] | None = None, writer=None) -> LoadReport:
    """Load every pending file (or the given (source, path) pairs); never stops at a bad one."""
    started = time.perf_counter()
    todo = paths if paths is not None else pending_files(settings, sources)
    outcomes = []
    with FileLoader(settings, writer) as loader:
        for source, path in todo:
            outcomes.append(loader.load(path, source))
    return LoadReport(outcomes, time.perf_counter() - started)
