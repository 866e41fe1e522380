"""Snapshots of marts that the API serves, published after each pipeline run.

A DuckDB file held read-write by a pipeline run cannot be opened by any other process, so the
API never reads the live DuckDB warehouse: the run copies what the API serves to Parquet files
under HOME/published/. On a Postgres warehouse the API reads the marts directly and nothing is
published.

A download reads several marts (a statement's head, then its lines): all of them must come from
one run. Each run therefore publishes a new version folder (`published/v<UTC time>-<pid>/`, built
under a temporary name and renamed into place whole), then swaps the one-line pointer
`published/CURRENT` to it (an atomic rename). A request pins the version once (`pin`) and reads
every mart from it; the newest KEEP_VERSIONS versions are kept, so a request still reading the
previous one finishes on it.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from warehouse.settings import Settings

PUBLISHED_MARTS = ("fct_settlement_statements", "fct_settlement_statement_lines",
                   "fct_agent_commission_statements", "fct_agent_commission_statement_lines")
MARTS_SCHEMA = "analytics"
CURRENT = "CURRENT"
KEEP_VERSIONS = 3


def current_snapshot(settings: Settings) -> Path:
    """The folder of the newest complete publication (the flat published/ folder of a home
    published before versions existed)."""
    try:
        version = (settings.published_dir / CURRENT).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return settings.published_dir
    return settings.published_dir / version


def pin(settings: Settings) -> Settings:
    """Settings whose reads all come from the version current now (one request's view)."""
    pinned = settings.model_copy()
    pinned._published_snapshot = current_snapshot(settings)
    return pinned


def published_path(settings: Settings, mart: str) -> Path:
    snapshot = settings._published_snapshot or current_snapshot(settings)
    return snapshot / f"{mart}.parquet"


def publish_from_duckdb(settings: Settings, connection) -> dict[str, int]:
    """Copy each served mart to Parquet in a new version folder, then point CURRENT at it;
    returns row counts."""
    root = settings.published_dir
    root.mkdir(parents=True, exist_ok=True)
    version = f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    building = root / f".{version}.tmp"  # dot names are never a version
    building.mkdir()
    counts = {}
    for mart in PUBLISHED_MARTS:
        connection.execute(f"COPY (SELECT * FROM {MARTS_SCHEMA}.{mart}) "
                           f"TO '{building / (mart + '.parquet')}' (FORMAT parquet)")
        counts[mart] = connection.execute(f"SELECT count(*) FROM {MARTS_SCHEMA}.{mart}").fetchone()[0]
    os.replace(building, root / version)
    pointer = root / f".{CURRENT}.{os.getpid()}.tmp"
    pointer.write_text(version + "\n", encoding="ascii")
    os.replace(pointer, root / CURRENT)
    _prune(root, keep=version)
    return counts


def _prune(root: Path, keep: str) -> None:
    """Remove versions but the newest KEEP_VERSIONS (never `keep`), and the flat files of the
    layout before versions."""
    versions = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v"))
    for name in versions[:-KEEP_VERSIONS]:
        if name != keep:
            shutil.rmtree(root / name, ignore_errors=True)
    for mart in PUBLISHED_MARTS:
        (root / f"{mart}.parquet").unlink(missing_ok=True)
