"""The marts the commission and settlement spec tests read after a `dbt build`, and the small
readers their assertions share (amounts as ints, whatever the engine returns)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

from tests.dbt.conftest import run_dbt_build

STATEMENT_FIELDS = ("opening_balance", "gross", "refunds", "chargebacks", "fees", "adjustments",
                    "net_activity", "payouts", "closing_balance")


def as_of_vars(as_of: date) -> tuple[str, ...]:
    """dbt --vars for the books as of `as_of` (settlement and reconciliation alike)."""
    return ("--vars", json.dumps({"settlement_as_of": as_of.isoformat(),
                                  "recon_as_of": as_of.isoformat()}))


def build_twice(warehouse, work, load_first: Callable, first_as_of: date,
                load_second: Callable, second_as_of: date) -> dict:
    """A scenario world in two deliveries: load, build as of the first day, load the rest,
    build as of the second; the marts after each ({"first": ..., "second": ...})."""
    load_first(warehouse)
    first = read_marts(warehouse, run_dbt_build(warehouse, work / "first",
                                                as_of_vars(first_as_of)))
    load_second(warehouse)
    second = read_marts(warehouse, run_dbt_build(warehouse, work / "second",
                                                 as_of_vars(second_as_of)))
    return {"first": first, "second": second}


def statement(run: dict, sid: str) -> tuple:
    """A merchant statement's figures in STATEMENT_FIELDS order, as ints."""
    r = run["statements"][sid]
    return tuple(int(r[f"{k}_minor"]) for k in STATEMENT_FIELDS)


def read_marts(warehouse, proc) -> dict:
    """The build's outcome and every commission, revenue and statement row, keyed for lookup."""
    q = warehouse.query
    return {
        "warehouse": warehouse,
        "returncode": proc.returncode,
        "output": warehouse.dbt_output,
        "run_results": warehouse.run_results,
        "commissions": q("select * from analytics.fct_commissions"),
        "revenue": {r["event_id"]: r for r in q("select * from analytics.fct_platform_revenue")},
        "statements": {r["statement_id"]: r for r in q(
            "select * from analytics.fct_settlement_statements")},
        "lines": {r["line_id"]: r for r in q(
            "select * from analytics.fct_settlement_statement_lines")},
        "agent_statements": {r["statement_id"]: r for r in q(
            "select * from analytics.fct_agent_commission_statements")},
        "agent_lines": q("select * from analytics.fct_agent_commission_statement_lines"),
        "payments": {r["payment_id"]: r for r in q("select * from analytics.fct_payments")},
    }


def commissions(marts: dict, event_id: str) -> dict[str, tuple]:
    """beneficiary -> (level, model, amount) for one payment or refund."""
    return {r["beneficiary_id"]: (r["level"], r["model"], int(r["amount_minor"]))
            for r in marts["commissions"] if r["event_id"] == event_id}


def revenue(marts: dict, event_id: str) -> tuple[int, int, int, int, bool]:
    r = marts["revenue"][event_id]
    return (int(r["merchant_fee_minor"]), int(r["channel_cost_minor"]),
            int(r["agent_commission_minor"]), int(r["platform_net_minor"]),
            bool(r["negative_margin"]))
