"""Run a suite against the warehouse: read the table (read-only), validate it with an ephemeral
GX context, write a report under HOME/quality/<suite>/ and say what failed.

The table is read through the DB-API (DuckDB opened read-only, or psycopg in a read-only
REPEATABLE READ transaction) into an object-dtype pandas frame: money arrives as exact decimal
text and the money identities as residuals the warehouse computed (quality/suites.py), so no
amount ever passes through a float.

The report is our own self-contained HTML (plus the GX result as JSON), not GX Data Docs: the
Data Docs templates load Bootstrap, Font Awesome and Vega from public CDNs, which an offline
operator cannot reach.
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from quality.suites import SUITES, SuiteSpec, build_suite
from warehouse.connections import to_libpq_url
from warehouse.settings import Settings

EXAMPLES = 5
DUCKDB_LOCK_WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class Failure:
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_in_set
    column: str | None
    description: str
    unexpected_count: int | None  # rows (None for table-level expectations)
    examples: list[dict] = field(default_factory=list)  # up to 5: {key column, column: value}
    observed: str | None = None  # table-level: what was seen

    def line(self) -> str:
        what = f"{self.expectation}({self.column})" if self.column else self.expectation
        count = f"{self.unexpected_count} rows" if self.unexpected_count is not None else \
            f"observed {self.observed}"
        return f"{what}: {count}" + (f" - {self.description}" if self.description else "")


@dataclass(frozen=True)
class QualityResult:
    suite: str
    success: bool
    rows: int
    evaluated: int  # expectations run
    failures: tuple[Failure, ...]
    report_path: Path
    seconds: float

    def markdown(self) -> str:
        """The failures as a markdown table (Dagster metadata)."""
        if not self.failures:
            return f"All {self.evaluated} expectations passed on {self.rows} rows."
        lines = ["| expectation | column | unexpected | examples |", "|---|---|---|---|"]
        for f in self.failures:
            count = f.unexpected_count if f.unexpected_count is not None else f.observed
            lines.append(f"| {_md(f.expectation)} | {_md(f.column or '')} | {_md(str(count))} | "
                         f"{_md(_examples_text(f.examples))} |")
        return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _examples_text(examples: list[dict]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in examples)


# --- reading ------------------------------------------------------------------------------------

class _Reader:
    """One read-only connection: `query(sql) -> (columns, rows)`."""

    def __init__(self, settings: Settings):
        self.engine = settings.warehouse_engine
        if self.engine == "duckdb":
            self.conn = _duckdb_read_only(settings.duckdb_path)
        else:
            import psycopg

            self.conn = psycopg.connect(to_libpq_url(settings.warehouse_target))
            self.conn.read_only = True
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        cursor = self.conn.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def close(self) -> None:
        if self.engine == "postgres":
            self.conn.rollback()
        self.conn.close()


def _duckdb_read_only(path: Path):
    """Open the DuckDB file read-only, waiting while another process holds it read-write (a
    loader or dbt in a parallel step of a multiprocess run)."""
    import duckdb

    deadline = time.monotonic() + DUCKDB_LOCK_WAIT_SECONDS
    delay = 0.2
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_money(name: str, data_type: str) -> bool:
    return name.endswith("_minor") or data_type.upper().startswith(("DECIMAL", "NUMERIC"))


def _existing_tables(reader: _Reader, names: set[str]) -> set[str]:
    """Which of `names` (schema.table) exist."""
    if not names:
        return set()
    _, rows = reader.query("SELECT table_schema, table_name FROM information_schema.tables")
    return names & {f"{schema}.{table}" for schema, table in rows}


def read_table(reader: _Reader, spec: SuiteSpec, checked_through: str | None = None):
    """(table columns, object-dtype frame with money as text plus the derived columns, min rows);
    None when the table does not exist. A raw ledger table is read from `checked_through` on
    (see `validate`)."""
    import pandas as pd

    _, cols = reader.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{spec.schema}' AND table_name = '{spec.table}' "
        "ORDER BY ordinal_position")
    if not cols:
        return None
    present = {name for name, _ in cols}
    tables = _existing_tables(reader, {t for d in spec.derived for t in d.tables})
    select = [f"CAST({name} AS VARCHAR) AS {name}" if _is_money(name, dtype) else name
              for name, dtype in cols]
    select += [f"{d.sql} AS {d.name}" for d in spec.derived
               if set(d.needs) <= present and set(d.tables) <= tables]
    query = f"SELECT {', '.join(select)} FROM {spec.name}"
    if "_extracted_at" in present and checked_through is not None:
        # A raw ledger table: check the rows extracted since the last passing check (every row
        # older passed when it arrived), so a run costs what it loaded, not the table's size,
        # and rows that failed are checked again until they pass. Derived columns are computed
        # over the whole table first (a transaction's legs may span extracts).
        query = (f"SELECT * FROM ({query}) AS q WHERE q._extracted_at IS NULL OR "
                 f"q._extracted_at > CAST('{checked_through}' AS TIMESTAMP)")
    elif spec.current_only and "superseded_by" in present:
        # A file table: the current rows, what staging reads (a re-sent file's rows replace the
        # earlier file's, which stay with superseded_by set).
        query = f"SELECT * FROM ({query}) AS q WHERE q.superseded_by IS NULL"
    names, rows = reader.query(query)
    frame = pd.DataFrame.from_records(rows, columns=names).astype(object)
    min_rows = 0
    if spec.min_rows_sql and set(spec.min_rows_tables) <= _existing_tables(
            reader, set(spec.min_rows_tables)):
        _, [(min_rows,)] = reader.query(spec.min_rows_sql)
    return [name for name, _ in cols], frame, int(min_rows)


# --- validating ---------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _batch_definition():
    """One ephemeral GX context per process (analytics off), with a whole-dataframe batch."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("clearhouse_warehouse").add_dataframe_asset("table")
    return asset.add_batch_definition_whole_dataframe("whole_table")


def validate(settings: Settings, suite_name: str) -> QualityResult:
    """Run the suite `suite_name` (a key of quality.suites.SUITES) on the configured warehouse."""
    spec = SUITES[suite_name]
    started = time.perf_counter()
    reader = _Reader(settings)
    try:
        loaded = read_table(reader, spec, _checked_through(settings, suite_name))
    finally:
        reader.close()
    if loaded is None:
        failure = Failure("table_exists", None, f"{spec.name} does not exist", None,
                          observed="no such table")
        result = QualityResult(spec.name, False, 0, 1, (failure,), Path(), 0.0)
        report = write_report(settings, spec, result, None)
        return _with(result, report, started)
    _, frame, min_rows = loaded
    suite = build_suite(spec, min_rows=min_rows)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    outcome = batch.validate(suite, result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": [spec.key],
        "partial_unexpected_count": EXAMPLES, "return_unexpected_index_query": False})
    failures = tuple(_failure(r, spec.key) for r in outcome.results if not r.success)
    result = QualityResult(spec.name, bool(outcome.success), len(frame), len(outcome.results),
                           failures, Path(), 0.0)
    if result.success and "_extracted_at" in frame.columns and frame["_extracted_at"].notna().any():
        _mark_checked_through(settings, suite_name, frame["_extracted_at"].dropna().max())
    report = write_report(settings, spec, result, outcome)
    return _with(result, report, started)


# A raw ledger table's rows are checked once they have passed: HOME/quality/<suite>/
# checked_through.json keeps the newest _extracted_at of the last passing check, for the
# warehouse it was made on (another warehouse, or none kept: the whole table is checked).
# A failing check leaves it where it was, so its rows are read again on every run until
# fixed (the extract rewrites a corrected row with a new _extracted_at).

def _warehouse_id(settings: Settings) -> str:
    import hashlib

    return hashlib.sha256(settings.warehouse_target.encode()).hexdigest()[:16]


def _checked_through(settings: Settings, suite_name: str) -> str | None:
    try:
        kept = json.loads((report_dir(settings, suite_name) / "checked_through.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("warehouse") != _warehouse_id(settings):
        return None
    value = kept.get("extracted_at")
    try:  # only a timestamp ever goes into the SQL
        return datetime.fromisoformat(value).isoformat(sep=" ") if isinstance(value, str) else None
    except ValueError:
        return None


def _mark_checked_through(settings: Settings, suite_name: str, extracted_at) -> None:
    folder = report_dir(settings, suite_name)
    folder.mkdir(parents=True, exist_ok=True)
    value = extracted_at if isinstance(extracted_at, datetime) else datetime.fromisoformat(
        str(extracted_at))
    if value.tzinfo is not None:  # raw timestamps are naive UTC
        value = value.astimezone(UTC).replace(tzinfo=None)
    tmp = folder / "checked_through.json.tmp"
    tmp.write_text(json.dumps({"warehouse": _warehouse_id(settings),
                               "extracted_at": value.isoformat(sep=" ")}))
    tmp.replace(folder / "checked_through.json")


def _with(result: QualityResult, report: Path, started: float) -> QualityResult:
    return QualityResult(result.suite, result.success, result.rows, result.evaluated,
                         result.failures, report, round(time.perf_counter() - started, 3))


def _failure(r, key: str) -> Failure:
    config = r.expectation_config
    column = config.kwargs.get("column")
    description = config.description or ""
    res = r.result or {}
    message = _exception_message(r.exception_info)
    if message is not None:
        return Failure(config.type, column, description, None, observed=f"error: {message}")
    if "unexpected_count" in res and column:
        examples = [_example(row, key, column) for row in
                    (res.get("unexpected_index_list") or [])[:EXAMPLES]]
        if not examples:
            examples = [{column: _plain(v)} for v in res.get("partial_unexpected_list", [])]
        return Failure(config.type, column, description, int(res["unexpected_count"]),
                       examples[:EXAMPLES])
    observed = res.get("observed_value")
    details = res.get("details")
    text = json.dumps(_plain(observed), default=str)
    if details:
        text += " " + json.dumps(_plain(details), default=str)
    return Failure(config.type, column, description, None, observed=text[:500])


def _exception_message(info) -> str | None:
    """The first line of the exception an expectation raised (e.g. its column is missing), or
    None. GX gives one {raised_exception, exception_message} or one per metric it computed."""
    if not isinstance(info, dict):
        return None
    found = [info] if "raised_exception" in info else [
        v for v in info.values() if isinstance(v, dict)]
    for entry in found:
        if entry.get("raised_exception"):
            lines = str(entry.get("exception_message") or "exception").splitlines() or [""]
            return lines[0][:200]
    return None


def _example(row, key: str, column: str) -> dict:
    if isinstance(row, dict):
        return {key: _plain(row.get(key)), column: _plain(row.get(column))}
    return {key: _plain(row)}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float) and value != value:  # a NULL that pandas turned into NaN
        return None
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    return str(value)


# --- the report ---------------------------------------------------------------------------------

def report_dir(settings: Settings, suite_name: str) -> Path:
    return settings.home_dir / "quality" / suite_name


# Reports kept per suite under runs/: each check evaluation in Dagster links its own, and a
# suite checked every hour keeps about two days of them.
KEEP_REPORTS = 50


def write_report(settings: Settings, spec: SuiteSpec, result: QualityResult, outcome) -> Path:
    """HOME/quality/<suite>/runs/<UTC time>.html, self-contained (nothing fetched) - the path
    returned, which the check links - copied to index.html (the latest) beside result.json.
    The oldest reports beyond KEEP_REPORTS are removed."""
    folder = report_dir(settings, spec.name)
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    validated = datetime.now(UTC)
    rows = []
    for r in (outcome.results if outcome is not None else []):
        cfg = r.expectation_config
        failure = None if r.success else _failure(r, spec.key)
        kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("column", "batch_id")}
        detail = ""
        if failure is not None:
            detail = (f"{failure.unexpected_count} unexpected rows; "
                      f"{_examples_text(failure.examples)}" if failure.unexpected_count
                      is not None else f"observed {failure.observed}")
        rows.append((r.success, cfg.type, cfg.kwargs.get("column") or "",
                     cfg.description or json.dumps(_plain(kwargs), default=str)[:200], detail))
    for f in result.failures if outcome is None else ():
        rows.append((False, f.expectation, f.column or "", f.description, f.observed or ""))
    body = "\n".join(
        f"<tr class={'ok' if ok else 'bad'}><td>{'pass' if ok else 'FAIL'}</td>"
        f"<td>{html.escape(t)}</td><td>{html.escape(c)}</td><td>{html.escape(d)}</td>"
        f"<td>{html.escape(x)}</td></tr>" for ok, t, c, d, x in rows)
    verdict = "passed" if result.success else "FAILED"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(spec.name)}: {verdict}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
tr.bad td{{background:#fde8e8}}tr.ok td:first-child{{color:#17692f}}</style></head>
<body><h1>{html.escape(spec.name)}: {verdict}</h1>
<p>{html.escape(spec.description)}</p>
<p>{result.rows} rows, {result.evaluated} expectations, {len(result.failures)} failed;
validated {validated:%Y-%m-%d %H:%M:%S} UTC; blocking:
{'yes' if spec.blocking else 'no (warn)'}. Money is compared as exact decimal text and
warehouse-computed residuals, never as floats.</p>
<table><tr><th></th><th>expectation</th><th>column</th><th>what</th><th>result</th></tr>
{body}
</table></body></html>
"""
    this_run = folder / "runs" / f"{validated:%Y%m%dT%H%M%S.%fZ}.html"
    _atomic_write(this_run, page)
    _atomic_write(folder / "index.html", page)
    if outcome is not None:
        _atomic_write(folder / "result.json",
                      json.dumps(outcome.to_json_dict(), indent=1, default=str))
    for old in sorted((folder / "runs").glob("*.html"))[:-KEEP_REPORTS]:
        old.unlink(missing_ok=True)
    return this_run


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
