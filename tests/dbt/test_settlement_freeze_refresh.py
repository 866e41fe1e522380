"""`dbt build --full-refresh` keeps the freeze (settlement.md: a closed statement never changes).
The models that are the record of what was closed (the runs, the placements, the frozen lines,
the quiet closes, the statement closes, and the agents' placements and frozen lines) carry
full_refresh=false: a full refresh rebuilds everything else but never forgets a close. A day
closes; an input of the closed day changes (a retroactive price, a late capture, the merchant's
T+N); the next day's build with --full-refresh leaves the closed statements exactly as they were
and books the change in the open period, as a build without --full-refresh does. On DuckDB and
Postgres. (A module of its own: the warehouse fixtures are per module.)"""

from __future__ import annotations

import json
from datetime import date

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_cycle_change import _load_first
from tests.dbt.test_settlement import _insert, _payment_rows, settlement_snapshot
from warehouse.money import fee_minor

DAY_1, DAY_2 = "2024-03-02", "2024-03-03"  # day 1 closes 03-01; day 2 closes 03-02
# _load_first: mer_c (USD, T+0, price 250 bps + 25) under agt_c (cost 200 bps + 20), one capture
# pc1 of 10,000 on 03-01; both run daily cycles here.
PC1, LATE = 10_000, ("pl1", "mer_c", 4_000, "USD", "2024-03-01 20:00:00")
OLD_PRICE, NEW_PRICE, AGENT_COST = (250, 25), (300, 30), (200, 20)


def _build(warehouse, tmp_path_factory, dbt_build, name: str, as_of: str, *extra: str) -> dict:
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"freeze_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": as_of, "recon_as_of": as_of}),
                      *extra))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    return settlement_snapshot(warehouse)


def _change_the_closed_day(warehouse) -> None:
    """After day 1: the price is corrected retroactively, a capture of 03-01 arrives late and
    the merchant moves from T+0 to T+2."""
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.prices SET rate_bps = ?, fixed_minor = ? WHERE id = ?",
        [(*NEW_PRICE, "prc_mer_c")])
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.merchants SET settlement_delay_days = ? WHERE id = ?",
        [(2, "mer_c")])
    _insert(warehouse, "payments", _payment_rows([LATE]))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def refreshed(request, tmp_path_factory, dbt_build):
    warehouse = request.getfixturevalue(f"{request.param}_warehouse")
    _load_first(warehouse)
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.merchants SET settlement_cycle = ? WHERE id = ?",
                           [("daily", "mer_c")])
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.agents SET statement_cycle = ? WHERE id = ?",
                           [("daily", "agt_c")])
    first = _build(warehouse, tmp_path_factory, dbt_build, "1", DAY_1)
    _change_the_closed_day(warehouse)
    second = _build(warehouse, tmp_path_factory, dbt_build, "2", DAY_2, "--full-refresh")
    again = _build(warehouse, tmp_path_factory, dbt_build, "3", DAY_2)  # no --full-refresh
    return first, second, again


def test_a_full_refresh_keeps_closed_statements_and_books_changes_in_the_open_period(refreshed):
    first, second, again = refreshed
    closed = "mer_c:USD:2024-03-01"
    assert first["statements"][closed]["status"] == "closed"
    # the closed statement, its lines and its payout day are exactly as they were at the close
    assert second["statements"][closed] == first["statements"][closed]
    assert second["statements"][closed]["settles_on"] == date(2024, 3, 1)  # T+0 when it closed
    assert (int(second["statements"][closed]["fees_minor"]),
            int(second["statements"][closed]["closing_balance_minor"])) == \
        (fee_minor(PC1, *OLD_PRICE), PC1 - fee_minor(PC1, *OLD_PRICE))
    assert {k: r for k, r in second["lines"].items() if r["statement_id"] == closed} == \
        {k: r for k, r in first["lines"].items() if r["statement_id"] == closed}

    # the changes land in the period open at day 2, as adjustments naming what they correct
    open_lines = {k: r for k, r in second["lines"].items()
                  if r["statement_id"] == "mer_c:USD:2024-03-03"}
    fee_delta = fee_minor(PC1, *NEW_PRICE) - fee_minor(PC1, *OLD_PRICE)
    late_fee = fee_minor(LATE[2], *NEW_PRICE)
    assert {k: (r["line_type"], r["is_late"], r["is_correction"], int(r["gross_minor"]),
                int(r["fee_minor"])) for k, r in open_lines.items()} == {
        "correction:payment:pc1:1": ("adjustment", True, True, 0, fee_delta),
        "payment:pl1": ("adjustment", True, False, LATE[2], late_fee)}
    statement = second["statements"]["mer_c:USD:2024-03-03"]
    assert (statement["status"], int(statement["adjustments_minor"])) == \
        ("open", fee_delta - (LATE[2] - late_fee))
    assert statement["settles_on"] == date(2024, 3, 5)  # the new T+2 applies to open ones

    # the agent's closed commission statement stays; its changes go on its open period too
    agent_closed = "agt_c:USD:2024-03-01"
    assert second["agent_statements"][agent_closed] == first["agent_statements"][agent_closed]
    assert {k: r for k, r in second["agent_lines"].items() if k[0] == agent_closed} == \
        {k: r for k, r in first["agent_lines"].items() if k[0] == agent_closed}

    def markup(amount, price):
        return fee_minor(amount, *price) - fee_minor(amount, *AGENT_COST)

    agent_open = sorted((r["line_id"], r["line_type"], int(r["net_minor"]))
                        for (sid, _), r in second["agent_lines"].items()
                        if sid == "agt_c:USD:2024-03-03")
    assert agent_open == sorted([
        ("correction:pc1:agt_c:1:1", "adjustment",
         markup(PC1, NEW_PRICE) - markup(PC1, OLD_PRICE)),
        ("pl1:agt_c:1", "adjustment", markup(LATE[2], NEW_PRICE))])

    # and a build without --full-refresh afterwards finds nothing to change
    assert again == second
