"""Migrations run up and down on SQLite and Postgres; Postgres itself guards the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, text

from warehouse.connections import to_sqlalchemy_pg_url
from warehouse.migrate import downgrade, upgrade

TABLES = {"merchants", "agents", "agent_parents", "channels", "prices", "payments", "refunds",
          "ledger_entries", "idempotency_keys", "outbox_events", "api_keys", "users"}


def test_upgrade_downgrade_upgrade(oltp_url):
    url = to_sqlalchemy_pg_url(oltp_url)
    assert set(inspect(create_engine(url)).get_table_names()) >= TABLES
    downgrade(oltp_url)
    assert not TABLES & set(inspect(create_engine(url)).get_table_names())
    upgrade(oltp_url)
    assert set(inspect(create_engine(url)).get_table_names()) >= TABLES


LEG = ("INSERT INTO ledger_entries (transaction_id, kind, merchant_id, account, currency, "
       "amount_minor, effective_at, created_at) VALUES (:t, 'capture', 'mer_x', :acct, 'USD', "
       ":amt, :at, :at)")


def test_postgres_refuses_an_unbalanced_transaction_at_commit(pg_url):
    upgrade(pg_url)
    engine = create_engine(to_sqlalchemy_pg_url(pg_url))
    at = datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(Exception, match="does not balance"):
        with engine.begin() as conn:
            conn.execute(text(LEG), {"t": "ltx_bad", "acct": "a", "amt": 500, "at": at})
            conn.execute(text(LEG), {"t": "ltx_bad", "acct": "b", "amt": -499, "at": at})
    with engine.begin() as conn:  # a balanced one commits
        conn.execute(text(LEG), {"t": "ltx_ok", "acct": "a", "amt": 500, "at": at})
        conn.execute(text(LEG), {"t": "ltx_ok", "acct": "b", "amt": -500, "at": at})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 2


def test_postgres_ledger_is_append_only(pg_url):
    upgrade(pg_url)
    engine = create_engine(to_sqlalchemy_pg_url(pg_url))
    at = datetime(2026, 11, 20, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text(LEG), {"t": "ltx_1", "acct": "a", "amt": 7, "at": at})
        conn.execute(text(LEG), {"t": "ltx_1", "acct": "b", "amt": -7, "at": at})
    for statement in ("UPDATE ledger_entries SET amount_minor = 8",
                      "DELETE FROM ledger_entries WHERE amount_minor = -7"):
        with pytest.raises(Exception, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
