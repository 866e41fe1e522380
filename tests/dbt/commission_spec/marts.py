"""The marts the commission and settlement spec tests read after a `dbt build`, and the small
readers their assertions share (amounts as ints, whatever the engine returns)."""

from __future__ import annotations


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
