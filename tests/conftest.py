"""Shared fixtures: engines (SQLite and Postgres), settings pointing at a temporary HOME.

Postgres tests need the server at 127.0.0.1:5432 (override with CLEARHOUSE_TEST_PG_URL). With
CI=true a missing server fails the run; elsewhere those tests skip with a loud reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from warehouse.settings import Settings, get_settings

PG_ADMIN_URL = os.environ.get("CLEARHOUSE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


_PG_REASON: list[str | None] = []


def require_postgres() -> None:
    if not _PG_REASON:
        _PG_REASON.append(_pg_reason())
    reason = _PG_REASON[0]
    if reason is None:
        return
    message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must run the Postgres tests", pytrace=False)
    pytest.skip(f"!!! SKIPPING POSTGRES TEST: {message}")


def create_pg_database(prefix: str = "ch_test") -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty Postgres database for one test."""
    require_postgres()
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def oltp_url(request, tmp_path) -> Iterator[str]:
    """The API's database on each engine, migrated to head."""
    from warehouse.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'oltp.sqlite'}"
        upgrade(url)
        yield url
        return
    require_postgres()
    url = create_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        from warehouse.connections import _engine_for

        _engine_for.cache_clear()
        drop_pg_database(url)


@pytest.fixture
def make_settings(tmp_path, monkeypatch):
    """Settings for a temporary HOME, set through the environment (CLEARHOUSE_*), so every
    lazy get_settings() in the process sees them."""

    def _make(**overrides) -> Settings:
        values = {"home": tmp_path / "home", "environment": "test", **overrides}
        for name, value in values.items():
            monkeypatch.setenv(f"CLEARHOUSE_{name.upper()}", str(value))
        get_settings.cache_clear()
        settings = get_settings()
        settings.ensure_dirs()
        return settings

    yield _make
    get_settings.cache_clear()


_RECURSION_LIMIT = __import__("sys").getrecursionlimit()


@pytest.fixture(autouse=True)
def _keep_recursion_limit():
    """py_ecc (imported with eth-account by the x402 tests) raises the process's recursion limit
    to 100,000 at import; then a deeply nested JSON file overflows the C stack of the worker
    (a segfault) instead of failing as the parsers expect. Restore the limit after each test."""
    import sys

    yield
    if sys.getrecursionlimit() != _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)
