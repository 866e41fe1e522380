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

