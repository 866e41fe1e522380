"""A merchant's settlement cycle and an agent's statement cycle changed on the first day of a
period (monthly -> daily on 1 March): a later payment of that day joins the statement already
open from that day, the next day's goes on a daily statement - one statement per owner,
currency and first day, never two with one id. On DuckDB and Postgres."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_settlement import T0, _insert, _payment_rows

AS_OF = date(2024, 3, 1)  # 1 March is open in both builds (an intraday re-run)
FIRST = [("pc1", "mer_c", 10_000, "USD", "2024-03-01 10:00:00")]
SECOND = [("pc2", "mer_c", 20_000, "USD", "2024-03-01 15:00:00"),  # after the change, same day
          ("pc3", "mer_c", 30_000, "USD", "2024-03-02 09:00:00")]


def _load_first(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": "mer_c", "name": "mer_c", "status": "active", "settlement_currency": "USD",
         "settlement_cycle": "monthly", "settlement_delay_days": 0, "agent_id": "agt_c",
         "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "agents", [{"id": "agt_c", "name": "Agent C", "status": "active",
                                   "statement_cycle": "monthly", "created_at": T0,
                                   "updated_at": T0}])
    _insert(warehouse, "agent_parents", [{"id": 1, "agent_id": "agt_c", "parent_id": None,
                                          "valid_from": T0, "valid_to": None, "created_at": T0,
                                          "updated_at": T0}])
    _insert(warehouse, "commission_models", [
        {"id": "cm_c", "agent_id": "agt_c", "currency": "USD", "model": "markup",
         "valid_from": T0, "valid_to": None, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "prices", [
        {"id": f"prc_{subject}", "subject_type": kind, "subject_id": subject, "currency": "USD",
         "rate_bps": bps, "fixed_minor": fixed, "valid_from": T0, "created_at": T0,
         "updated_at": T0}
        for kind, subject, bps, fixed in (("merchant", "mer_c", 250, 25),
                                          ("agent", "agt_c", 200, 20))])
    _insert(warehouse, "channels", [
        {"id": "ch_card", "name": "Card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "payments", _payment_rows(FIRST))


def _change_cycles_and_pay(warehouse) -> None:
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.merchants SET settlement_cycle = ? WHERE id = ?",
                           [("daily", "mer_c")])
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.agents SET statement_cycle = ? WHERE id = ?",
                           [("daily", "agt_c")])
    _insert(warehouse, "payments", _payment_rows(SECOND))


def _build(warehouse, tmp_path_factory, dbt_build, name: str) -> None:
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"cycle_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": AS_OF.isoformat(),
                                            "recon_as_of": AS_OF.isoformat()})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def changed(request, tmp_path_factory, dbt_build):
    warehouse = request.getfixturevalue(f"{request.param}_warehouse")
    _load_first(warehouse)
    _build(warehouse, tmp_path_factory, dbt_build, "first")
    _change_cycles_and_pay(warehouse)
    _build(warehouse, tmp_path_factory, dbt_build, "second")
    return warehouse


def test_a_cycle_changed_on_a_periods_first_day_keeps_one_statement_per_day(changed):
    merchant = {r["statement_id"]: r for r in changed.query(
        "select * from analytics.fct_settlement_statements")}
    assert {sid: (r["settlement_cycle"], r["period_end"], r["payment_count"])
            for sid, r in merchant.items()} == {
        "mer_c:USD:2024-03-01": ("monthly", date(2024, 3, 31), 2),  # pc1 and pc2
        "mer_c:USD:2024-03-02": ("daily", date(2024, 3, 2), 1)}  # pc3: the new cycle
    lines = {r["payment_id"]: r["statement_id"] for r in changed.query(
        "select * from analytics.fct_settlement_statement_lines")}
    assert lines == {"pc1": "mer_c:USD:2024-03-01", "pc2": "mer_c:USD:2024-03-01",
                     "pc3": "mer_c:USD:2024-03-02"}
    agent = {r["statement_id"]: r for r in changed.query(
        "select * from analytics.fct_agent_commission_statements")}
    assert {sid: (r["settlement_cycle"], r["period_end"], r["payment_count"])
            for sid, r in agent.items()} == {
        "agt_c:USD:2024-03-01": ("monthly", date(2024, 3, 31), 2),
        "agt_c:USD:2024-03-02": ("daily", date(2024, 3, 2), 1)}


# --- a cycle changed in the middle of a period ---------------------------------------------------

MID_FIRST = [("pm1", "mer_c", 10_000, "USD", "2024-03-05 10:00:00")]
MID_SECOND = [("pm2", "mer_c", 20_000, "USD", "2024-03-12 10:00:00")]


def _build_as_of(warehouse, tmp_path_factory, dbt_build, name: str, as_of: str) -> dict:
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"mid_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": as_of, "recon_as_of": as_of})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    fields = ("status", "opening_balance_minor", "closing_balance_minor")
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
