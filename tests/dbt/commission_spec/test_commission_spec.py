"""Audit scenarios for commission.md, settlement.md and money.md, black-box through the raw
tables the ledger extract fills and the marts dbt builds (DuckDB and Postgres).

Every expected figure below was derived by hand from the spec text (worked out in the comments),
not from the implementation.

Prices (USD unless said): channel ch_card USD 100 bps + 10.
  A  3-level markup chain   m_a (300/30) -> a1 markup cost 250/25 -> a2 markup 200/20 -> a3 markup 150/15
  B  mixed chain            m_b (300/30) -> b1 percentage 50 bps -> b2 markup cost 200/0 -> b3 fixed 5
  C  negative spread        m_c (200/0)  -> c1 markup cost 250/0
  D  direct, negative net   m_d (100/0), no agent (daily, T+2)
  E  re-parenting and price changes exactly at captured_at
  G  price without fixed_minor (NULL) for USD
  H  ETH, amounts above 2^63, markup agent h1
  J  JPY payments on a USD statement (FX through EUR)
  K  USD and KWD payments on a KWD statement
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import pytest

from tests.dbt.commission_spec.marts import commissions, read_marts, revenue
from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 1, 1)
AS_OF = date(2024, 4, 15)
SWITCH = datetime(2024, 3, 15, 12, 0, 0)  # scenario E: re-parenting and new prices


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


MERCHANTS = [  # id, agent, settlement currency, cycle, delay
    ("m_a", "a1", "USD", "monthly", 0),
    ("m_b", "b1", "USD", "weekly", 1),
    ("m_c", "c1", "USD", "monthly", 0),
    ("m_d", None, "USD", "daily", 2),
    ("m_e", "e1", "USD", "monthly", 0),
    ("m_g", None, "USD", "monthly", 0),
    ("m_h", "h1", "ETH", "monthly", 0),
    ("m_j", None, "USD", "monthly", 0),
    ("m_k", None, "KWD", "monthly", 0),
    ("m_f", "f1", "USD", "monthly", 0),
]
AGENTS = ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "e1", "e2", "e3", "h1", "f1"]
PARENTS = [  # agent, parent, valid_from, valid_to
    ("a1", "a2", T0, None), ("a2", "a3", T0, None), ("a3", None, T0, None),
    ("b1", "b2", T0, None), ("b2", "b3", T0, None), ("b3", None, T0, None),
    ("c1", None, T0, None),
    ("e1", "e2", T0, SWITCH), ("e1", "e3", SWITCH, None),
    ("e2", None, T0, None), ("e3", None, T0, None),
    ("h1", None, T0, None),
    ("f1", None, T0, None),
]
MODELS = [  # agent, currency, model, pct_bps, fixed_minor
    ("a1", "USD", "markup", None, None), ("a2", "USD", "markup", None, None),
    ("a3", "USD", "markup", None, None),
    ("b1", "USD", "percentage", 50, None), ("b2", "USD", "markup", None, None),
    ("b3", "USD", "fixed", None, 5),
    ("c1", "USD", "markup", None, None),
    ("e1", "USD", "markup", None, None), ("e2", "USD", "percentage", 20, None),
    ("e3", "USD", "fixed", None, 9),
    ("h1", "ETH", "markup", None, None),
    ("f1", "USD", "fixed", None, 3),
]
PRICES = [  # subject_type, subject_id, currency, bps, fixed, valid_from, valid_to
    ("channel", "ch_card", "USD", 100, 10, T0, None),
    ("channel", "ch_crypto", "ETH", 100, 0, T0, None),
    ("merchant", "m_a", "USD", 300, 30, T0, None),
    ("agent", "a1", "USD", 250, 25, T0, None),
    ("agent", "a2", "USD", 200, 20, T0, None),
    ("agent", "a3", "USD", 150, 15, T0, None),
    ("merchant", "m_b", "USD", 300, 30, T0, None),
    ("agent", "b2", "USD", 200, 0, T0, None),
    ("merchant", "m_c", "USD", 200, 0, T0, None),
    ("agent", "c1", "USD", 250, 0, T0, None),
    ("merchant", "m_d", "USD", 100, 0, T0, None),
    ("merchant", "m_e", "USD", 300, 0, T0, SWITCH), ("merchant", "m_e", "USD", 400, 0, SWITCH, None),
    ("agent", "e1", "USD", 200, 0, T0, SWITCH), ("agent", "e1", "USD", 250, 0, SWITCH, None),
    ("merchant", "m_g", "USD", 300, None, T0, None),  # no fixed amount for USD
    ("merchant", "m_h", "ETH", 250, 2 * 10**15, T0, None),
    ("agent", "h1", "ETH", 200, 10**15, T0, None),
    ("merchant", "m_j", "JPY", 325, 0, T0, None),
    ("merchant", "m_k", "USD", 250, 25, T0, None),
    ("merchant", "m_k", "KWD", 250, 100, T0, None),
    ("merchant", "m_f", "USD", 300, 0, T0, None),
]
ETH_AMOUNT = 987_654_321_098_765_432_109_877  # ~9.9e23 wei, F ~2.5e22 > 2^63
ETH_REFUND = 329_218_107_032_921_810_703_292
PAYMENTS = [  # id, merchant, amount, currency, captured_at, channel
    ("pa1", "m_a", 12_345, "USD", "2024-03-05 10:00:00", "ch_card"),
    ("pa2", "m_a", 10_050, "USD", "2024-03-05 11:00:00", "ch_card"),
    ("pb1", "m_b", 10_000, "USD", "2024-03-06 10:00:00", "ch_card"),
    ("pc1", "m_c", 10_000, "USD", "2024-03-10 10:00:00", "ch_card"),
    ("pc2", "m_c", 1_000, "USD", "2024-03-10 11:00:00", "ch_card"),
    ("pd1", "m_d", 10_000, "USD", "2024-03-12 10:00:00", "ch_card"),
    ("pe1", "m_e", 10_000, "USD", "2024-03-15 11:59:59", "ch_card"),
    ("pe2", "m_e", 10_000, "USD", "2024-03-15 12:00:00", "ch_card"),
    ("pg1", "m_g", 10_000, "USD", "2024-03-12 10:00:00", "ch_card"),
    ("ph1", "m_h", ETH_AMOUNT, "ETH", "2024-03-12 10:00:00", "ch_crypto"),
    ("pj1", "m_j", 12_345, "JPY", "2024-03-01 05:00:00", "ch_card"),
    ("pk1", "m_k", 10_000, "USD", "2024-03-01 06:00:00", "ch_card"),
    ("pk2", "m_k", 1_234_567, "KWD", "2024-03-01 07:00:00", "ch_card"),
    ("pf1", "m_f", 600, "USD", "2024-03-20 10:00:00", "ch_card"),
]
REFUNDS = [  # id, payment, amount, succeeded_at
    ("rb1", "pb1", 3_000, "2024-03-07 10:00:00"),
    ("rb2", "pb1", 3_000, "2024-03-08 10:00:00"),
    ("rb3", "pb1", 4_000, "2024-03-11 10:00:00"),  # completes the refund (next ISO week)
    ("rh1", "ph1", ETH_REFUND, "2024-03-20 10:00:00"),
    ("rc1", "pc2", 300, "2024-03-12 10:00:00"),  # reverses a negative spread
    *[(f"rf{i}", "pf1", 100, f"2024-03-2{i} 10:00:00") for i in range(1, 7)],  # six sixths
]
ECB = {"2024-03-01": {"USD": "1.0850", "JPY": "162.50", "KWD": "0.3340"}}
ADJUSTMENTS = [("adj_a", "m_a", 700, "USD", "goodwill credit", "usr_finance",
                "2024-03-20 09:00:00")]
WITHDRAWALS = [("wd_a", "merchant", "m_a", 5_000, "USD", "paid", "2024-03-25 10:00:00")]


def _insert(warehouse, table_name: str, rows: list[dict]) -> None:
    insert_raw(warehouse, table_name, rows, T0)


def load(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "agent_id": agent, "settlement_currency": ccy,
         "settlement_cycle": cycle, "settlement_delay_days": delay, "created_at": T0,
         "updated_at": T0} for m, agent, ccy, cycle, delay in MERCHANTS])
    _insert(warehouse, "agents", [
        {"id": a, "name": a, "status": "active", "statement_cycle": "monthly", "created_at": T0,
         "updated_at": T0} for a in AGENTS])
    _insert(warehouse, "agent_parents", [
        {"id": i, "agent_id": a, "parent_id": p, "valid_from": vf, "valid_to": vt,
         "created_at": T0, "updated_at": T0} for i, (a, p, vf, vt) in enumerate(PARENTS, 1)])
    _insert(warehouse, "commission_models", [
        {"id": f"cm_{a}_{c}", "agent_id": a, "currency": c, "model": m, "pct_bps": pct,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for a, c, m, pct, fixed in MODELS])
    _insert(warehouse, "channels", [
        {"id": ch, "name": ch, "channel_type": kind, "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}
        for ch, kind in (("ch_card", "card"), ("ch_crypto", "crypto"))])
    _insert(warehouse, "prices", [
        {"id": f"prc_{i}", "subject_type": st, "subject_id": sid, "currency": c, "rate_bps": bps,
         "fixed_minor": fixed, "valid_from": vf, "valid_to": vt, "created_at": T0,
         "updated_at": T0} for i, (st, sid, c, bps, fixed, vf, vt) in enumerate(PRICES)])
    refunded = defaultdict(int)
    for _rid, pid, amount, _at in REFUNDS:
        refunded[pid] += amount
    _insert(warehouse, "payments", [
        {"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}", "amount_minor": amount,
         "currency": ccy, "payment_method_type": "crypto" if ch == "ch_crypto" else "card",
         "status": ("refunded" if refunded[pid] == amount else
                    "partially_refunded" if refunded[pid] else "success"),
         "channel_id": ch, "channel_reference": f"chref-{pid}", "risk_decision": "approve",
         "customer_id": "cus_1", "refunded_minor": refunded[pid], "captured_at": ts(at),
         "created_at": ts(at), "updated_at": ts(at)}
        for pid, m, amount, ccy, at, ch in PAYMENTS])
    payments = {p[0]: p for p in PAYMENTS}
    _insert(warehouse, "refunds", [
        {"id": rid, "payment_id": pid, "merchant_id": payments[pid][1], "amount_minor": amount,
         "currency": payments[pid][3], "status": "succeeded", "succeeded_at": ts(at),
         "created_at": ts(at), "updated_at": ts(at)} for rid, pid, amount, at in REFUNDS])
    _insert(warehouse, "settlement_adjustments", [
        {"id": aid, "merchant_id": m, "amount_minor": amount, "currency": ccy, "reason": reason,
         "created_by": who, "effective_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
        for aid, m, amount, ccy, reason, who, at in ADJUSTMENTS])
    _insert(warehouse, "withdrawals", [
        {"id": wid, "owner_type": kind, "owner_id": owner, "amount_minor": amount,
         "currency": ccy, "status": status, "decided_by": "usr_ops", "decided_at": ts(at),
         "paid_at": ts(at), "created_at": T0, "updated_at": ts(at)}
        for wid, kind, owner, amount, ccy, status, at in WITHDRAWALS])
    _insert(warehouse, "fx_rates", [
        {"fx_rate_id": f"ecb:{day}:{ccy}", "file_id": f"ecb_{day}", "source": "ecb",
         "rate_date": date.fromisoformat(day), "base_currency": "EUR", "quote_currency": ccy,
         "rate_text": rate, "rate": Decimal(rate)}
        for day, by_ccy in ECB.items() for ccy, rate in by_ccy.items()])


def _build(warehouse, tmp_path_factory, dbt_build):
    load(warehouse)
    work = tmp_path_factory.mktemp(f"audit_{warehouse.engine}")
    proc = dbt_build(warehouse, work, ("--vars", json.dumps(
        {"settlement_as_of": AS_OF.isoformat(), "recon_as_of": AS_OF.isoformat()})))
    return read_marts(warehouse, proc)


built_duckdb, built_postgres, built = built_on_both_engines("built", _build)


# --- the build ----------------------------------------------------------------------------------


def test_the_build_succeeds(built):
    assert built["returncode"] == 0, built["output"][-6000:]


# --- A: three markup levels, rounding on each fee --------------------------------------------


def test_three_level_markup_chain_rounds_each_fee(built):
    # pa1 12,345: F = round(370.35)+30 = 400; fee(a1) = round(308.625)+25 = 334;
    # fee(a2) = round(246.9)+20 = 267; fee(a3) = round(185.175)+15 = 200;
    # channel = round(123.45)+10 = 133; platform_net = 200 - 133 = 67
    assert commissions(built, "pa1") == {"a1": (1, "markup", 66), "a2": (2, "markup", 67),
                                         "a3": (3, "markup", 67)}
    assert revenue(built, "pa1") == (400, 133, 200, 67, False)
    # pa2 10,050 (halves): F = round(301.5)+30 = 332; a1 round(251.25)+25 = 276;
    # a2 round(201.0)+20 = 221; a3 round(150.75)+15 = 166; channel round(100.5)+10 = 111
    assert commissions(built, "pa2") == {"a1": (1, "markup", 56), "a2": (2, "markup", 55),
                                         "a3": (3, "markup", 55)}
    assert revenue(built, "pa2") == (332, 111, 166, 55, False)


# --- B: percentage, markup and fixed in one chain; partial refunds ---------------------------


def test_mixed_chain_percentage_markup_fixed(built):
    # pb1 10,000: F = 330; b1 pct 50 bps = 50 (up stays 330); b2 markup 330 - 200 = 130 (up 200);
    # b3 fixed 5 (up 200); channel 110; platform_net = 200 - 110 - 50 - 5 = 35
    assert commissions(built, "pb1") == {"b1": (1, "percentage", 50), "b2": (2, "markup", 130),
                                         "b3": (3, "fixed", 5)}
    assert revenue(built, "pb1") == (330, 110, 185, 35, False)


def test_first_partial_refund_reverses_each_commission_half_up(built):
    # rb1 3,000 of 10,000: b1 round(15.0) = 15, b2 round(39.0) = 39, b3 round(1.5) = 2
    assert commissions(built, "rb1") == {"b1": (1, "percentage", -15), "b2": (2, "markup", -39),
                                         "b3": (3, "fixed", -2)}


def test_second_partial_refund_reverses_round_half_up_of_its_own_amount(built):
    # commission.md: reversed_i = round_half_up(commission_i * refunded_minor / captured_minor).
    # rb2 refunds 3,000 of 10,000 (30 %, not the last refund): b3's fixed 5 -> round(1.5) = 2,
    # exactly as for rb1, which refunded the same amount.
    assert commissions(built, "rb2") == {"b1": (1, "percentage", -15), "b2": (2, "markup", -39),
                                         "b3": (3, "fixed", -2)}


def test_the_refund_completing_a_full_refund_reverses_exactly(built):
    # After rb1 and rb2 reversed 15+15, 39+39 and 2+2, rb3 (the rest, 4,000) reverses the rest:
    # b1 50-30 = 20, b2 130-78 = 52, b3 5-4 = 1: the three refunds together reverse exactly.
    assert commissions(built, "rb3") == {"b1": (1, "percentage", -20), "b2": (2, "markup", -52),
                                         "b3": (3, "fixed", -1)}
    total = defaultdict(int)
    for rid in ("pb1", "rb1", "rb2", "rb3"):
        for agent, (_l, _m, amount) in commissions(built, rid).items():
            total[agent] += amount
    assert dict(total) == {"b1": 0, "b2": 0, "b3": 0}
    assert sum(revenue(built, e)[0] for e in ("pb1", "rb1", "rb2", "rb3")) == 0


def test_partial_reversals_never_exceed_the_commission(built):
    # Spec silent (the fix's decision): f1 earns a fixed 3 on pf1 (600); six refunds of 100
    # each: round_half_up(3 * 100 / 600 = 0.5) = 1 for each of the first three, then the
    # commission is used up: 0, 0, and the last (completing the full refund) 3 - 3 = 0.
    assert commissions(built, "pf1") == {"f1": (1, "fixed", 3)}
    assert [commissions(built, f"rf{i}")["f1"][2] for i in range(1, 7)] == [-1, -1, -1, 0, 0, 0]


def test_conservation_on_every_payment_and_refund_row(built):
    for event_id in built["revenue"]:
        f, channel, agents, net, _neg = revenue(built, event_id)
        assert f == channel + net + agents, event_id
        assert agents == sum(a for _l, _m, a in commissions(built, event_id).values()), event_id


# --- C, D: negative margins are flagged, never clipped ---------------------------------------


def test_negative_spread_is_kept_and_flagged(built):
    # pc1: F = 200; c1 cost 250 -> spread -50; up = 250; channel 110; net = 140
    assert commissions(built, "pc1") == {"c1": (1, "markup", -50)}
    assert revenue(built, "pc1") == (200, 110, -50, 140, True)


def test_refund_of_a_negative_spread_rounds_half_away_from_zero(built):
    # pc2 1,000: F = 20; c1 cost round(25) = 25 -> spread -5; channel round(10)+10 = 20;
    # net = 25 - 20 = 5. rc1 refunds 300 (30 %): c1 reversed round_half_up(-5 * 0.3 = -1.5) = -2,
    # so the refund row gives c1 +2; F reversed 6, channel 6; the platform takes the rest:
    # -6 - (-6) - 2 = -2
    assert commissions(built, "pc2") == {"c1": (1, "markup", -5)}
    assert revenue(built, "pc2") == (20, 20, -5, 5, True)
    assert commissions(built, "rc1") == {"c1": (1, "markup", 2)}
    assert revenue(built, "rc1")[:4] == (-6, -6, 2, -2)


def test_direct_merchant_negative_platform_net_is_kept_and_flagged(built):
    # pd1: no agent; F = 100; channel 110; platform_net = -10
    assert commissions(built, "pd1") == {}
    assert revenue(built, "pd1") == (100, 110, 0, -10, True)


# --- E: effective dating at the instant -------------------------------------------------------


def test_tree_prices_and_models_at_the_exact_switch_instant(built):
    # pe1 one second before: price 300 -> F 300; e1 cost 200 -> 100, up 200; parent e2 pct 20 bps
    # -> 20; channel 110; net = 200 - 110 - 20 = 70
    assert commissions(built, "pe1") == {"e1": (1, "markup", 100), "e2": (2, "percentage", 20)}
    assert revenue(built, "pe1") == (300, 110, 120, 70, False)
    # pe2 at the switch (valid_from inclusive, valid_to exclusive): price 400 -> F 400;
    # e1 cost 250 -> 150, up 250; parent now e3 fixed 9; net = 250 - 110 - 9 = 131
    assert commissions(built, "pe2") == {"e1": (1, "markup", 150), "e3": (2, "fixed", 9)}
    assert revenue(built, "pe2") == (400, 110, 159, 131, False)


# --- G: missing fixed amount -------------------------------------------------------------------


def test_missing_fixed_counts_as_zero(built):
    # pg1: 300 bps of 10,000 + no fixed = 300; channel 110; net 190
    assert revenue(built, "pg1") == (300, 110, 0, 190, False)


def test_missing_fixed_raises_a_data_quality_warning(built):
    # commission.md: "missing fixed for that currency = 0, and a data-quality warning"
    results = (built["run_results"] or {}).get("results", [])
    warned = [r["unique_id"] for r in results
              if r["status"] in ("warn", "fail", "error") and "fixed" in r["unique_id"]]
    assert warned, "no dbt test warned about the price without a fixed amount (prc for m_g USD)"


# --- H: ETH above 2^63 ---------------------------------------------------------------------------


def test_eth_amounts_above_2_63_through_fees_commission_and_refund(built):
    # F = round(A/40) + 2e15; cost = round(A/50) + 1e15; channel = round(A/100)
    f, cost, channel = (24_691_360_027_469_135_802_747, 19_753_087_421_975_308_642_198,
                        9_876_543_210_987_654_321_099)
    assert commissions(built, "ph1") == {"h1": (1, "markup", f - cost)}
    assert revenue(built, "ph1") == (f, channel, f - cost, cost - channel, False)
    # refund r of A: each part round_half_up(part * r / A); the platform takes the residual
    f_rev, h_rev, ch_rev = (8_230_453_342_489_711_934_249, 1_646_090_868_497_942_386_850,
                            3_292_181_070_329_218_107_033)
    assert commissions(built, "rh1") == {"h1": (1, "markup", -h_rev)}
    assert revenue(built, "rh1") == (-f_rev, -ch_rev, -h_rev, -(f_rev - h_rev - ch_rev), False)
    line = built["lines"]["payment:ph1"]
    assert (line["currency"], int(line["gross_minor"]), int(line["fee_minor"])) == \
        ("ETH", ETH_AMOUNT, f)


# --- J, K: FX into the settlement currency --------------------------------------------------


def test_jpy_on_a_usd_statement(built):
    # F = round(12345 * 325 / 10000 = 401.2125) = 401 JPY.
    # rate JPY->USD = 1.0850 / 162.50 = 0.006676923076923...; exp USD 2 - JPY 0 = 2
    # gross = round(12345 * 0.0066769230769 * 100 = 8242.66) = 8243; fee = round(267.74) = 268
    line = built["lines"]["payment:pj1"]
    assert (line["currency"], int(line["gross_minor"]), int(line["fee_minor"]),
            int(line["net_minor"])) == ("USD", 8_243, 268, 7_975)
    assert line["fx_rate_id"] and "JPY" in line["fx_rate_id"] and "USD" in line["fx_rate_id"]
    rate = Decimal(line["fx_rate"])
    assert len(rate.normalize().as_tuple().digits) >= 10  # at least 10 significant digits


def test_usd_and_kwd_on_a_kwd_statement(built):
    # pk1 10,000 USD cents, F = 250 + 25 = 275; USD->KWD = 0.3340/1.0850 = 0.30783410138...;
    # exp KWD 3 - USD 2 = 1: gross = round(10000 * 0.3078341 * 10 = 30783.41) = 30783,
    # fee = round(275 * 0.3078341 * 10 = 846.54) = 847
    line = built["lines"]["payment:pk1"]
    assert (line["currency"], int(line["gross_minor"]), int(line["fee_minor"])) == \
        ("KWD", 30_783, 847)
    assert line["fx_rate_id"]
    # pk2 1,234,567 fils: F = round(30864.175) + 100 = 30,964, no conversion
    line = built["lines"]["payment:pk2"]
    assert (line["currency"], int(line["gross_minor"]), int(line["fee_minor"]),
            line["fx_rate_id"]) == ("KWD", 1_234_567, 30_964, None)


# --- statements ----------------------------------------------------------------------------------


def _statement(built, sid):
    r = built["statements"][sid]
    return {k: int(r[f"{k}_minor"]) for k in (
        "opening_balance", "gross", "refunds", "fees", "adjustments", "net_activity", "payouts",
        "closing_balance")}


def test_monthly_statement_with_adjustment_and_payout(built):
    # m_a March: gross 12,345 + 10,050 = 22,395; fees 400 + 332 = 732; adjustment +700 credit;
    # payout 5,000: net_activity = 22,395 - 732 + 700 = 22,363; closing 17,363
    s = _statement(built, "m_a:USD:2024-03-01")
    assert (s["opening_balance"], s["gross"], s["refunds"], s["fees"], s["payouts"],
            s["net_activity"], s["closing_balance"]) == (0, 22_395, 0, 732, 5_000, 22_363, 17_363)
    adj = built["lines"]["adjustment:adj_a"]
    assert adj["description"] == "goodwill credit" and adj["created_by"] == "usr_finance"
    assert built["lines"]["payout:wd_a"]["payout_id"] == "wd_a"


def test_weekly_statements_chain_opening_to_closing(built):
    # m_b week of 2024-03-04: gross 10,000, refunds 6,000, fees 330 - 99 - 99 = 132
    # -> closing 3,868; week of 2024-03-11: opening 3,868, refund 4,000, fees -132 -> closing 0
    w1 = _statement(built, "m_b:USD:2024-03-04")
    w2 = _statement(built, "m_b:USD:2024-03-11")
    assert (w1["gross"], w1["refunds"], w1["fees"], w1["closing_balance"]) == \
        (10_000, 6_000, 132, 3_868)
    assert (w2["opening_balance"], w2["refunds"], w2["fees"], w2["closing_balance"]) == \
        (3_868, 4_000, -132, 0)
    assert built["statements"]["m_b:USD:2024-03-11"]["period_end"] == date(2024, 3, 17)


def test_daily_statement_settles_t_plus_n(built):
    s = built["statements"]["m_d:USD:2024-03-12"]
    assert (s["period_end"], s["settles_on"]) == (date(2024, 3, 12), date(2024, 3, 14))
    assert int(s["closing_balance_minor"]) == 10_000 - 100


def test_every_line_links_to_its_source(built):
    for line_id, r in built["lines"].items():
        assert r["payment_id"] or r["refund_id"] or r["payout_id"] or r["adjustment_id"], line_id


# --- the finance tie-out per period (settlement.md) -----------------------------------------


def test_finance_tie_out_for_march_in_usd(built):
    # settlement.md: all merchants' statements + agents' commission statements + platform net
    # + channel cost = gross captured - refunds, to the minor unit. Taken over the merchants
    # that take and settle USD (m_a, m_b, m_c, m_d, m_e, m_g) and the USD agents above them.
    usd = {"m_a", "m_b", "m_c", "m_d", "m_e", "m_g", "m_f"}
    items = [r for r in built["lines"].values()
             if r["merchant_id"] in usd and r["item_type"] in ("payment", "refund")]
    merchants_net = sum(int(r["gross_minor"]) - int(r["fee_minor"]) for r in items)
    gross_less_refunds = sum(int(r["gross_minor"]) for r in items)
    agents = sum(int(r["net_minor"]) for r in built["agent_statements"].values()
                 if r["currency"] == "USD")
    rev = [r for r in built["revenue"].values() if r["merchant_id"] in usd]
    platform = sum(int(r["platform_net_minor"]) for r in rev)
    channel = sum(int(r["channel_cost_minor"]) for r in rev)
    # by hand: gross 22,395 + 10,000 + 11,000 + 10,000 + 20,000 + 10,000 = 83,395,
    # refunds 10,000 + 300 = 10,300 (m_f's 600 is captured and refunded in full: 0)
    assert gross_less_refunds == 73_095
    assert merchants_net + agents + platform + channel == gross_less_refunds


# --- agents' commission statements -----------------------------------------------------------


def test_agent_statement_by_model_and_level_with_reversals_separate(built):
    rows = [r for r in built["agent_lines"] if r["agent_id"] == "b3"
            and r["line_type"] == "commission"]
    assert [(r["model"], r["level"], int(r["earned_minor"]), int(r["reversed_minor"]),
             int(r["net_minor"])) for r in rows] == [("fixed", 3, 5, -5, 0)]
    b2 = [r for r in built["agent_lines"] if r["agent_id"] == "b2"]
    assert [(r["model"], r["level"], int(r["earned_minor"]), int(r["reversed_minor"]))
            for r in b2] == [("markup", 2, 130, -130)]
    # e1 earned on two payments at one level and one model: 100 + 150
    e1 = built["agent_statements"]["e1:USD:2024-03-01"]
    assert (int(e1["earned_minor"]), int(e1["reversed_minor"]), int(e1["net_minor"])) == \
        (250, 0, 250)


# --- both engines ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("key", ["commissions", "revenue", "statements", "lines",
                                 "agent_statements", "agent_lines"])
def test_duckdb_and_postgres_agree(built_duckdb, built_postgres, key):
    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return sorted((norm(x) for x in v), key=repr)
        if isinstance(v, Decimal) or isinstance(v, int) and not isinstance(v, bool):
            return Decimal(v)
        return v
    assert norm(built_duckdb[key]) == norm(built_postgres[key])
