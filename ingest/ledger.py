"""Incremental extract of the API's database into the warehouse's raw schema.

Each table is paged by its cursor column (updated_at, or created_at for the append-only ledger)
from the table's high-water mark minus an overlap window; rows read again are replaced by key, so
a re-run loads nothing twice and a row committed late (a transaction that began before the last
extract) is still picked up. All tables and watermarks are written in one warehouse transaction:
a run that fails halfway leaves the warehouse as it was.

The fast path is Arrow end to end: ADBC reads the source (SQLite or Postgres) into Arrow,
DuckDB scans the record batches as they stream in, and Postgres receives them by binary COPY
(ADBC bulk ingest). From SQLite, reader processes write each table to an Arrow stream file that
this process reads one batch at a time, so its memory holds a batch, not a table.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingest.arrow_types import BATCH_ROWS, retype_null_columns
from ingest.files.schema import create_statements as create_file_tables
from ingest.raw_schema import (
    DERIVED,
    PHYSICAL,
    RAW_SCHEMA,
    RAW_TABLES,
    WATERMARK_TABLE,
    RawTable,
    create_statements,
)
from warehouse.connections import to_libpq_url
from warehouse.settings import Settings

DEFAULT_OVERLAP = timedelta(minutes=5)
# SQLite stores timestamps as text in this form (SQLAlchemy's DateTime on SQLite).
SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class TableExtract:
    table: str
    rows: int
    high_water: datetime | None


@dataclass(frozen=True)
class ExtractResult:
    tables: tuple[TableExtract, ...]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


@dataclass(frozen=True)
class _Read:
    """One table as read from the source: its row count, the largest value of its cursor column
    as the source gives it (None when empty), and `open`, which returns its rows as a fresh
    stream of record batches each time it is called."""

    name: str
    rows: int
    max_cursor: object
    open: Callable[[], pa.RecordBatchReader]


# --- source -----------------------------------------------------------------------------------


def _scratch_dir() -> str | None:
    """Arrow files between the reader processes and this one: RAM-backed /dev/shm when it has
    room, else the default temporary folder."""
    try:
        stats = os.statvfs("/dev/shm")
        if stats.f_bavail * stats.f_frsize > 4 * 1024**3:
            return "/dev/shm"
    except OSError:
        pass
    return None


class _Source:
    """Reads Arrow tables from the API's database: SQLite through a child process (see
    ingest.sqlite_reader), Postgres in process with ADBC."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")

    def read_all(self, requests: list[tuple[RawTable, datetime | None]]) -> Iterator[_Read]:
        """Yield each table as it becomes available."""
        queries, cursors = {}, {table.name: table.cursor for table, _since in requests}
        for table, since in requests:
            cols = ", ".join(self._select(c, t) for c, t in table.columns)
            sql = f"SELECT {cols} FROM {table.name}"
            params: list = []
            if since is not None and self.is_sqlite:
                # A literal we format ourselves from a datetime (the low-level reader binds none).
                sql += f" WHERE {table.cursor} >= '{since.strftime(SQLITE_TS_FORMAT)}'"
            elif since is not None:
                sql += f" WHERE {table.cursor} >= $1"
                params = [since]
            queries[table.name] = (sql, params)
        if self.is_sqlite:
            return self._read_sqlite({name: sql for name, (sql, _p) in queries.items()}, cursors)
        return self._read_postgres(queries, cursors)

    def _read_sqlite(self, queries: dict[str, str], cursors: dict[str, str]) -> Iterator[_Read]:
        """The big tables each in a reader process of their own, side by side (SQLite in WAL
        mode serves concurrent readers); the small ones together. Loading the first results
        overlaps with reading the rest."""
        big = [name for name in ("payments", "ledger_entries") if name in queries]
        groups = [[n for n in queries if n not in big]] + [[n] for n in big]
        with tempfile.TemporaryDirectory(prefix="clearhouse-extract-", dir=_scratch_dir()) as out_dir:
            procs = []
            for i, names in enumerate(g for g in groups if g):
                request = Path(out_dir) / f"request-{i}.json"
                request.write_text(json.dumps({
                    "database": self.url.removeprefix("sqlite:///"), "out_dir": out_dir,
                    "queries": {name: queries[name] for name in names},
                    "cursors": {name: cursors[name] for name in names},
                    "batch_rows": BATCH_ROWS}))
                procs.append((names, subprocess.Popen(
                    [sys.executable, "-m", "ingest.sqlite_reader", str(request)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
            try:
                for names, proc in procs:
                    _out, err = proc.communicate()
                    if proc.returncode != 0:
                        raise RuntimeError(f"reading the SQLite database failed: {err[-2000:]}")
                    for name in names:
                        path = Path(out_dir) / f"{name}.arrows"
                        meta = json.loads(path.with_suffix(".json").read_text())
                        # Read, not mapped: a mapped file's pages would all count in this
                        # process's memory by the end of the scan.
                        yield _Read(name, meta["rows"], meta["max_cursor"],
                                    functools.partial(_open_stream, path))
                        # Loaded: delete it, giving its memory back at once (the scratch folder
                        # is RAM-backed; a 10M-payment ledger fills 4.4 GB there).
                        path.unlink()
            finally:
                for _names, proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()

    def _read_postgres(self, queries: dict, cursors: dict[str, str]) -> Iterator[_Read]:
        import adbc_driver_postgresql.dbapi as adbc

        tables = {}
        with closing(adbc.connect(to_libpq_url(self.url))) as conn:
            with closing(conn.cursor()) as cur:
                cur.execute("SET TIME ZONE 'UTC'")  # naive watermarks are UTC
                # One snapshot for all tables, so ledger legs and payments agree.
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                for name, (sql, params) in queries.items():
                    cur.execute(sql, tuple(params))
                    tables[name] = cur.fetch_arrow_table()
            conn.rollback()
        for name, table in tables.items():
            table = retype_null_columns(table)
            yield _Read(name, table.num_rows,
                        pc.max(table.column(cursors[name])).as_py() if table.num_rows else None,
                        functools.partial(table.to_reader, max_chunksize=BATCH_ROWS))

    def _select(self, column: str, kind: str) -> str:
        if column in DERIVED:
            return f"{DERIVED[column]['sqlite' if self.is_sqlite else 'postgres']} AS {column}"
        if self.is_sqlite:
            return column
        if kind in ("money", "json"):
            return f"{column}::text AS {column}"  # exact digits; the warehouse casts back
        if kind == "ts":
            return f"({column} AT TIME ZONE 'UTC') AS {column}"
        return column


# --- warehouse writers -------------------------------------------------------------------------


def _open_stream(path: Path) -> pa.RecordBatchReader:
    return pa.ipc.open_stream(pa.OSFile(str(path)))


def _cast_list(table: RawTable, engine: str, source: str) -> str:
    types = PHYSICAL[engine]
    return ", ".join(f"CAST({source}.{c} AS {types[t]})" for c, t in table.columns)


class _DuckDBWriter:
    engine = "duckdb"

    def __init__(self, path: Path, memory_limit: str | None = None):
        import duckdb

        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = duckdb.connect(str(path), config=(
            {"memory_limit": memory_limit} if memory_limit else {}))
        # The file tables too, so dbt finds every source even before the first file lands.
        for stmt in create_statements("duckdb") + create_file_tables("duckdb"):
            self.conn.execute(stmt)
        self.conn.execute("BEGIN TRANSACTION")

    def watermarks(self) -> dict[str, datetime]:
        rows = self.conn.execute(f"SELECT table_name, high_water FROM {RAW_SCHEMA}.{WATERMARK_TABLE}")
        return {name: hw for name, hw in rows.fetchall() if hw is not None}

    def load(self, table: RawTable, read: _Read) -> None:
        key_type = PHYSICAL["duckdb"][dict(table.columns)[table.key]]
        # Rows read again replace theirs; an empty table (the first load) has none to replace,
        # and its rows are then streamed once.
        if self.conn.execute(f"SELECT EXISTS (FROM {RAW_SCHEMA}.{table.name})").fetchall()[0][0]:
            self.conn.register("extract_batch", read.open())
            self.conn.execute(
                f"DELETE FROM {RAW_SCHEMA}.{table.name} WHERE {table.key} IN "
                f"(SELECT CAST({table.key} AS {key_type}) FROM extract_batch)")
            self.conn.unregister("extract_batch")
        self.conn.register("extract_batch", read.open())
        self.conn.execute(
            f"INSERT INTO {RAW_SCHEMA}.{table.name} ({', '.join(table.column_names)}, _extracted_at) "
            f"SELECT {_cast_list(table, 'duckdb', 'extract_batch')}, now()::TIMESTAMP FROM extract_batch")
        self.conn.unregister("extract_batch")

    def set_watermark(self, table: str, high_water: datetime | None, rows: int) -> None:
        self.conn.execute(f"DELETE FROM {RAW_SCHEMA}.{WATERMARK_TABLE} WHERE table_name = ?", [table])
        self.conn.execute(f"INSERT INTO {RAW_SCHEMA}.{WATERMARK_TABLE} VALUES (?, ?, ?, now()::TIMESTAMP)",
                          [table, high_water, rows])

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class _PostgresWriter:
    engine = "postgres"

    def __init__(self, url: str):
        import adbc_driver_postgresql.dbapi as adbc

        self.conn = adbc.connect(to_libpq_url(url))  # autocommit off: one transaction
        with closing(self.conn.cursor()) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('clearhouse.ingest.ledger'))")
            for stmt in create_statements("postgres") + create_file_tables("postgres"):
                cur.execute(stmt)

    def watermarks(self) -> dict[str, datetime]:
        with closing(self.conn.cursor()) as cur:
            cur.execute(f"SELECT table_name, high_water FROM {RAW_SCHEMA}.{WATERMARK_TABLE}")
            return {name: hw for name, hw in cur.fetchall() if hw is not None}

    def load(self, table: RawTable, read: _Read) -> None:
        stage = f"stage_{table.name}"
        with closing(self.conn.cursor()) as cur:
            # Arrow -> binary COPY; every column staged as its Arrow type, cast on insert.
            cur.adbc_ingest(stage, read.open(), mode="replace", temporary=True)
            key_type = PHYSICAL["postgres"][dict(table.columns)[table.key]]
            cur.execute(
                f"DELETE FROM {RAW_SCHEMA}.{table.name} t USING {stage} s "
                f"WHERE t.{table.key} = CAST(s.{table.key} AS {key_type})")
            cur.execute(
                f"INSERT INTO {RAW_SCHEMA}.{table.name} ({', '.join(table.column_names)}, _extracted_at) "
                f"SELECT {_cast_list(table, 'postgres', 's')}, "
                f"(now() AT TIME ZONE 'UTC') FROM {stage} s")
            cur.execute(f"DROP TABLE {stage}")

    def set_watermark(self, table: str, high_water: datetime | None, rows: int) -> None:
        with closing(self.conn.cursor()) as cur:
            cur.execute(f"DELETE FROM {RAW_SCHEMA}.{WATERMARK_TABLE} WHERE table_name = $1", (table,))
            cur.execute(f"INSERT INTO {RAW_SCHEMA}.{WATERMARK_TABLE} VALUES "
                        "($1, $2, $3, now() AT TIME ZONE 'UTC')", (table, high_water, rows))

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def open_writer(settings: Settings):
    if settings.warehouse_engine == "duckdb":
        return _DuckDBWriter(settings.duckdb_path, settings.duckdb_memory_limit)
    return _PostgresWriter(settings.warehouse_target)


# --- the extract --------------------------------------------------------------------------------


def _high_water(max_cursor: object) -> datetime | None:
    """The cursor's largest value as a datetime (SQLite gives its text form)."""
    if isinstance(max_cursor, str):
        return (datetime.strptime(max_cursor, SQLITE_TS_FORMAT) if "." in max_cursor
                else datetime.fromisoformat(max_cursor))
    if max_cursor is None or isinstance(max_cursor, datetime):
        return max_cursor
    raise TypeError(f"a cursor column gave {max_cursor!r}, not a timestamp")


def extract_ledger(settings: Settings, *, overlap: timedelta = DEFAULT_OVERLAP,
                   writer=None) -> ExtractResult:
    """Bring every raw table up to date; returns per-table row counts and high-water marks."""
    started = time.perf_counter()
    source = _Source(settings.oltp_url)
    own_writer = writer is None
    writer = writer or open_writer(settings)
    results = []
    try:
        marks = writer.watermarks()
        requests = [(t, marks[t.name] - overlap if t.name in marks else None) for t in RAW_TABLES]
        by_name = {t.name: t for t in RAW_TABLES}
        for read in source.read_all(requests):
            table = by_name[read.name]
            if read.rows:
                writer.load(table, read)
            high_water = max(filter(None, [marks.get(table.name), _high_water(read.max_cursor)]),
                             default=None)
            writer.set_watermark(table.name, high_water, read.rows)
            results.append(TableExtract(table.name, read.rows, high_water))
        writer.commit()
        results.sort(key=lambda r: [t.name for t in RAW_TABLES].index(r.table))
    finally:
        if own_writer:
            writer.close()
    return ExtractResult(tuple(results), time.perf_counter() - started)
