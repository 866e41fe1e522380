"""commission.md: "A refund reverses commission pro rata: reversed_i = round_half_up(commission_i *
refunded_minor / captured_minor) ... A full refund reverses exactly." The merchant fee F follows
the same rule, refund by refund (int_refund_fee_reversals), and the blocking dbt test
assert_full_refund_reverses_entire_fee checks it on every build. That test once still checked
the earlier rule (prorate the cumulative refunded amount), so two ordinary partial refunds whose
shares round down failed `dbt build`. Here, on DuckDB and Postgres: F = 25 on 1,000 USD.

- p_partial: refunds of 333 and 333 reverse round(8.325) = 8 each, 16 in all (the cumulative
  rule would say round(16.65) = 17);
- p_full: 333, 333 and 334 reverse 8, 8 and what is left, 9: exactly F.
"""

from __future__ import annotations

from datetime import datetime

from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 3, 1)
TEST = "assert_full_refund_reverses_entire_fee"
REFUNDS = [("r_p1", "p_partial", 333, "2024-03-02 10:00:00"),
           ("r_p2", "p_partial", 333, "2024-03-03 10:00:00"),
           ("r_f1", "p_full", 333, "2024-03-02 11:00:00"),
           ("r_f2", "p_full", 333, "2024-03-03 11:00:00"),
           ("r_f3", "p_full", 334, "2024-03-04 11:00:00")]


def _load(warehouse) -> None:
    insert_raw(warehouse, "merchants", [
        {"id": "m_r", "name": "m_r", "status": "active", "agent_id": None,
         "settlement_currency": "USD", "settlement_cycle": "daily", "settlement_delay_days": 1,
         "created_at": T0, "updated_at": T0}], T0)
    insert_raw(warehouse, "channels", [
        {"id": "ch_card", "name": "ch_card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}], T0)
    insert_raw(warehouse, "prices", [
        {"id": "pr_m_r", "subject_type": "merchant", "subject_id": "m_r", "currency": "USD",
         "rate_bps": 250, "fixed_minor": 0, "valid_from": T0, "valid_to": None,
         "created_at": T0, "updated_at": T0}], T0)
    refunded = {"p_partial": 666, "p_full": 1_000}
    insert_raw(warehouse, "payments", [
        {"id": pid, "merchant_id": "m_r", "merchant_reference": f"order-{pid}",
         "amount_minor": 1_000, "currency": "USD", "payment_method_type": "card",
         "status": "refunded" if refunded[pid] == 1_000 else "partially_refunded",
         "channel_id": "ch_card", "channel_reference": f"chref-{pid}",
         "risk_decision": "approve", "customer_id": "cus_1", "refunded_minor": refunded[pid],
         "captured_at": T0, "created_at": T0, "updated_at": T0} for pid in refunded], T0)
    insert_raw(warehouse, "refunds", [
        {"id": rid, "payment_id": pid, "merchant_id": "m_r", "amount_minor": amount,
         "currency": "USD", "status": "succeeded", "succeeded_at": datetime.fromisoformat(at),
         "created_at": datetime.fromisoformat(at), "updated_at": datetime.fromisoformat(at)}
        for rid, pid, amount, at in REFUNDS], T0)


def _built(warehouse, tmp_path_factory, dbt_build) -> dict:
    work = tmp_path_factory.mktemp(f"fee_rule_{warehouse.engine}")
    _load(warehouse)
    # the models the test reads and the test itself (not the other models' tests)
    proc = dbt_build(warehouse, work, ("--select", f"+{TEST}", "--indirect-selection", "empty"))
    results = {r["unique_id"].split(".")[2]: r["status"]
               for r in (warehouse.run_results or {}).get("results", [])}
    reversals = {r["refund_id"]: int(r["fee_reversed_minor"]) for r in warehouse.query(
        "select refund_id, fee_reversed_minor from analytics.int_refund_fee_reversals")}
    return {"returncode": proc.returncode, "output": warehouse.dbt_output, "results": results,
            "reversals": reversals}


built_duckdb, built_postgres, built = built_on_both_engines("built", _built)


def test_each_refund_reverses_its_own_share_and_the_last_one_the_rest(built):
    assert built["reversals"] == {"r_p1": 8, "r_p2": 8, "r_f1": 8, "r_f2": 8, "r_f3": 9}


def test_the_blocking_check_passes_two_partial_refunds_that_round_down(built):
    assert built["results"].get(TEST) == "pass", built["output"][-4000:]
    assert built["returncode"] == 0, built["output"][-4000:]
