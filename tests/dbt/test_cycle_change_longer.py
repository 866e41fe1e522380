"""A merchant's settlement cycle and an agent's statement cycle changed to a longer one (daily ->
monthly on 12 March, statements closed through 9 March): no closed statement moves. Before, a
payment of 12 March took its monthly period's first day, 1 March, where the closed daily
statement of 1 March starts, and went onto it; a retroactive price change's corrections
followed it. Now the new cycle's first statement starts on the first day no run has closed
(10 March) and runs to the month's end; a payment of a closed day seen only now is late there.
On DuckDB and Postgres. (A module of its own: the warehouse fixtures are per module.)"""

from __future__ import annotations

from datetime import date

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_cycle_change import _load_first
from tests.dbt.test_cycle_change_mid_period import _build_as_of
from tests.dbt.test_settlement import _insert, _payment_rows

DAILY = [("pd1", "mer_c", 10_000, "USD", "2024-03-01 10:00:00"),
         ("pd2", "mer_c", 20_000, "USD", "2024-03-05 10:00:00")]
MONTHLY = [("pd3", "mer_c", 50_000, "USD", "2024-03-12 10:00:00"),
           ("pd4", "mer_c", 7_000, "USD", "2024-03-08 10:00:00")]  # of a closed day, seen late


def _set_cycles(warehouse, cycle: str) -> None:
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.merchants SET settlement_cycle = ? WHERE id = ?",
                           [(cycle, "mer_c")])
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.agents SET statement_cycle = ? WHERE id = ?",
                           [(cycle, "agt_c")])


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_cycle_changed_to_a_longer_one_never_moves_a_closed_statement(engine, request,
                                                                        tmp_path_factory,
                                                                        dbt_build):
    warehouse = request.getfixturevalue(f"{engine}_warehouse")
    _load_first(warehouse)
    warehouse.execute_many(f"DELETE FROM {RAW_SCHEMA}.payments WHERE id = ?", [("pc1",)])
    _set_cycles(warehouse, "daily")
    _insert(warehouse, "payments", _payment_rows(DAILY))
    first = _build_as_of(warehouse, tmp_path_factory, dbt_build, "longer1", "2024-03-10")
    closed = {sid: row for sid, row in first.items() if row["status"] == "closed"}
    assert {"mer_c:USD:2024-03-01", "mer_c:USD:2024-03-05", "agent:agt_c:USD:2024-03-01",
            "agent:agt_c:USD:2024-03-05"} <= set(closed)

    _set_cycles(warehouse, "monthly")
    _insert(warehouse, "payments", _payment_rows(MONTHLY))
    second = _build_as_of(warehouse, tmp_path_factory, dbt_build, "longer2", "2024-03-13")
    for sid, row in closed.items():
        assert second[sid] == row, sid
    lines = {r["payment_id"]: (r["statement_id"], r["is_late"]) for r in warehouse.query(
        "select * from analytics.fct_settlement_statement_lines where payment_id in "
        "('pd3', 'pd4')")}
    assert lines == {"pd3": ("mer_c:USD:2024-03-10", False),
                     "pd4": ("mer_c:USD:2024-03-10", True)}
    for sid in ("mer_c:USD:2024-03-10", "agent:agt_c:USD:2024-03-10"):
        assert (second[sid]["status"], second[sid]["settlement_cycle"],
                second[sid]["period_end"]) == ("open", "monthly", date(2024, 3, 31)), sid

    # a retroactive price change: its corrections go on the open monthly statement
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.prices SET rate_bps = ? WHERE id = ?",
                           [(350, "prc_mer_c")])
    third = _build_as_of(warehouse, tmp_path_factory, dbt_build, "longer3", "2024-03-14")
    for sid, row in closed.items():
        assert third[sid] == row, sid
    corrections = {r["statement_id"] for r in warehouse.query(
        "select * from analytics.fct_settlement_statement_lines where is_correction")}
    assert corrections == {"mer_c:USD:2024-03-10"}
    assert third["mer_c:USD:2024-03-10"] != second["mer_c:USD:2024-03-10"]
