"""commission.md: the platform "pays the channel cost fee(channel price)". A payment taken on a
channel with no price in force for its currency has no knowable channel cost: it counts as 0
(conservation still holds) and, as for a missing fixed amount, finance gets a data-quality
warning naming the payment - fct_platform_revenue.channel_price_id is NULL and the
warn-severity test fct_platform_revenue_channel_price_in_force fails without failing the build.
On DuckDB and Postgres."""

from __future__ import annotations

from datetime import datetime

from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 3, 1)
CHECK = "fct_platform_revenue_channel_price_in_force"


def _load(warehouse) -> None:
    insert_raw(warehouse, "merchants", [
        {"id": "m_c", "name": "m_c", "status": "active", "agent_id": None,
         "settlement_currency": "USD", "settlement_cycle": "daily", "settlement_delay_days": 1,
         "created_at": T0, "updated_at": T0}], T0)
    insert_raw(warehouse, "channels", [
        {"id": ch, "name": ch, "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}
        for ch in ("ch_priced", "ch_unpriced")], T0)
    insert_raw(warehouse, "prices", [
        {"id": pid, "subject_type": kind, "subject_id": subject, "currency": "USD",
         "rate_bps": bps, "fixed_minor": 0, "valid_from": T0, "valid_to": None,
         "created_at": T0, "updated_at": T0}
        for pid, kind, subject, bps in (("pr_m", "merchant", "m_c", 250),
                                        ("pr_ch", "channel", "ch_priced", 100))], T0)
    insert_raw(warehouse, "payments", [
        {"id": pid, "merchant_id": "m_c", "merchant_reference": f"order-{pid}",
         "amount_minor": 10_000, "currency": "USD", "payment_method_type": "card",
         "status": "success", "channel_id": ch, "channel_reference": f"chref-{pid}",
         "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": 0,
         "captured_at": T0, "created_at": T0, "updated_at": T0}
        for pid, ch in (("p_priced", "ch_priced"), ("p_unpriced", "ch_unpriced"))], T0)


def _built(warehouse, tmp_path_factory, dbt_build) -> dict:
    work = tmp_path_factory.mktemp(f"channel_price_{warehouse.engine}")
    _load(warehouse)
    proc = dbt_build(warehouse, work, ("--select", "+fct_platform_revenue", CHECK,
                                       "--indirect-selection", "empty"))
    results = {r["unique_id"].split(".")[2]: (r["status"], r.get("failures"))
               for r in (warehouse.run_results or {}).get("results", [])}
    rows = {r["event_id"]: r for r in warehouse.query(
        "select event_id, channel_price_id, merchant_fee_minor, channel_cost_minor, "
        "platform_net_minor from analytics.fct_platform_revenue")}
    return {"returncode": proc.returncode, "output": warehouse.dbt_output, "results": results,
            "rows": rows}


built_duckdb, built_postgres, built = built_on_both_engines("built", _built)


def test_a_payment_without_a_channel_price_is_warned_not_failed(built):
    assert built["results"][CHECK] == ("warn", 1), built["output"][-3000:]
    assert built["returncode"] == 0, built["output"][-3000:]


def test_the_revenue_row_names_the_channel_price_or_none(built):
    rows = {k: (v["channel_price_id"], int(v["merchant_fee_minor"]),
                int(v["channel_cost_minor"]), int(v["platform_net_minor"]))
            for k, v in built["rows"].items()}
    # F = 2.5 % of 10,000 = 250; the priced channel costs 1 % = 100, the unpriced one 0
    assert rows == {"p_priced": ("pr_ch", 250, 100, 150), "p_unpriced": (None, 250, 0, 250)}
