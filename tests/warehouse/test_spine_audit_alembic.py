"""Spine audit: the API database's schema as Alembic sees it, on SQLite and Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from warehouse.connections import to_sqlalchemy_pg_url
from warehouse.migrate import alembic_config, downgrade, upgrade
from warehouse.models import Base

REPO = Path(__file__).resolve().parents[2]


def test_models_and_migrations_agree(oltp_url):
    """What `alembic revision --autogenerate` would write: nothing, on either engine."""
    engine = create_engine(to_sqlalchemy_pg_url(oltp_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
    command.check(alembic_config(oltp_url))  # `alembic check` agrees


def test_round_trip_keeps_the_postgres_guards(pg_url):
    upgrade(pg_url)
    downgrade(pg_url)
    upgrade(pg_url)
    engine = create_engine(to_sqlalchemy_pg_url(pg_url))
    at = datetime(2026, 11, 20, tzinfo=UTC)
    leg = ("INSERT INTO ledger_entries (transaction_id, kind, merchant_id, account, currency, "
           "amount_minor, effective_at, created_at) VALUES (:t, 'capture', 'mer_x', :a, :c, "
           ":m, :at, :at)")
    try:
        # balanced in total but not per currency: still refused at commit
        with pytest.raises(Exception, match="does not balance"):
            with engine.begin() as conn:
                conn.execute(text(leg), {"t": "t1", "a": "a", "c": "USD", "m": 5, "at": at})
                conn.execute(text(leg), {"t": "t1", "a": "b", "c": "EUR", "m": -5, "at": at})
        with pytest.raises(Exception, match="does not balance"):  # one leg alone
            with engine.begin() as conn:
                conn.execute(text(leg), {"t": "t2", "a": "a", "c": "USD", "m": 2**70,
                                         "at": at})
    finally:
        engine.dispose()


def test_the_alembic_command_works_from_the_repository(tmp_path):
    """`alembic upgrade head` in the repository migrates CLEARHOUSE_DATABASE_URL's database."""
    db = tmp_path / "a.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARHOUSE_")}
    env |= {"CLEARHOUSE_DATABASE_URL": f"sqlite:///{db}", "CLEARHOUSE_HOME": str(tmp_path)}
    alembic = [sys.executable, "-m", "alembic"]
    for argv in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"], ["check"]):
        result = subprocess.run([*alembic, *argv], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
