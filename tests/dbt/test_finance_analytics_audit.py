"""Audit (2026-12-05) of the finance analytics the issue asks for and the specs leave open:
rpt_merchant_daily, x402 revenue per endpoint, agent portfolio performance, the finance tie-out
as a blocking check, and the marts' Dagster metadata; on DuckDB and Postgres.

One small world, built once per engine. Every expected figure is worked out by hand below.

ECB 2024-03-01 (EUR base): USD 1.0850, JPY 162.50, KWD 0.3340 (2024-03-02 is a Saturday: the
01 rate holds). Derived (int_fx__rates, 16 decimals): EUR->USD 1.0850 (published),
JPY->USD = 1.0850 / 162.50 = 0.0066769230769231, USD->KWD = 0.3340 / 1.0850 = 0.3078341013824885.

Agent tree (percentage 100 bps in USD, u3 fixed 7):
  m_v -> u0 -> u1 -> u2 (until 2024-03-02 00:00) / u3 (from then); m_u -> u1.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, datetime
from decimal import Decimal

import pytest

from tests.dbt.conftest import (
    DBT_EXECUTABLE,
    DBT_PROJECT_DIR,
    REPO_ROOT,
    built_on_both_engines,
    insert_raw,
)

T0 = datetime(2024, 1, 1)
SWITCH = datetime(2024, 3, 2)
AS_OF = date(2024, 4, 15)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


MERCHANTS = [("m_u", "u1", "USD"), ("m_v", "u0", "USD"), ("m_k", None, "KWD"),
             ("m_x", None, "USD")]
AGENTS = ["u0", "u1", "u2", "u3"]
PARENTS = [("u0", "u1", T0, None), ("u1", "u2", T0, SWITCH), ("u1", "u3", SWITCH, None),
           ("u2", None, T0, None), ("u3", None, T0, None)]
MODELS = [("u0", "percentage", 100, None), ("u1", "percentage", 100, None),
          ("u2", "percentage", 100, None), ("u3", "fixed", None, 7)]
CHANNELS = [("ch_card", "card"), ("ch_card2", "card"), ("ch_alipay", "alipay"),
            ("ch_x402", "x402")]
PRICES = [("channel", "ch_card", c, 100, 0) for c in ("USD", "EUR", "JPY", "KWD")] + [
    ("channel", "ch_card2", "USD", 100, 0), ("channel", "ch_alipay", "JPY", 100, 0),
    ("channel", "ch_x402", "USDC", 50, 0),
    *[("merchant", m, c, 290, 0) for m in ("m_u", "m_v", "m_k")
      for c in ("USD", "EUR", "JPY", "KWD")],
    ("merchant", "m_x", "USDC", 100, 0)]

# id, merchant, amount, currency, status, method, channel, created (= captured when captured)
PAYMENTS = [
    ("u1", "m_u", 1_000, "USD", "success", "card", "ch_card", "2024-03-01 09:00:00"),
    ("u2", "m_u", 2_001, "USD", "partially_refunded", "card", "ch_card", "2024-03-01 10:00:00"),
    ("u3", "m_u", 500, "USD", "failed", "card", "ch_card", "2024-03-01 11:00:00"),
    ("u4", "m_u", 1_000, "USD", "success", "card", "ch_card2", "2024-03-01 12:00:00"),
    ("u5", "m_u", 10_000, "EUR", "partially_refunded", "card", "ch_card", "2024-03-01 13:00:00"),
    ("u6", "m_u", 12_345, "JPY", "success", "alipay", "ch_alipay", "2024-03-01 14:00:00"),
    ("u8", "m_u", 1, "USD", "success", "card", "ch_card", "2024-03-02 09:00:00"),
    ("u9", "m_u", 2, "USD", "success", "card", "ch_card", "2024-03-02 09:10:00"),
    ("u10", "m_u", 2, "USD", "success", "card", "ch_card", "2024-03-02 09:20:00"),
    ("u11", "m_u", 333, "EUR", "success", "card", "ch_card", "2024-03-02 09:30:00"),
    ("v1", "m_v", 10_000, "USD", "partially_refunded", "card", "ch_card", "2024-03-01 08:00:00"),
    ("v2", "m_v", 20_000, "USD", "success", "card", "ch_card", "2024-03-02 08:00:00"),
    ("k1", "m_k", 10_000, "USD", "success", "card", "ch_card", "2024-03-01 06:00:00"),
    ("k2", "m_k", 1_234_567, "KWD", "success", "card", "ch_card", "2024-03-01 07:00:00"),
    ("px1", "m_x", 50_000, "USDC", "success", "x402", "ch_x402", "2024-03-01 10:00:00"),
    ("px2", "m_x", 50_000, "USDC", "success", "x402", "ch_x402", "2024-03-01 10:05:00"),
    ("px3", "m_x", 50_000, "USDC", "refunded", "x402", "ch_x402", "2024-03-01 10:10:00"),
    ("px5", "m_x", 30_000, "USDC", "success", "x402", "ch_x402", "2024-03-01 10:20:00"),
]
# id, payment, amount, status, succeeded_at
REFUNDS = [
    ("r_u2", "u2", 1_000, "succeeded", "2024-03-02 10:00:00"),  # a later day
    ("r_u2_failed", "u2", 500, "failed", None),
    ("r_u5", "u5", 5_000, "succeeded", "2024-03-04 10:00:00"),
    ("r_v1", "v1", 2_500, "succeeded", "2024-03-02 12:00:00"),
    ("r_px3", "px3", 50_000, "succeeded", "2024-03-02 10:00:00"),
]
RULES = [("xr_a", "/a", 50_000), ("xr_b", "/b", 30_000)]
# id, rule, status, payer, created, payment
USAGE = [
    ("xu1", "xr_a", "settled", "0xaa", "2024-03-01 10:00:00", "px1"),
    ("xu2", "xr_a", "settled", "0xaa", "2024-03-01 10:05:00", "px2"),  # the same payer again
    ("xu3", "xr_a", "settled", "0xbb", "2024-03-01 10:10:00", "px3"),  # refunded the next day
    ("xu4", "xr_a", "settle_failed", "0xcc", "2024-03-01 10:15:00", None),
    ("xu5", "xr_b", "settled", "0xaa", "2024-03-01 10:20:00", "px5"),
]
ECB = {"2024-03-01": {"USD": "1.0850", "JPY": "162.50", "KWD": "0.3340"}}


def _tx(payment_id: str) -> str:
    return "0x" + payment_id.encode().hex().rjust(64, "0")


def _insert(warehouse, table, rows):
    insert_raw(warehouse, table, rows, T0)


def load(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": f"Merchant {m}", "status": "active", "agent_id": a,
         "settlement_currency": c, "settlement_cycle": "daily", "settlement_delay_days": 1,
         "created_at": T0, "updated_at": T0} for m, a, c in MERCHANTS])
    _insert(warehouse, "agents", [
        {"id": a, "name": a, "status": "active", "statement_cycle": "monthly", "created_at": T0,
         "updated_at": T0} for a in AGENTS])
    _insert(warehouse, "agent_parents", [
        {"id": i, "agent_id": a, "parent_id": p, "valid_from": vf, "valid_to": vt,
         "created_at": T0, "updated_at": T0} for i, (a, p, vf, vt) in enumerate(PARENTS, 1)])
    _insert(warehouse, "commission_models", [
        {"id": f"cm_{a}", "agent_id": a, "currency": "USD", "model": m, "pct_bps": pct,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for a, m, pct, fixed in MODELS])
    _insert(warehouse, "channels", [
        {"id": ch, "name": ch, "channel_type": kind, "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}
        for ch, kind in CHANNELS])
    _insert(warehouse, "prices", [
        {"id": f"prc_{i}", "subject_type": st, "subject_id": sid, "currency": c, "rate_bps": bps,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for i, (st, sid, c, bps, fixed) in enumerate(PRICES)])
    refunded: dict[str, int] = {}
    for _rid, pid, amount, status, _at in REFUNDS:
        if status == "succeeded":
            refunded[pid] = refunded.get(pid, 0) + amount
    _insert(warehouse, "payments", [
        {"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}", "amount_minor": amount,
         "currency": ccy, "payment_method_type": method, "status": status, "channel_id": ch,
         "channel_reference": _tx(pid) if ch == "ch_x402" else f"chref-{pid}", "failure_code": None if status != "failed"
         else "declined", "risk_decision": "approve", "customer_id": "cus_1",
         "refunded_minor": refunded.get(pid, 0),
         "captured_at": None if status == "failed" else ts(at), "created_at": ts(at),
         "updated_at": ts(at)}
        for pid, m, amount, ccy, status, method, ch, at in PAYMENTS])
    payments = {p[0]: p for p in PAYMENTS}
    _insert(warehouse, "refunds", [
        {"id": rid, "payment_id": pid, "merchant_id": payments[pid][1], "amount_minor": amount,
         "currency": payments[pid][3], "status": status, "reason": "requested_by_customer",
         "channel_reference": f"chref-{rid}", "succeeded_at": ts(at) if at else None,
         "created_at": ts(at or "2024-03-02 00:00:00"),
         "updated_at": ts(at or "2024-03-02 00:00:00")}
        for rid, pid, amount, status, at in REFUNDS])
    _insert(warehouse, "x402_pricing_rules", [
        {"id": rid, "merchant_id": "m_x", "path_pattern": path, "http_method": "*",
         "amount_atomic": amount, "asset": "USDC", "network": "eip155:84532",
         "pay_to": "0x" + "5a" * 20, "billing_mode": "per_request", "status": "active",
         "created_at": T0, "updated_at": T0} for rid, path, amount in RULES])
    rules = {r[0]: r for r in RULES}
    _insert(warehouse, "x402_usage", [
        {"id": uid, "merchant_id": "m_x", "rule_id": rule, "http_method": "GET",
         "path": rules[rule][1], "scheme": "exact", "x402_version": 2, "network": "eip155:84532",
         "asset": "USDC", "amount_atomic": rules[rule][2], "pay_to": "0x" + "5a" * 20,
         "payer": payer, "token_id": None, "status": status,
         "upstream_status": 200, "tx_hash": _tx(payment) if payment else None,
         "payment_id": payment, "error_reason": None,
         "settled_at": ts(at) if status == "settled" else None, "created_at": ts(at),
         "updated_at": ts(at)} for uid, rule, status, payer, at, payment in USAGE])
    _insert(warehouse, "fx_rates", [
        {"fx_rate_id": f"ecb:{day}:{ccy}", "file_id": f"ecb_{day}", "source": "ecb",
         "rate_date": date.fromisoformat(day), "base_currency": "EUR", "quote_currency": ccy,
         "rate_text": rate, "rate": Decimal(rate)}
        for day, by_ccy in ECB.items() for ccy, rate in by_ccy.items()])


def run_dbt(warehouse, work_dir, command: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARHOUSE_", "DBT_"))}
    env.update(warehouse.env)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return subprocess.run(
        [str(DBT_EXECUTABLE), command, "--profiles-dir", str(DBT_PROJECT_DIR), "--project-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(work_dir / "target"), "--log-path",
         str(work_dir / "logs"), "--no-use-colors", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


VARS = json.dumps({"settlement_as_of": AS_OF.isoformat(), "recon_as_of": AS_OF.isoformat()})


def _build(warehouse, tmp_path_factory, dbt_build):
    load(warehouse)
    work = tmp_path_factory.mktemp(f"fin_analytics_{warehouse.engine}")
    proc = dbt_build(warehouse, work, ("--vars", VARS))
    return {"warehouse": warehouse, "work": work, "returncode": proc.returncode,
            "output": warehouse.dbt_output}


built_duckdb, built_postgres, built = built_on_both_engines("built", _build)


def q(built, sql):
    return built["warehouse"].query(sql)


def _i(v):
    return None if v is None else int(v)


def test_the_build_succeeds(built):
    assert built["returncode"] == 0, built["output"][-4000:]


# --- rpt_merchant_daily ---------------------------------------------------------------------------


def daily(built, merchant, day, channel, currency):
    rows = q(built, "select * from analytics.rpt_merchant_daily where merchant_id = "
                    f"'{merchant}' and day = date '{day}' and channel_id = '{channel}' "
                    f"and currency = '{currency}'")
    assert len(rows) == 1, rows
    return rows[0]


def test_merchant_daily_is_by_channel(built):
    # u1, u2, u3 on ch_card and u4 on ch_card2: same method (card), two channels, two rows
    card = daily(built, "m_u", "2024-03-01", "ch_card", "USD")
    card2 = daily(built, "m_u", "2024-03-01", "ch_card2", "USD")
    assert (card["payment_count"], card["captured_count"], _i(card["captured_minor"])) == \
        (3, 2, 3_001)
    assert (card2["payment_count"], card2["captured_count"], _i(card2["captured_minor"])) == \
        (1, 1, 1_000)


def test_merchant_daily_rates_and_average_ticket(built):
    r = daily(built, "m_u", "2024-03-01", "ch_card", "USD")
    # success rate: 2 captured of 3 created = 0.666667 (half up at 6 places)
    assert Decimal(r["success_rate"]) == Decimal("0.666667")
    # refunds of the day's payments, whenever they succeeded (cohort): r_u2 (next day) counts,
    # the failed one does not. refund_rate = payments refunded / payments captured = 1 / 2;
    # by amount 1000 / 3001 = 0.33322225... -> 0.333222
    assert (_i(r["refunded_minor"]), r["refund_count"]) == (1_000, 1)
    assert Decimal(r["refund_rate"]) == Decimal("0.500000")
    assert Decimal(r["refund_amount_rate"]) == Decimal("0.333222")
    # average ticket: 3001 / 2 = 1500.5 -> 1501 (half up)
    assert _i(r["average_ticket_minor"]) == 1_501
    # 1 + 2 + 2 = 5 over 3 -> 1.67 -> 2
    assert _i(daily(built, "m_u", "2024-03-02", "ch_card", "USD")["average_ticket_minor"]) == 2


def test_merchant_daily_in_settlement_currency_with_rate_ids(built):
    same = daily(built, "m_u", "2024-03-01", "ch_card", "USD")
    assert (same["settlement_currency"], _i(same["captured_settlement_minor"]),
            _i(same["refunded_settlement_minor"]), _i(same["average_ticket_settlement_minor"]),
            same["fx_rate_id"]) == ("USD", 3_001, 1_000, 1_501, None)
    # EUR -> USD 1.0850: 10000 -> 10850; refund 5000 -> 5425 (the day's rate)
    eur = daily(built, "m_u", "2024-03-01", "ch_card", "EUR")
    assert (eur["settlement_currency"], _i(eur["captured_settlement_minor"]),
            _i(eur["refunded_settlement_minor"]), eur["fx_rate_id"]) == \
        ("USD", 10_850, 5_425, "ecb:2024-03-01:EUR:USD")
    # Saturday: the Friday rate; 333 * 1.085 = 361.305 -> 361
    eur_sat = daily(built, "m_u", "2024-03-02", "ch_card", "EUR")
    assert (_i(eur_sat["captured_settlement_minor"]), eur_sat["fx_rate_id"]) == \
        (361, "ecb:2024-03-01:EUR:USD")
    # JPY (exponent 0) -> USD (2): 12345 * 0.0066769230769231 * 100 = 8242.66 -> 8243
    jpy = daily(built, "m_u", "2024-03-01", "ch_alipay", "JPY")
    assert (jpy["payment_method_type"], _i(jpy["captured_minor"]),
            _i(jpy["captured_settlement_minor"]), jpy["fx_rate_id"]) == \
        ("alipay", 12_345, 8_243, "ecb:2024-03-01:JPY:USD")
    # USD (2) -> KWD (3): 10000 * 0.3078341013824885 * 10 = 30783.41 -> 30783 fils
    kwd = daily(built, "m_k", "2024-03-01", "ch_card", "USD")
    assert (kwd["settlement_currency"], _i(kwd["captured_settlement_minor"]),
            kwd["fx_rate_id"]) == ("KWD", 30_783, "ecb:2024-03-01:USD:KWD")
    own = daily(built, "m_k", "2024-03-01", "ch_card", "KWD")
    assert (_i(own["captured_settlement_minor"]), _i(own["average_ticket_settlement_minor"])) \
        == (1_234_567, 1_234_567)
    # USDC (6) at par with USD (2): 50000 atomic = 5 cents; 3 x 5 + 3 = 18, refunded 5
    usdc = daily(built, "m_x", "2024-03-01", "ch_x402", "USDC")
    assert (_i(usdc["captured_minor"]), _i(usdc["captured_settlement_minor"]),
            _i(usdc["refunded_settlement_minor"]), usdc["fx_rate_id"]) == \
        (180_000, 18, 5, "peg:USDC:USD")


def test_merchant_daily_has_no_row_for_a_day_without_payments(built):
    days = {r["day"] for r in q(built, "select distinct day from analytics.rpt_merchant_daily "
                                       "where merchant_id = 'm_u'")}
    assert {d.isoformat() if hasattr(d, "isoformat") else str(d) for d in days} == \
        {"2024-03-01", "2024-03-02"}


# --- x402 revenue per endpoint --------------------------------------------------------------------


def test_x402_revenue_per_endpoint_and_distinct_payers(built):
    rows = {r["rule_id"]: r for r in q(
        built, "select * from analytics.rpt_x402_endpoint_daily where merchant_id = 'm_x'")}
    a = rows["xr_a"]
    # 4 calls, 3 settled (0xaa twice, 0xbb), 1 settle_failed (not charged, not a payer)
    assert (a["path_pattern"], a["calls"], a["paid_calls"], a["not_charged_calls"],
            _i(a["revenue_minor"]), a["payers"]) == ("/a", 4, 3, 1, 150_000, 2)
    # px3 was refunded in full the next day: the endpoint's revenue net of refunds is 100000
    assert (_i(a["refunded_minor"]), _i(a["net_revenue_minor"])) == (50_000, 100_000)
    b = rows["xr_b"]
    assert (b["calls"], b["paid_calls"], _i(b["revenue_minor"]), b["payers"],
            _i(b["refunded_minor"]), _i(b["net_revenue_minor"])) == (1, 1, 30_000, 1, 0, 30_000)


# --- agent portfolio performance ------------------------------------------------------------------


def portfolio(built, agent, day):
    rows = q(built, "select * from analytics.rpt_agent_portfolio_daily where agent_id = "
                    f"'{agent}' and day = date '{day}' and currency = 'USD'")
    assert len(rows) <= 1, rows
    if not rows:
        return None
    r = rows[0]
    return (r["merchant_count"], r["payment_count"], _i(r["captured_minor"]),
            _i(r["refunded_minor"]), _i(r["commission_earned_minor"]),
            _i(r["commission_reversed_minor"]), _i(r["commission_net_minor"]))


def test_agent_portfolio_over_a_multi_level_tree_with_re_parenting(built):
    # 03-01, USD captures: m_u u1 1000, u2 2001, u4 1000 (u3 failed); m_v v1 10000
    # u1 (both merchants): commissions 10 + round(20.01)=20 + 10 + 100 = 140
    assert portfolio(built, "u1", "2024-03-01") == (2, 4, 14_001, 0, 140, 0, 140)
    assert portfolio(built, "u0", "2024-03-01") == (1, 1, 10_000, 0, 100, 0, 100)
    assert portfolio(built, "u2", "2024-03-01") == (2, 4, 14_001, 0, 140, 0, 140)
    assert portfolio(built, "u3", "2024-03-01") is None
    # 03-02, after u1 moved from u2 to u3 at 00:00: u8 1, u9 2, u10 2, v2 20000 = 20005;
    # refunds of 03-01 payments: r_u2 1000 (reverses round(20 * 1000 / 2001) = 10) and r_v1 2500
    # (reverses round(100 * 2500 / 10000) = 25); they follow the tree at capture, so u2 keeps
    # them and u3 does not get them.
    assert portfolio(built, "u1", "2024-03-02") == (2, 4, 20_005, 3_500, 200, 35, 165)
    assert portfolio(built, "u3", "2024-03-02") == (2, 4, 20_005, 0, 28, 0, 28)
    assert portfolio(built, "u2", "2024-03-02") == (0, 0, 0, 3_500, 0, 35, -35)
    assert portfolio(built, "u0", "2024-03-02") == (1, 1, 20_000, 2_500, 200, 25, 175)


# --- the finance tie-out, blocking ----------------------------------------------------------------


def _tie_out(built):
    proc = run_dbt(built["warehouse"], built["work"], "test", "--select", "assert_finance_tie_out",
                   "--vars", VARS)
    return proc.returncode, proc.stdout[-3000:]


def _tampered(built, sql_do, sql_undo):
    wh = built["warehouse"]
    wh.execute_many(sql_do, [])
    try:
        return _tie_out(built)
    finally:
        wh.execute_many(sql_undo, [])


def test_tie_out_passes_on_good_data(built):
    code, out = _tie_out(built)
    assert code == 0, out


def test_tie_out_fails_when_platform_net_is_off_by_one(built):
    t = "analytics.fct_platform_revenue"
    code, _ = _tampered(
        built, f"update {t} set platform_net_minor = platform_net_minor + 1 where event_id = 'u1'",
        f"update {t} set platform_net_minor = platform_net_minor - 1 where event_id = 'u1'")
    assert code != 0


def test_tie_out_fails_when_a_statement_credits_more_than_was_captured(built):
    # the merchant's line says 1100 captured for a 1000 payment: gross - refunds no longer holds
    t = "analytics.fct_settlement_statement_lines"
    cols = "txn_gross_minor = txn_gross_minor {0} 100, gross_minor = gross_minor {0} 100, " \
           "net_minor = net_minor {0} 100"
    code, _ = _tampered(built, f"update {t} set {cols.format('+')} where line_id = 'payment:u1'",
                        f"update {t} set {cols.format('-')} where line_id = 'payment:u1'")
    assert code != 0


# --- DuckDB = Postgres ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("model", ["rpt_merchant_daily", "rpt_x402_endpoint_daily",
                                   "rpt_agent_portfolio_daily"])
def test_duckdb_and_postgres_agree(built_duckdb, built_postgres, model):
    def norm(v):
        if isinstance(v, Decimal):
            return v.normalize()
        if hasattr(v, "isoformat"):
            return v.isoformat()
        return v

    def rows(b):
        return sorted(tuple(sorted((k, norm(v)) for k, v in r.items()))
                      for r in q(b, f"select * from analytics.{model}"))

    duck, pg = rows(built_duckdb), rows(built_postgres)
    assert duck and duck == pg


# --- Dagster metadata -----------------------------------------------------------------------------


FINANCE_MARTS = ["fct_payments", "fct_settlement_statements", "fct_settlement_statement_lines",
                 "fct_commissions", "fct_platform_revenue", "fct_agent_commission_statements",
                 "fct_agent_commission_statement_lines", "fct_reconciliation_matches",
                 "fct_reconciliation_breaks", "rpt_reconciliation_daily", "rpt_merchant_daily",
                 "rpt_x402_endpoint_daily", "rpt_agent_portfolio_daily"]


def test_every_finance_mart_carries_row_count_and_a_summary(built, make_settings):
    from orchestration.defs.dbt.metadata import mart_metadata

    env = built["warehouse"].env
    if built["warehouse"].engine == "duckdb":
        url = "duckdb:///" + env["CLEARHOUSE_DUCKDB_PATH"]
    else:
        url = f"postgresql://postgres@127.0.0.1:5432/{env['CLEARHOUSE_PG_DBNAME']}"
    settings = make_settings(warehouse_url=url)
    meta = mart_metadata(settings, FINANCE_MARTS)
    missing = [m for m in FINANCE_MARTS if m not in meta or "summary" not in meta[m]
               or "dagster/row_count" not in meta[m]]
    assert not missing
    assert not [m for m in FINANCE_MARTS if "not available" in meta[m]["summary"].value]
    counts = {m: q(built, f"select count(*) as n from analytics.{m}")[0]["n"]
              for m in FINANCE_MARTS}
    assert {m: meta[m]["dagster/row_count"].value for m in FINANCE_MARTS} == counts
    # totals in minor units, as integers: the statements' gross for m_u's USD statements
    assert "|" in meta["rpt_merchant_daily"]["summary"].value
