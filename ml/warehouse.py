"""The fraud models' reads and writes in the warehouse (DuckDB or Postgres).

Reads: payments in the payment event layout from raw.payments (the latest extracted version of
each payment) and fraud labels: raw.fraud_reports (current rows: not superseded) and the
chargebacks on PSP settlement files (raw.psp_lines). Write:
analytics.fct_fraud_scores, replaced whole in one transaction (a re-run gives the same table).
Arrow in and out: a million payments move without a Python row loop.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from ingest.files.warehouse_io import DuckDBFiles, PostgresFiles, open_files_writer
from ingest.raw_schema import create_statements
from ml.payment_features import EVENT_COLUMNS, EVENT_SCHEMA, LABEL_SCHEMA
from warehouse.settings import Settings

_PAYMENTS = """
SELECT id AS payment_id, created_at, merchant_id, payment_method_type AS method,
       CAST(amount_minor AS BIGINT) AS amount_minor, currency, customer_id, card_fingerprint,
       customer_ip, device_id, customer_geo AS geo, status,
       CASE WHEN status = 'failed' THEN COALESCE(failed_at, created_at) END AS failed_at
FROM (SELECT p.*, row_number() OVER (PARTITION BY id ORDER BY updated_at DESC,
                                     _extracted_at DESC) AS version
      FROM raw.payments p) latest
WHERE version = 1 {where}
ORDER BY created_at, id
"""
# Labels: the current fraud reports, and every chargeback on a channel's PSP settlement file
# (record_type 'chargeback', merchant_reference = our payment id). A settlement file for day D
# is issued after D, so a chargeback counts as known from D + 1 day (its transaction time when
# the file has no date): training at a cut-off never sees one the team could not have seen.
_LABELS = """
SELECT payment_id, kind, reported_at FROM raw.fraud_reports WHERE superseded_by IS NULL
UNION ALL
SELECT merchant_reference, 'chargeback',
       COALESCE(CAST(settlement_date AS TIMESTAMP) + INTERVAL '1 day', transaction_at)
FROM raw.psp_lines
WHERE record_type = 'chargeback' AND superseded_by IS NULL AND merchant_reference IS NOT NULL
ORDER BY 3, 1, 2
"""

SCORES_TABLE = "analytics.fct_fraud_scores"
SCORES_COLUMNS = {"payment_id": "TEXT", "merchant_id": "TEXT", "created_at": "TIMESTAMP",
                  "score": "INTEGER", "decision": "TEXT", "reasons": "TEXT",
                  "model_version": "TEXT", "scored_at": "TIMESTAMP"}
_POLARS: dict[str, pl.DataType] = {"TEXT": pl.Utf8(), "TIMESTAMP": pl.Datetime("us", "UTC"),
                                    "INTEGER": pl.Int32()}
NO_SCORES = pl.DataFrame(schema={name: _POLARS[kind] for name, kind in SCORES_COLUMNS.items()})


def open_warehouse(settings: Settings) -> DuckDBFiles | PostgresFiles:
    """The warehouse with the raw tables in place (a model may train before the first
    extract)."""
    writer = open_files_writer(settings)
    try:
        for stmt in create_statements(writer.engine):
            writer.execute(stmt)
        if writer.engine == "postgres":
            writer.commit()
    except BaseException:
        writer.close()
        raise
    return writer


def _arrow(writer: DuckDBFiles | PostgresFiles, sql: str, params: tuple = ()) -> pa.Table:
    if isinstance(writer, DuckDBFiles):
        return writer.conn.sql(sql, params=list(params) or None).to_arrow_table()
    with closing(writer.conn.cursor()) as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def _utc(frame: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """Warehouse timestamps are naive UTC: label them, and give every column its type."""
    return frame.with_columns(
        [pl.col(c).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
         if t == pl.Datetime("us", "UTC") else pl.col(c).cast(t) for c, t in schema.items()])


def read_payments(writer, before: datetime | None = None,
                  since: datetime | None = None) -> pl.DataFrame:
    """Payments created in [since, before) (either bound optional), event layout."""
    clauses, params = [], []
    for op, bound in ((">=", since), ("<", before)):
        if bound is not None:
            params.append(bound.replace(tzinfo=None))
            clauses.append(f"AND created_at {op} ${len(params)}")
    table = _arrow(writer, _PAYMENTS.format(where=" ".join(clauses)), tuple(params))
    frame = pl.DataFrame(table) if table.num_rows else pl.DataFrame(schema=EVENT_SCHEMA)
    return _utc(frame, EVENT_SCHEMA).select(EVENT_COLUMNS)


def payments_span(writer) -> tuple[datetime, datetime] | None:
    """When raw.payments' first and last payments were created (UTC); None when it is empty."""
    first, last = _arrow(writer, "SELECT min(created_at), max(created_at) FROM raw.payments"
                         ).to_pylist()[0].values()
    return None if first is None else (first.replace(tzinfo=UTC), last.replace(tzinfo=UTC))


def read_labels(writer) -> pl.DataFrame:
    table = _arrow(writer, _LABELS)
    frame = pl.DataFrame(table) if table.num_rows else pl.DataFrame(schema=LABEL_SCHEMA)
    return _utc(frame, LABEL_SCHEMA)


def write_scores(writer, scores: pl.DataFrame) -> None:
    """Replace analytics.fct_fraud_scores with `scores` (SCORES_COLUMNS), atomically."""
    rows = scores.select(list(SCORES_COLUMNS)).with_columns(
        pl.col("created_at", "scored_at").dt.replace_time_zone(None)).to_arrow()
    columns = ", ".join(f"{name} {kind}" for name, kind in SCORES_COLUMNS.items())
    select = ", ".join(f"CAST({name} AS {kind})" for name, kind in SCORES_COLUMNS.items())
    writer.begin()
    try:
        writer.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        writer.execute(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
        writer.execute(f"CREATE TABLE {SCORES_TABLE} ({columns})")
        if rows.num_rows:
            if isinstance(writer, DuckDBFiles):
                writer.conn.register("fraud_scores", rows)
                try:
                    writer.execute(f"INSERT INTO {SCORES_TABLE} SELECT {select} FROM fraud_scores")
                finally:
                    writer.conn.unregister("fraud_scores")
            else:
                with closing(writer.conn.cursor()) as cur:
                    cur.adbc_ingest("stage_fraud_scores", rows, mode="replace", temporary=True)
                    cur.execute(f"INSERT INTO {SCORES_TABLE} SELECT {select} "
                                "FROM stage_fraud_scores")
                    cur.execute("DROP TABLE stage_fraud_scores")
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
