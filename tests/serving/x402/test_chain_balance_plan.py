"""A sender's balance is a sum over the logs it received, computed in every paid call (the fast
path's claim and settle, and chain.received on the general path). On Postgres the sum must be
answered by the covering recipient index (live logs only, migration 0015): with the plain
index, bench/x402.py's databases planned it through the authorization index and scanned every
log of the asset, so each paid call grew slower as the chain grew. The index's predicate is
`NOT removed`; a query that spells the condition `removed IS false` cannot use it (checked: that
spelling gave the authorization-index scan here), so both queries are checked as sent."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from serving.x402 import chain, fast_path
from serving.x402.networks import NETWORKS
from warehouse.connections import to_sqlalchemy_pg_url
from warehouse.migrate import upgrade

NET = NETWORKS["eip155:84532"]
ASSET = NET.assets[0].address.lower()


def _plan(conn, sql: str, params) -> str:
    return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params).fetchall())


def test_the_balance_sum_uses_the_recipient_index_before_any_analyze(pg_url):
    upgrade(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # As on a busy gateway: 50 payers got tokens from the faucet, then paid one merchant
        # 20,000 times; no ANALYZE, so the planner's statistics still describe the empty table
        # the migration created.
        conn.execute(
            "INSERT INTO sim_chain_logs (network, asset, block_number, block_timestamp, tx_hash,"
            " log_index, from_address, to_address, value, nonce, removed, created_at) "
            "SELECT %s, %s, i, now(), 'tx' || i, 0, "
            "CASE WHEN i <= 50 THEN 'zero' ELSE 'payer' || (i %% 50) END, "
            "CASE WHEN i <= 50 THEN 'payer' || (i %% 50) ELSE 'merchant' END, "
            "CASE WHEN i <= 50 THEN 1000000 ELSE 1 END, "
            "CASE WHEN i <= 50 THEN NULL ELSE 'nonce' || i END, false, now() "
            "FROM generate_series(1, 20050) AS i", (NET.caip2, ASSET))
        fast_sql = "SELECT " + fast_path._SUM_RECEIVED
        plan = _plan(conn, fast_sql, (NET.caip2, ASSET, "payer5"))
        assert "ix_sim_chain_logs_recipient" in plan, plan

        # The general path's query, as SQLAlchemy sends it.
        engine = create_engine(to_sqlalchemy_pg_url(pg_url))
        sent: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _cur, sql, params, _ctx, _many: sent.append((sql, params)))
        try:
            with Session(engine) as session:
                assert chain.received(session, NET, ASSET, "payer5") == 1000000
        finally:
            engine.dispose()
        ((sql, params),) = sent
        plan = _plan(conn, sql, params)
        assert "ix_sim_chain_logs_recipient" in plan, plan
