"""Snapshots of marts that the API serves, published after each pipeline run.

A DuckDB file held read-write by a pipeline run cannot be opened by any other process, so the
API never reads the live DuckDB warehouse: the run copies what the API serves to Parquet files
under HOME/published/ (written to a temporary name, then renamed atomically). On a Postgres
warehouse the API reads the marts directly and nothing is published.
"""

from __future__ import annotations

import os
from pathlib import Path

from warehouse.settings import Settings

PUBLISHED_MARTS = ("fct_settlement_statements", "fct_settlement_statement_lines",
                   "fct_agent_commission_statements", "fct_agent_commission_statement_lines")
MARTS_SCHEMA = "analytics"


def published_path(settings: Settings, mart: str) -> Path:
    return settings.published_dir / f"{mart}.parquet"


def publish_from_duckdb(settings: Settings, connection) -> dict[str, int]:
    """Copy each served mart to Parquet with an atomic rename; returns row counts."""
    settings.published_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for mart in PUBLISHED_MARTS:
        final = published_path(settings, mart)
        tmp = final.with_suffix(f".tmp-{os.getpid()}")
        connection.execute(f"COPY (SELECT * FROM {MARTS_SCHEMA}.{mart}) TO '{tmp}' (FORMAT parquet)")
        os.replace(tmp, final)
        counts[mart] = connection.execute(f"SELECT count(*) FROM {MARTS_SCHEMA}.{mart}").fetchone()[0]
    return counts
