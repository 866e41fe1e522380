"""Quiet periods (settlement.md: a statement "for each merchant and cycle period"): a weekly
merchant's weeks without a line get statements carrying the balance; when the merchant moves
to a monthly cycle the closed weeks stay, the weeks go on until the first month starts, then
months; a merchant closed since gets none after the period it was closed in. On
DuckDB and Postgres. (A module of its own: the warehouse fixtures are per module.)"""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.test_cycle_change import _load_first

# _load_first: mer_c settles USD, price 250 bps + 25, one capture pc1 of 10,000 on Friday
# 2024-03-01: F = 250 + 25 = 275, net 9,725 (its week runs Monday 02-26 to Sunday 03-03).
NET = 9_725


def _statements(warehouse, tmp_path_factory, dbt_build, name: str, as_of: str) -> dict:
    proc = dbt_build(warehouse, tmp_path_factory.mktemp(f"quiet_{warehouse.engine}_{name}"),
                     ("--vars", json.dumps({"settlement_as_of": as_of, "recon_as_of": as_of})))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    return {r["statement_id"]: (r["settlement_cycle"], r["period_end"], r["status"],
                                int(r["opening_balance_minor"]), int(r["gross_minor"]),
                                int(r["closing_balance_minor"]))
            for r in warehouse.query("select * from analytics.fct_settlement_statements "
                                     "where merchant_id = 'mer_c'")}


def _set_merchant(warehouse, column: str, value) -> None:
    warehouse.execute_many(f"UPDATE {RAW_SCHEMA}.merchants SET {column} = ? WHERE id = ?",
                           [(value, "mer_c")])


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_quiet_weeks_have_statements_that_a_cycle_change_never_removes(engine, request,
                                                                       tmp_path_factory,
                                                                       dbt_build):
    warehouse = request.getfixturevalue(f"{engine}_warehouse")
    _load_first(warehouse)
    _set_merchant(warehouse, "settlement_cycle", "weekly")
    # as of Wednesday 03-20: the weeks of 03-04 and 03-11 closed without a line, 03-18 is open
    first = _statements(warehouse, tmp_path_factory, dbt_build, "1", "2024-03-20")
    assert first == {
        "mer_c:USD:2024-02-26": ("weekly", date(2024, 3, 3), "closed", 0, 10_000, NET),
        "mer_c:USD:2024-03-04": ("weekly", date(2024, 3, 10), "closed", NET, 0, NET),
        "mer_c:USD:2024-03-11": ("weekly", date(2024, 3, 17), "closed", NET, 0, NET),
        "mer_c:USD:2024-03-18": ("weekly", date(2024, 3, 24), "open", NET, 0, NET)}

    # monthly from now on, as of 04-10: the closed weeks stay as they were; the weeks go on
    # until the first month starts (03-18, the week open before, now closes as it stood, and
    # 03-25), then April (open) on the monthly cycle
    _set_merchant(warehouse, "settlement_cycle", "monthly")
    second = _statements(warehouse, tmp_path_factory, dbt_build, "2", "2024-04-10")
    weeks = dict(first)
    weeks["mer_c:USD:2024-03-18"] = ("weekly", date(2024, 3, 24), "closed", NET, 0, NET)
    weeks["mer_c:USD:2024-03-25"] = ("weekly", date(2024, 3, 31), "closed", NET, 0, NET)
    assert second == {**weeks,
                      "mer_c:USD:2024-04-01": ("monthly", date(2024, 4, 30), "open", NET, 0, NET)}

    # closed on 05-02: May (the period it was closed in) is the last statement; a run in July
    # issues none for June or July, and replaying 04-10 changes nothing closed
    _set_merchant(warehouse, "status", "closed")
    _set_merchant(warehouse, "updated_at", datetime(2024, 5, 2, 9, 0))
    third = _statements(warehouse, tmp_path_factory, dbt_build, "3", "2024-07-15")
    assert third == {**weeks,
                     "mer_c:USD:2024-04-01": ("monthly", date(2024, 4, 30), "closed", NET, 0, NET),
                     "mer_c:USD:2024-05-01": ("monthly", date(2024, 5, 31), "closed", NET, 0, NET)}
    replayed = _statements(warehouse, tmp_path_factory, dbt_build, "4", "2024-04-10")
    assert replayed == third
