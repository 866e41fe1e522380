"""A merchant's settlement cycle and an agent's statement cycle changed in the middle of a
period (monthly -> daily on 12 March): a closed daily statement never moves when the old cycle's
statement, still open, changes. On DuckDB and Postgres. (A module of its own: the warehouse
fixtures are per module, and this scenario needs empty ones.)"""

from __future__ import annotations

import json

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_cycle_change import _load_first
from tests.dbt.test_settlement import _insert, _payment_rows

MID_FIRST = [("pm1", "mer_c", 10_000, "USD", "2024-03-05 10:00:00")]
MID_SECOND = [("pm2", "mer_c", 20_000, "USD", "2024-03-12 10:00:00")]


def _build_as_of(warehouse, tmp_path_factory, dbt_build, name: str, as_of: str) -> dict:
    """Build as of a day; every merchant and agent statement (agents' ids prefixed "agent:")
    with its status, cycle, period and balances."""
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"cycle_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": as_of, "recon_as_of": as_of})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    fields = ("status", "settlement_cycle", "period_start", "period_end",
              "opening_balance_minor", "closing_balance_minor")
    merchant = {r["statement_id"]: {k: r[k] for k in fields} for r in warehouse.query(
        "select * from analytics.fct_settlement_statements")}
    agent = {"agent:" + r["statement_id"]: {k: r[k] for k in fields} for r in warehouse.query(
        "select * from analytics.fct_agent_commission_statements")}
    return {**merchant, **agent}


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_cycle_changed_mid_period_never_moves_a_closed_statement(engine, request,
                                                                   tmp_path_factory, dbt_build):
    """Monthly -> daily on 12 March: the March monthly statement (pm1, 5 March) stays open to
    the 31st while the daily statement of 12 March (pm2) closes on the 13th. A later change to
    the open monthly statement (a price corrected back to 1 March) must not move the closed
    daily one: statements chain in order of their last day, so its opening does not carry the
    month that is still open (settlement.md: a closed period never changes)."""
    warehouse = request.getfixturevalue(f"{engine}_warehouse")
    _load_first(warehouse)
    warehouse.execute_many(f"DELETE FROM {RAW_SCHEMA}.payments WHERE id = ?", [("pc1",)])
    _insert(warehouse, "payments", _payment_rows(MID_FIRST))
    _build_as_of(warehouse, tmp_path_factory, dbt_build, "1", "2024-03-12")
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.merchants SET settlement_cycle = ? WHERE id = ?",
                           [("daily", "mer_c")])
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.agents SET statement_cycle = ? WHERE id = ?",
                           [("daily", "agt_c")])
    _insert(warehouse, "payments", _payment_rows(MID_SECOND))
    second = _build_as_of(warehouse, tmp_path_factory, dbt_build, "2", "2024-03-14")
    daily = ("mer_c:USD:2024-03-12", "agent:agt_c:USD:2024-03-12")
    assert [second[sid]["status"] for sid in daily] == ["closed", "closed"]
    assert second["mer_c:USD:2024-03-01"]["status"] == "open"
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.prices SET rate_bps = ? WHERE id = ?",
                           [(350, "prc_mer_c")])
    third = _build_as_of(warehouse, tmp_path_factory, dbt_build, "3", "2024-03-15")
    assert third["mer_c:USD:2024-03-01"] != second["mer_c:USD:2024-03-01"]  # it did change
    for sid in daily:
        assert third[sid] == second[sid], sid
        assert int(second[sid]["opening_balance_minor"]) == 0  # nothing ended before it
