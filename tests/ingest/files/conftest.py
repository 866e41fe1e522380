"""Fixture path to the real sample files in ../shared/data (read-only; never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_paths import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared sample files are missing at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(params=["duckdb", "postgres"])
def settings(request, make_settings):
    """Settings whose warehouse is DuckDB, then Postgres (a database of its own, dropped after)."""
    if request.param == "duckdb":
        yield make_settings()
        return
    from tests.conftest import create_pg_database, drop_pg_database, require_postgres

    require_postgres()
    url = create_pg_database("ch_files")
    try:
        yield make_settings(warehouse_url=url)
    finally:
        drop_pg_database(url)
