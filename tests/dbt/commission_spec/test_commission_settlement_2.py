"""Second-round audit of commission.md, settlement.md and money.md: new scenarios, black-box
through the raw tables the ledger extract fills and the marts `dbt build` makes, on DuckDB and on
Postgres. Two builds per engine: the books as of 2024-04-02 (March closes), then as of 2024-04-03
after late data, a rate-card change, a re-parenting and a change of the merchant's T+N.

Every expected figure was worked out by hand from the spec text; the working is in the comments.
round() below is ROUND_HALF_UP (half away from zero), money.md rule 4.

Channel ch_card: USD 100 bps + 10, JPY 100 bps + 0, KWD 100 bps + 20 fils; ch_crypto ETH 100 bps.

P  a five-level tree under merchant m_p (settles USD, monthly, T+0; T+2 from the second build):
       m_p -> p1 percentage 50 bps -> p2 markup -> p3 fixed -> p4 markup -> p5 percentage 10 bps
       -> platform, in USD, JPY (exponent 0) and KWD (exponent 3); fixed per currency
       (p3: USD 7, JPY 3, KWD 75 fils).
       merchant m_p: USD 250 + 30, JPY 300 + 10, KWD 250 + 150
       cost p2:      USD 200 + 20, JPY 350 + 0 (above m_p's: a negative spread), KWD 200 + 100
       cost p4:      USD 150 + 10, JPY 200 + 5,  KWD 150 + 50
       m_p3 (USD 300 + 0) hangs directly under p3, so p3 earns at level 1 and at level 3.
   At 2024-04-03 00:00:00 (second build): m_p's USD price becomes 260 + 30 and p3 is re-parented
   from p4 to p5.
Q  ETH (18 decimals) above 2^63 through a percentage (q1, 75 bps) and a fixed agent (q2, 1e15 wei)
   under merchant m_q (ETH 250 bps + 2e15), settled in ETH, daily T+1.
W  m_w: directly under the platform, weekly (ISO week from Monday) T+2, USD 200 + 20; payments on
   either side of the week boundary, a refund, a chargeback, a manual debit and a payout.
D  m_d2: directly under the platform, daily T+3, USD 100 + 0; across a leap day.
J  m_j: settles JPY (exponent 0), takes USD (2) and KWD (3): conversion divides.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.commission_spec.marts import (
    build_twice,
    commissions,
    revenue,
    statement,
)
from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 1, 1)
SWITCH = datetime(2024, 4, 3)  # new USD price for m_p, p3 re-parented under p5
FIRST_AS_OF, SECOND_AS_OF = date(2024, 4, 2), date(2024, 4, 3)

ETH_A = 987_654_321_098_765_432_109_877  # ~9.9e23 wei: F, the fees and commissions pass 2^63
ETH_R = 123_456_789_012_345_678_901_234  # a partial refund of it


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


MERCHANTS = [  # id, agent, settlement currency, cycle, T+N
    ("m_p", "p1", "USD", "monthly", 0),
    ("m_p3", "p3", "USD", "monthly", 0),
    ("m_w", None, "USD", "weekly", 2),
    ("m_d2", None, "USD", "daily", 3),
    ("m_q", "q1", "ETH", "daily", 1),
    ("m_j", None, "JPY", "monthly", 0),
]
AGENTS = ["p1", "p2", "p3", "p4", "p5", "q1", "q2"]
PARENTS = [  # id, agent, parent, valid_from, valid_to
    (1, "p1", "p2", T0, None), (2, "p2", "p3", T0, None), (3, "p3", "p4", T0, None),
    (4, "p4", "p5", T0, None), (5, "p5", None, T0, None),
    (6, "q1", "q2", T0, None), (7, "q2", None, T0, None),
]
MODELS = [  # agent, currency, model, pct_bps, fixed_minor
    *[(a, c, m, pct, fixed) for c, p3_fixed in (("USD", 7), ("JPY", 3), ("KWD", 75))
      for a, m, pct, fixed in (("p1", "percentage", 50, None), ("p2", "markup", None, None),
                               ("p3", "fixed", None, p3_fixed), ("p4", "markup", None, None),
                               ("p5", "percentage", 10, None))],
    ("q1", "ETH", "percentage", 75, None), ("q2", "ETH", "fixed", None, 10**15),
]
PRICES = [  # id, subject_type, subject_id, currency, bps, fixed
    ("ch_usd", "channel", "ch_card", "USD", 100, 10),
    ("ch_jpy", "channel", "ch_card", "JPY", 100, 0),
    ("ch_kwd", "channel", "ch_card", "KWD", 100, 20),
    ("ch_eth", "channel", "ch_crypto", "ETH", 100, 0),
    ("m_p_usd", "merchant", "m_p", "USD", 250, 30),
    ("m_p_jpy", "merchant", "m_p", "JPY", 300, 10),
    ("m_p_kwd", "merchant", "m_p", "KWD", 250, 150),
    ("p2_usd", "agent", "p2", "USD", 200, 20),
    ("p2_jpy", "agent", "p2", "JPY", 350, 0),
    ("p2_kwd", "agent", "p2", "KWD", 200, 100),
    ("p4_usd", "agent", "p4", "USD", 150, 10),
    ("p4_jpy", "agent", "p4", "JPY", 200, 5),
    ("p4_kwd", "agent", "p4", "KWD", 150, 50),
    ("m_p3_usd", "merchant", "m_p3", "USD", 300, 0),
    ("m_w_usd", "merchant", "m_w", "USD", 200, 20),
    ("m_d2_usd", "merchant", "m_d2", "USD", 100, 0),
    ("m_q_eth", "merchant", "m_q", "ETH", 250, 2 * 10**15),
    ("m_j_usd", "merchant", "m_j", "USD", 250, 30),
    ("m_j_kwd", "merchant", "m_j", "KWD", 250, 150),
]
PAYMENTS = [  # id, merchant, amount, currency, captured_at, channel
    ("pp_usd", "m_p", 10_100, "USD", "2024-03-04 10:00:00", "ch_card"),
    ("pp_jpy", "m_p", 10_000, "JPY", "2024-03-04 11:00:00", "ch_card"),
    ("pp_kwd", "m_p", 1_234_567, "KWD", "2024-03-04 12:00:00", "ch_card"),
    ("pp3", "m_p3", 5_000, "USD", "2024-03-12 10:00:00", "ch_card"),
    ("pp_apr0", "m_p", 20_000, "USD", "2024-04-02 23:59:59", "ch_card"),
    ("pw1", "m_w", 10_000, "USD", "2024-03-03 23:59:59", "ch_card"),  # Sunday
    ("pw2", "m_w", 8_000, "USD", "2024-03-04 00:00:00", "ch_card"),  # Monday
    ("pd_a", "m_d2", 5_000, "USD", "2024-02-29 23:59:59", "ch_card"),
    ("pd_b", "m_d2", 5_000, "USD", "2024-03-01 00:00:00", "ch_card"),
    ("pq", "m_q", ETH_A, "ETH", "2024-03-05 10:00:00", "ch_crypto"),
    ("pj_usd", "m_j", 12_345, "USD", "2024-03-04 13:00:00", "ch_card"),
    ("pj_kwd", "m_j", 2_345, "KWD", "2024-03-04 14:00:00", "ch_card"),
]
LATE_PAYMENTS = [  # first seen by the second build
    ("pp_late", "m_p", 4_000, "USD", "2024-03-20 10:00:00", "ch_card"),  # March closed by then
    ("pp_apr", "m_p", 20_000, "USD", "2024-04-03 00:00:00", "ch_card"),  # at the switch
]
REFUNDS = [  # id, payment, amount, succeeded_at
    ("rp_usd1", "pp_usd", 2_525, "2024-03-10 10:00:00"),  # 25 %
    ("rp_jpy", "pp_jpy", 1_875, "2024-03-06 10:00:00"),  # 18.75 %
    ("rw2", "pw2", 2_000, "2024-03-05 10:00:00"),
    ("rq", "pq", ETH_R, "2024-03-07 10:00:00"),
]
LATE_REFUNDS = [("rp_usd2", "pp_usd", 2_525, "2024-04-03 09:00:00")]  # another 25 %
ECB = {"2024-03-04": {"USD": "1.0900", "JPY": "163.00", "KWD": "0.3350"},
       "2024-03-06": {"USD": "1.0850", "JPY": "162.50", "KWD": "0.3340"}}
CHARGEBACKS = [  # psp line, payment, gross, currency, transaction_at
    ("cb_pw1", "pw1", -10_000, "USD", "2024-03-06 10:00:00"),
    ("cb_pp_jpy", "pp_jpy", -8_125, "JPY", "2024-03-06 11:00:00"),  # what rp_jpy left
]
WITHDRAWALS = [  # id, owner, amount, paid_at
    ("wd_w", "m_w", 5_000, "2024-03-08 10:00:00"),
    ("wd_p", "m_p", 100_000, "2024-03-28 10:00:00"),
]
ADJUSTMENTS = [("adj_w", "m_w", -300, "USD", "chargeback handling fee", "usr_finance",
                "2024-03-07 09:00:00")]


# --- loading ------------------------------------------------------------------------------------


def _insert(warehouse, table_name: str, rows: list[dict]) -> None:
    insert_raw(warehouse, table_name, rows, T0)


def _payment_rows(payments, refunded: dict[str, int]):
    return [{"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}",
             "amount_minor": amount, "currency": ccy,
             "payment_method_type": "crypto" if ch == "ch_crypto" else "card",
             "status": ("refunded" if refunded.get(pid) == amount else
                        "partially_refunded" if refunded.get(pid) else "success"),
             "channel_id": ch, "channel_reference": f"chref-{pid}", "risk_decision": "approve",
             "customer_id": "cus_1", "refunded_minor": refunded.get(pid, 0),
             "captured_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
            for pid, m, amount, ccy, at, ch in payments]


def _refund_rows(refunds):
    payments = {p[0]: p for p in PAYMENTS + LATE_PAYMENTS}
    return [{"id": rid, "payment_id": pid, "merchant_id": payments[pid][1],
             "amount_minor": amount, "currency": payments[pid][3], "status": "succeeded",
             "succeeded_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
            for rid, pid, amount, at in refunds]


def _refunded(refunds) -> dict[str, int]:
    out: dict[str, int] = {}
    for _rid, pid, amount, _at in refunds:
        out[pid] = out.get(pid, 0) + amount
    return out


def load_first(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "agent_id": agent, "settlement_currency": ccy,
         "settlement_cycle": cycle, "settlement_delay_days": delay, "created_at": T0,
         "updated_at": T0} for m, agent, ccy, cycle, delay in MERCHANTS])
    _insert(warehouse, "agents", [
        {"id": a, "name": a, "status": "active",
         "statement_cycle": "weekly" if a == "q2" else "monthly", "created_at": T0,
         "updated_at": T0} for a in AGENTS])
    _insert(warehouse, "agent_parents", [
        {"id": i, "agent_id": a, "parent_id": p, "valid_from": vf, "valid_to": vt,
         "created_at": T0, "updated_at": T0} for i, a, p, vf, vt in PARENTS])
    _insert(warehouse, "commission_models", [
        {"id": f"cm_{a}_{c}", "agent_id": a, "currency": c, "model": m, "pct_bps": pct,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for a, c, m, pct, fixed in MODELS])
    _insert(warehouse, "channels", [
        {"id": ch, "name": ch, "channel_type": kind, "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}
        for ch, kind in (("ch_card", "card"), ("ch_crypto", "crypto"))])
    _insert(warehouse, "prices", [
        {"id": pid, "subject_type": st, "subject_id": sid, "currency": c, "rate_bps": bps,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for pid, st, sid, c, bps, fixed in PRICES])
    _insert(warehouse, "payments", _payment_rows(PAYMENTS, _refunded(REFUNDS)))
    _insert(warehouse, "refunds", _refund_rows(REFUNDS))
    _insert(warehouse, "psp_lines", [
        {"psp_line_id": lid, "file_id": f"f_{lid}", "format": "clearhouse_psp_csv",
         "line_number": 2, "settlement_date": ts(at).date(), "record_type": "chargeback",
         "channel": "ch_card", "channel_reference": f"chref-{pid}", "merchant_reference": pid,
         "transaction_at": ts(at), "currency": ccy, "gross_minor": gross, "fee_minor": 0,
         "net_minor": gross, "status": "BOOK"} for lid, pid, gross, ccy, at in CHARGEBACKS])
    _insert(warehouse, "withdrawals", [
        {"id": wid, "owner_type": "merchant", "owner_id": owner, "amount_minor": amount,
         "currency": "USD", "status": "paid", "decided_by": "usr_ops", "decided_at": ts(at),
         "paid_at": ts(at), "created_at": T0, "updated_at": ts(at)}
        for wid, owner, amount, at in WITHDRAWALS])
    _insert(warehouse, "settlement_adjustments", [
        {"id": aid, "merchant_id": m, "amount_minor": amount, "currency": ccy, "reason": reason,
         "created_by": who, "effective_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
        for aid, m, amount, ccy, reason, who, at in ADJUSTMENTS])
    _insert(warehouse, "fx_rates", [
        {"fx_rate_id": f"ecb:{day}:{ccy}", "file_id": f"ecb_{day}", "source": "ecb",
         "rate_date": date.fromisoformat(day), "base_currency": "EUR", "quote_currency": ccy,
         "rate_text": rate, "rate": Decimal(rate)}
        for day, by_ccy in ECB.items() for ccy, rate in by_ccy.items()])


def load_second(warehouse) -> None:
    """What the API would have recorded by 2024-04-03: a capture of 2024-03-20 whose callback
    came late, a capture and a refund of the day, m_p's new USD price and p3's new parent from
    2024-04-03 00:00:00 (the old rows closed at that instant), and m_p moved from T+0 to T+2."""
    ex = warehouse.execute_many
    ex(f"UPDATE {RAW_SCHEMA}.prices SET valid_to = ? WHERE id = ?", [(SWITCH, "m_p_usd")])
    _insert(warehouse, "prices", [
        {"id": "m_p_usd_2", "subject_type": "merchant", "subject_id": "m_p", "currency": "USD",
         "rate_bps": 260, "fixed_minor": 30, "valid_from": SWITCH, "valid_to": None,
         "created_at": SWITCH, "updated_at": SWITCH}])
    ex(f"UPDATE {RAW_SCHEMA}.agent_parents SET valid_to = ? WHERE id = ?", [(SWITCH, 3)])
    _insert(warehouse, "agent_parents", [
        {"id": 8, "agent_id": "p3", "parent_id": "p5", "valid_from": SWITCH, "valid_to": None,
         "created_at": SWITCH, "updated_at": SWITCH}])
    ex(f"UPDATE {RAW_SCHEMA}.merchants SET settlement_delay_days = ? WHERE id = ?",
       [(2, "m_p")])
    refunded = _refunded(REFUNDS + LATE_REFUNDS)
    ex(f"UPDATE {RAW_SCHEMA}.payments SET refunded_minor = ? WHERE id = ?",
       [(Decimal(refunded["pp_usd"]), "pp_usd")])
    _insert(warehouse, "payments", _payment_rows(LATE_PAYMENTS, refunded))
    _insert(warehouse, "refunds", _refund_rows(LATE_REFUNDS))


# --- building -----------------------------------------------------------------------------------


def _build_twice(warehouse, tmp_path_factory, _dbt_build) -> dict:
    # build_twice runs dbt itself (the same run_dbt_build the fixture hands over)
    return build_twice(warehouse, tmp_path_factory.mktemp(f"audit2_{warehouse.engine}"),
                       load_first, FIRST_AS_OF, load_second, SECOND_AS_OF)


built_duckdb, built_postgres, built = built_on_both_engines("built", _build_twice)


def agent_lines(run: dict, statement_id: str) -> dict[str, tuple]:
    """line_id -> (earned, reversed, net) of one agent commission statement."""
    return {r["line_id"]: (int(r["earned_minor"]), int(r["reversed_minor"]),
                           int(r["net_minor"]))
            for r in run["agent_lines"] if r["statement_id"] == statement_id}


# --- the builds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["first", "second"])
def test_both_builds_succeed(built, run):
    assert built[run]["returncode"] == 0, built[run]["output"][-6000:]


# --- P: five levels, three models, three currencies -------------------------------------------


def test_five_level_chain_in_usd_with_a_negative_platform_net(built):
    # pp_usd 10,100 USD (halves): F = round(252.5) + 30 = 283.
    #   p1 percentage: round(10,100 * 50 / 10000 = 50.5) = 51; up stays 283
    #   p2 markup: fee(cost) = round(202.0) + 20 = 222 -> earns 283 - 222 = 61; up = 222
    #   p3 fixed 7; up stays 222
    #   p4 markup: fee(cost) = round(151.5) + 10 = 162 -> earns 222 - 162 = 60; up = 162
    #   p5 percentage: round(10.1) = 10; up stays 162
    #   channel = round(101.0) + 10 = 111
    #   platform_net = 162 - 111 - (51 + 7 + 10) = -17: negative, flagged, not clipped
    #   conservation: 111 + (-17) + (51 + 61 + 7 + 60 + 10 = 189) = 283
    assert commissions(built["first"], "pp_usd") == {
        "p1": (1, "percentage", 51), "p2": (2, "markup", 61), "p3": (3, "fixed", 7),
        "p4": (4, "markup", 60), "p5": (5, "percentage", 10)}
    assert revenue(built["first"], "pp_usd") == (283, 111, 189, -17, True)


def test_five_level_chain_in_jpy_with_a_negative_spread(built):
    # pp_jpy 10,000 JPY (exponent 0): F = 300 + 10 = 310.
    #   p1 round(50.0) = 50; p2 fee(cost 350 bps) = 350 -> earns 310 - 350 = -40 (negative
    #   spread); up = 350; p3 fixed 3 (JPY); p4 fee(cost) = 200 + 5 = 205 -> earns 145; up = 205;
    #   p5 10; channel 100; platform_net = 205 - 100 - (50 + 3 + 10) = 42
    #   conservation: 100 + 42 + (50 - 40 + 3 + 145 + 10 = 168) = 310
    assert commissions(built["first"], "pp_jpy") == {
        "p1": (1, "percentage", 50), "p2": (2, "markup", -40), "p3": (3, "fixed", 3),
        "p4": (4, "markup", 145), "p5": (5, "percentage", 10)}
    assert revenue(built["first"], "pp_jpy") == (310, 100, 168, 42, True)


def test_refund_reverses_a_negative_spread_half_away_from_zero(built):
    # rp_jpy 1,875 of 10,000 JPY (0.1875):
    #   F 310 * 0.1875 = 58.125 -> 58; channel 18.75 -> 19
    #   p1 9.375 -> 9; p2 -40 * 0.1875 = -7.5 -> -8 (half away from zero, so p2 gets +8 back);
    #   p3 0.5625 -> 1; p4 27.1875 -> 27; p5 1.875 -> 2. Agents: -9 + 8 - 1 - 27 - 2 = -31
    #   platform takes the rest: -58 - (-19) - (-31) = -8
    assert commissions(built["first"], "rp_jpy") == {
        "p1": (1, "percentage", -9), "p2": (2, "markup", 8), "p3": (3, "fixed", -1),
        "p4": (4, "markup", -27), "p5": (5, "percentage", -2)}
    assert revenue(built["first"], "rp_jpy")[:4] == (-58, -19, -31, -8)


def test_five_level_chain_in_kwd_in_fils(built):
    # pp_kwd 1,234,567 fils (exponent 3): F = round(30,864.175) + 150 = 31,014
    #   p1 round(6,172.835) = 6,173; p2 fee(cost) = round(24,691.34) + 100 = 24,791 -> 6,223;
    #   p3 75 fils; p4 fee(cost) = round(18,518.505) + 50 = 18,569 -> 24,791 - 18,569 = 6,222;
    #   p5 round(1,234.567) = 1,235; channel round(12,345.67) + 20 = 12,366
    #   platform_net = 18,569 - 12,366 - (6,173 + 75 + 1,235) = -1,280
    #   conservation: 12,366 - 1,280 + 19,928 = 31,014
    assert commissions(built["first"], "pp_kwd") == {
        "p1": (1, "percentage", 6_173), "p2": (2, "markup", 6_223), "p3": (3, "fixed", 75),
        "p4": (4, "markup", 6_222), "p5": (5, "percentage", 1_235)}
    assert revenue(built["first"], "pp_kwd") == (31_014, 12_366, 19_928, -1_280, True)
    rates = {r["beneficiary_id"]: (r["rate_bps"], r["pct_bps"], r["fixed_minor"])
             for r in built["first"]["commissions"] if r["event_id"] == "pp_kwd"}
    assert {a: tuple(None if v is None else int(v) for v in t) for a, t in rates.items()} == {
        "p1": (None, 50, None), "p2": (200, None, 100), "p3": (None, None, 75),
        "p4": (150, None, 50), "p5": (None, 10, None)}


def test_partial_refund_of_the_five_level_chain(built):
    # rp_usd1 2,525 of 10,100 (25 %): F 70.75 -> 71; channel 27.75 -> 28;
    #   p1 12.75 -> 13; p2 15.25 -> 15; p3 1.75 -> 2; p4 15; p5 2.5 -> 3 (agents -48)
    #   platform: -71 + 28 + 48 = 5
    expected = {"p1": (1, "percentage", -13), "p2": (2, "markup", -15), "p3": (3, "fixed", -2),
                "p4": (4, "markup", -15), "p5": (5, "percentage", -3)}
    assert commissions(built["first"], "rp_usd1") == expected
    assert revenue(built["first"], "rp_usd1")[:4] == (-71, -28, -48, 5)
    # rp_usd2 (second build) is another 25 %, not completing the refund: the same figures
    assert commissions(built["second"], "rp_usd2") == expected
    assert revenue(built["second"], "rp_usd2")[:4] == (-71, -28, -48, 5)


def test_an_agent_at_two_levels(built):
    # pp3 5,000 USD, m_p3 directly under p3: F = 150; p3 fixed 7 at level 1; up 150;
    # p4 markup fee(cost) = 75 + 10 = 85 -> 65; up 85; p5 5; channel 60; net 85 - 60 - 12 = 13
    assert commissions(built["first"], "pp3") == {
        "p3": (1, "fixed", 7), "p4": (2, "markup", 65), "p5": (3, "percentage", 5)}
    assert revenue(built["first"], "pp3") == (150, 60, 77, 13, False)


# --- time: a rate-card change and a re-parenting at 2024-04-03 00:00:00 ------------------------


def test_the_second_before_the_switch_uses_the_old_tree_and_price(built):
    # pp_apr0 20,000 at 2024-04-02 23:59:59 (valid_to is exclusive, so the old rows hold):
    #   F = 500 + 30 = 530; p1 100; p2 530 - (400 + 20) = 110; p3 7; p4 420 - (300 + 10) = 110;
    #   p5 20; channel 210; platform_net = 310 - 210 - 127 = -27
    for run in ("first", "second"):
        assert commissions(built[run], "pp_apr0") == {
            "p1": (1, "percentage", 100), "p2": (2, "markup", 110), "p3": (3, "fixed", 7),
            "p4": (4, "markup", 110), "p5": (5, "percentage", 20)}, run
        assert revenue(built[run], "pp_apr0") == (530, 210, 347, -27, True), run


def test_at_the_switch_the_new_price_and_parent_apply(built):
    # pp_apr 20,000 at 2024-04-03 00:00:00 (valid_from is inclusive): F = 520 + 30 = 550;
    #   p1 100; p2 550 - 420 = 130; up 420; p3 7; p3's parent is now p5 (level 4): 20;
    #   p4 is no longer on the chain; channel 210; platform_net = 420 - 210 - 127 = 83
    assert commissions(built["second"], "pp_apr") == {
        "p1": (1, "percentage", 100), "p2": (2, "markup", 130), "p3": (3, "fixed", 7),
        "p5": (4, "percentage", 20)}
    assert revenue(built["second"], "pp_apr") == (550, 210, 257, 83, False)


def test_recomputing_past_days_after_the_rate_card_change_gives_the_same_answer(built):
    first, second = built["first"], built["second"]

    def keyed(rows):
        return {r["commission_id"]: {k: (Decimal(v) if isinstance(v, int | Decimal)
                                         and not isinstance(v, bool) else v)
                                     for k, v in r.items()} for r in rows}

    before, after = keyed(first["commissions"]), keyed(second["commissions"])
    assert before and all(after[cid] == row for cid, row in before.items())
    for event_id, row in first["revenue"].items():
        assert second["revenue"][event_id] == row, event_id


def test_a_late_capture_is_priced_at_its_own_captured_at(built):
    # pp_late 4,000 captured 2024-03-20 (seen on 04-03): the March price and tree.
    #   F = 100 + 30 = 130; p1 20; p2 130 - (80 + 20) = 30; p3 7; p4 100 - (60 + 10) = 30; p5 4;
    #   channel 50; platform_net = 70 - 50 - 31 = -11
    assert commissions(built["second"], "pp_late") == {
        "p1": (1, "percentage", 20), "p2": (2, "markup", 30), "p3": (3, "fixed", 7),
        "p4": (4, "markup", 30), "p5": (5, "percentage", 4)}
    assert revenue(built["second"], "pp_late") == (130, 50, 91, -11, True)


# --- Q: ETH above 2^63 through percentage and fixed ---------------------------------------------

ETH_F = 24_691_360_027_469_135_802_747  # round(A * 250 / 10000 = ...802,746.925) + 2e15
ETH_PCT = 7_407_407_408_240_740_740_824  # round(A * 75 / 10000 = ...740,824.0775)
ETH_CH = 9_876_543_210_987_654_321_099  # round(A / 100 = ...321,098.77)
# refund R of A: round(x * R / A) for each part
ETH_F_REV = 3_086_419_975_308_639_694_406  # ...694,405.859
ETH_PCT_REV = 925_925_917_592_592_591_759  # ...591,759.245
ETH_FIXED_REV = 124_999_998_860_938  # 124,999,998,860,937.50001
ETH_CH_REV = 1_234_567_890_123_456_789_012  # ...789,012.369


def test_eth_through_percentage_and_fixed_agents(built):
    assert ETH_F > 2**63
    # platform_net = F - channel - (pct + fixed) = 7,407,408,408,240,740,740,824
    assert commissions(built["first"], "pq") == {
        "q1": (1, "percentage", ETH_PCT), "q2": (2, "fixed", 10**15)}
    assert revenue(built["first"], "pq") == (
        ETH_F, ETH_CH, ETH_PCT + 10**15, ETH_F - ETH_CH - ETH_PCT - 10**15, False)
    assert commissions(built["first"], "rq") == {
        "q1": (1, "percentage", -ETH_PCT_REV), "q2": (2, "fixed", -ETH_FIXED_REV)}
    # platform: -F_REV + CH_REV + PCT_REV + FIXED_REV = -925,926,042,592,591,452,697
    assert revenue(built["first"], "rq")[:4] == (
        -ETH_F_REV, -ETH_CH_REV, -(ETH_PCT_REV + ETH_FIXED_REV), -925_926_042_592_591_452_697)


def test_eth_statements_and_agent_statements(built):
    run = built["first"]
    # daily T+1, in kind: 03-05 gross A, fee F; 03-07 refund R, fee -F_REV
    assert statement(run, "m_q:ETH:2024-03-05") == (
        0, ETH_A, 0, 0, ETH_F, 0, ETH_A - ETH_F, 0, ETH_A - ETH_F)
    # A - F = 962,962,961,071,296,296,307,130; - R + F_REV = 842,592,592,034,259,257,100,302
    closing = ETH_A - ETH_F - ETH_R + ETH_F_REV
    assert closing == 842_592_592_034_259_257_100_302
    assert statement(run, "m_q:ETH:2024-03-07") == (
        ETH_A - ETH_F, 0, ETH_R, 0, -ETH_F_REV, 0, closing, 0, closing)
    assert run["statements"]["m_q:ETH:2024-03-05"]["settles_on"] == date(2024, 3, 6)
    assert agent_lines(run, "q1:ETH:2024-03-01") == {
        "percentage:1": (ETH_PCT, -ETH_PCT_REV, ETH_PCT - ETH_PCT_REV)}
    # q2 is on weekly statements: the week from Monday 03-04 holds both
    assert agent_lines(run, "q2:ETH:2024-03-04") == {
        "fixed:2": (10**15, -ETH_FIXED_REV, 10**15 - ETH_FIXED_REV)}


# --- settlement: cycles and T+N -------------------------------------------------------------------


def test_daily_t_plus_3_across_a_leap_day(built):
    run = built["first"]
    # pd_a at 2024-02-29 23:59:59 -> the 29th's statement, paid 03-03; pd_b at 03-01 00:00:00
    # -> the 1st's, paid 03-04. F = 50 each; closing 4,950 carries into the 1st.
    a, b = run["statements"]["m_d2:USD:2024-02-29"], run["statements"]["m_d2:USD:2024-03-01"]
    assert (a["period_end"], a["settles_on"], b["period_end"], b["settles_on"]) == \
        (date(2024, 2, 29), date(2024, 3, 3), date(2024, 3, 1), date(2024, 3, 4))
    assert statement(run, "m_d2:USD:2024-02-29") == (0, 5_000, 0, 0, 50, 0, 4_950, 0, 4_950)
    assert statement(run, "m_d2:USD:2024-03-01") == (
        4_950, 5_000, 0, 0, 50, 0, 9_900, 0, 9_900)


def test_weekly_statements_at_the_week_boundary(built):
    run = built["first"]
    # pw1 Sunday 23:59:59 -> week from Mon 02-26 (ends 03-03, paid 03-05): gross 10,000,
    # F = 200 + 20 = 220 -> 9,780.
    assert statement(run, "m_w:USD:2024-02-26") == (0, 10_000, 0, 0, 220, 0, 9_780, 0, 9_780)
    first_week = run["statements"]["m_w:USD:2024-02-26"]
    assert (first_week["period_end"], first_week["settles_on"]) == \
        (date(2024, 3, 3), date(2024, 3, 5))
    # pw2 Monday 00:00:00 -> week from 03-04: gross 8,000, F = 160 + 20 = 180; rw2 2,000 gives
    # back round(180 * 0.25) = 45; chargeback of pw1 10,000 (booked in this week); manual debit
    # 300; payout 5,000. net_activity = 9,780 + 8,000 - 2,000 - 10,000 - 135 - 300 = 5,345;
    # closing = 5,345 - 5,000 = 345
    assert statement(run, "m_w:USD:2024-03-04") == (
        9_780, 8_000, 2_000, 10_000, 135, 300, 5_345, 5_000, 345)
    adjustment = run["lines"]["adjustment:adj_w"]
    assert (adjustment["description"], adjustment["created_by"], int(adjustment["net_minor"])) \
        == ("chargeback handling fee", "usr_finance", -300)
    assert run["lines"]["chargeback:pw1"]["payment_id"] == "pw1"
    assert run["lines"]["payout:wd_w"]["payout_id"] == "wd_w"


# --- settlement: FX into the settlement currency -----------------------------------------------


def test_jpy_and_kwd_lines_on_a_usd_statement(built):
    lines = built["first"]["lines"]

    def line(line_id):
        r = lines[line_id]
        return (r["currency"], r["txn_currency"], int(r["txn_gross_minor"]),
                int(r["txn_fee_minor"]), int(r["gross_minor"]), int(r["fee_minor"]),
                int(r["net_minor"]), r["fx_rate_id"], Decimal(r["fx_rate"]))

    # JPY -> USD on 03-04: 1.0900 / 163.00 = 0.00668711656441717791... (16 places:
    # 0.0066871165644172); exponent USD 2 - JPY 0 = 2:
    # gross round(10,000 * rate * 100 = 6,687.1166) = 6,687; fee round(310 * rate * 100 =
    # 207.3006) = 207; net 6,480
    assert line("payment:pp_jpy")[:8] == ("USD", "JPY", 10_000, 310, 6_687, 207, 6_480,
                                          "ecb:2024-03-04:JPY:USD")
    assert abs(line("payment:pp_jpy")[8] - Decimal("1.0900") / Decimal("163.00")) < \
        Decimal("1e-15")
    # KWD -> USD on 03-04: 1.0900 / 0.3350 = 3.25373134328358208955...; exponent 2 - 3 = -1:
    # gross round(1,234,567 * 3.2537313432835821 / 10 = 401,694.934) = 401,695;
    # fee round(31,014 * 0.32537313 = 10,091.122) = 10,091; net 391,604
    assert line("payment:pp_kwd")[:8] == ("USD", "KWD", 1_234_567, 31_014, 401_695, 10_091,
                                          391_604, "ecb:2024-03-04:KWD:USD")
    # the refund takes its own day's rate (03-06: 1.0850 / 162.50 = 0.0066769230769231):
    # gross round(-1,875 * 0.66769 = -1,251.923) = -1,252; fee round(-58 * 0.66769 = -38.726)
    # = -39; net -1,213
    assert line("refund:rp_jpy")[:8] == ("USD", "JPY", -1_875, -58, -1_252, -39, -1_213,
                                         "ecb:2024-03-06:JPY:USD")
    assert line("payment:pp_usd")[7] is None  # no conversion, no rate id
    # m_j settles JPY. USD -> JPY on 03-04: 163.00 / 1.0900 = 149.5412844036697248; exponent
    # 0 - 2 = -2: gross round(12,345 * 1.4954128 = 18,460.87) = 18,461; F = round(308.625) + 30
    # = 339 -> round(506.945) = 507
    assert line("payment:pj_usd")[:8] == ("JPY", "USD", 12_345, 339, 18_461, 507, 17_954,
                                          "ecb:2024-03-04:USD:JPY")
    # KWD -> JPY: 163.00 / 0.3350 = 486.5671641791044776; exponent 0 - 3 = -3: gross
    # round(2,345 * 0.48656716 = 1,141.0) = 1,141; F = round(58.625) + 150 = 209 -> round(101.69)
    # = 102
    assert line("payment:pj_kwd")[:8] == ("JPY", "KWD", 2_345, 209, 1_141, 102, 1_039,
                                          "ecb:2024-03-04:KWD:JPY")
    assert statement(built["first"], "m_j:JPY:2024-03-01") == (
        0, 19_602, 0, 0, 609, 0, 18_993, 0, 18_993)


def test_monthly_usd_statement_of_fx_lines_refunds_and_a_payout(built):
    # m_p March: gross 10,100 + 6,687 + 401,695 = 418,482; refunds 2,525 + 1,252 = 3,777;
    # chargeback of what rp_jpy left of pp_jpy, 8,125 JPY on 03-06: round(-8,125 *
    # 0.0066769230769231 * 100 = -5,425.00000000002) = -5,425 USD;
    # fees 283 + 207 + 10,091 - 71 - 39 = 10,471; net_activity = 418,482 - 3,777 - 5,425
    # - 10,471 = 398,809; payout 100,000 -> closing 298,809. T+0: paid on 03-31.
    run = built["first"]
    assert statement(run, "m_p:USD:2024-03-01") == (
        0, 418_482, 3_777, 5_425, 10_471, 0, 398_809, 100_000, 298_809)
    cb = run["lines"]["chargeback:pp_jpy"]
    assert (cb["currency"], int(cb["txn_gross_minor"]), int(cb["gross_minor"]), cb["fx_rate_id"],
            cb["psp_line_id"]) == ("USD", -8_125, -5_425, "ecb:2024-03-06:JPY:USD", "cb_pp_jpy")
    assert run["statements"]["m_p:USD:2024-03-01"]["settles_on"] == date(2024, 3, 31)
    assert run["statements"]["m_p:USD:2024-03-01"]["status"] == "closed"


# --- settlement: late data for a closed period, closed statements byte-identical -----------------


def test_late_capture_lands_in_the_open_period_as_an_adjustment_naming_it(built):
    run = built["second"]
    late = run["lines"]["payment:pp_late"]
    assert (late["statement_id"], late["line_type"], late["item_type"], late["is_late"],
            late["natural_period_start"], late["payment_id"], int(late["gross_minor"]),
            int(late["fee_minor"]), int(late["net_minor"])) == \
        ("m_p:USD:2024-04-01", "adjustment", "payment", True, date(2024, 3, 1), "pp_late",
         4_000, 130, 3_870)
    assert "pp_late" in late["description"] and "2024-03-01" in late["description"]
    # April: opening 298,809; gross 20,000 + 20,000; refund rp_usd2 2,525; fees 530 + 550 - 71
    # = 1,009; adjustments -3,870 (the late capture credits the merchant);
    # net_activity = 298,809 + 40,000 - 2,525 - 1,009 + 3,870 = 339,145; closing the same
    assert statement(run, "m_p:USD:2024-04-01") == (
        298_809, 40_000, 2_525, 0, 1_009, -3_870, 339_145, 0, 339_145)


def test_the_closed_statement_stays_byte_identical(built):
    # March closed at the first build. The late capture, the new price, the re-parenting and
    # m_p's new T+2 must leave it exactly as it was, settles_on (paid out on 03-31) included.
    first, second = built["first"], built["second"]
    closed = [sid for sid, row in first["statements"].items() if row["status"] == "closed"]
    assert "m_p:USD:2024-03-01" in closed
    for sid in closed:
        assert second["statements"][sid] == first["statements"][sid], sid
    for line_id, row in first["lines"].items():
        if row["is_frozen"]:
            assert second["lines"][line_id] == row, line_id


def test_the_open_statement_takes_the_new_settlement_delay(built):
    # April is open: m_p is now T+2, so its April statement is paid on 04-30 + 2 = 05-02
    assert built["second"]["statements"]["m_p:USD:2024-04-01"]["settles_on"] == date(2024, 5, 2)


# --- agents' commission statements ------------------------------------------------------------


def test_agent_statement_sums_by_model_and_level_reversals_separate(built):
    run = built["first"]
    # p3 USD March: fixed at level 1 (pp3: 7) and at level 3 (pp_usd: 7, reversed 2 by rp_usd1)
    assert agent_lines(run, "p3:USD:2024-03-01") == {"fixed:1": (7, 0, 7), "fixed:3": (7, -2, 5)}
    # p2 JPY March: the negative spread -40 and its reversal +8 (shown apart)
    assert agent_lines(run, "p2:JPY:2024-03-01") == {"markup:2": (-40, 8, -32)}
    # p1 in each currency of its own
    assert agent_lines(run, "p1:USD:2024-03-01") == {"percentage:1": (51, -13, 38)}
    assert agent_lines(run, "p1:KWD:2024-03-01") == {"percentage:1": (6_173, 0, 6_173)}
    s = run["agent_statements"]["p3:USD:2024-03-01"]
    assert (int(s["earned_minor"]), int(s["reversed_minor"]), int(s["net_minor"])) == \
        (14, -2, 12)


def test_agent_statement_after_the_re_parenting_and_the_late_capture(built):
    run = built["second"]
    # p5 April: level 5 under the old tree (pp_apr0: 20, rp_usd2 reverses round(2.5) = 3),
    # level 4 under the new one (pp_apr: 20); the late pp_late (4) as an adjustment naming it
    lines = {r["line_id"]: r for r in run["agent_lines"]
             if r["statement_id"] == "p5:USD:2024-04-01"}
    assert {k: (int(r["earned_minor"]), int(r["reversed_minor"])) for k, r in lines.items()
            if r["line_type"] == "commission"} == {"percentage:5": (20, -3),
                                                   "percentage:4": (20, 0)}
    late = [r for r in lines.values() if r["line_type"] == "adjustment"]
    assert [(r["event_id"], int(r["net_minor"]), r["natural_period_start"]) for r in late] == \
        [("pp_late", 4, date(2024, 3, 1))]
    # p3 April: fixed:3 earned 14 (pp_apr0 and pp_apr), reversed 2; adjustment 7 (pp_late);
    # opening = March closing 12 -> closing 12 + 14 - 2 + 7 = 31
    s = run["agent_statements"]["p3:USD:2024-04-01"]
    assert (int(s["opening_balance_minor"]), int(s["earned_minor"]), int(s["reversed_minor"]),
            int(s["adjustments_minor"]), int(s["closing_balance_minor"])) == (12, 14, -2, 7, 31)
    # and p3's March commission statement is unchanged
    assert run["agent_statements"]["p3:USD:2024-03-01"] == \
        built["first"]["agent_statements"]["p3:USD:2024-03-01"]


# --- the finance tie-out ----------------------------------------------------------------------


def test_finance_tie_out_in_march_usd_with_refunds_and_a_late_item(built):
    run = built["second"]
    results = {r["unique_id"]: r["status"] for r in (run["run_results"] or {})["results"]}
    assert [s for uid, s in results.items() if "assert_finance_tie_out" in uid] == ["pass"]
    # March, USD, by the day each payment or refund happened (pp_late included):
    # gross - refunds = 10,100 - 2,525 + 5,000 + 4,000 + 10,000 + 8,000 - 2,000 + 5,000
    #                   + 12,345 (m_j's, settled in JPY) = 49,920
    # fees = 283 - 71 + 150 + 130 + 220 + 180 - 45 + 50 + 339 = 1,236
    march = [r for r in run["lines"].values()
             if r["item_type"] in ("payment", "refund") and r["txn_currency"] == "USD"
             and date(2024, 3, 1) <= r["occurred_at"].date() <= date(2024, 3, 31)]
    gross = sum(int(r["txn_gross_minor"]) for r in march)
    merchants_net = sum(int(r["txn_net_minor"]) if "txn_net_minor" in r else
                        int(r["txn_gross_minor"]) - int(r["txn_fee_minor"]) for r in march)
    rev = [r for r in run["revenue"].values() if r["currency"] == "USD"
           and date(2024, 3, 1) <= r["occurred_at"].date() <= date(2024, 3, 31)]
    agents = sum(int(r["amount_minor"]) for r in run["commissions"] if r["currency"] == "USD"
                 and date(2024, 3, 1) <= r["occurred_at"].date() <= date(2024, 3, 31))
    platform = sum(int(r["platform_net_minor"]) for r in rev)
    channel = sum(int(r["channel_cost_minor"]) for r in rev)
    assert (gross, gross - merchants_net) == (49_920, 1_236)
    assert merchants_net + agents + platform + channel == gross


# --- both engines ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("run", ["first", "second"])
@pytest.mark.parametrize("key", ["commissions", "revenue", "statements", "lines",
                                 "agent_statements", "agent_lines"])
def test_duckdb_and_postgres_agree(built_duckdb, built_postgres, run, key):
    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if k != "frozen_as_of"}
        if isinstance(v, list):
            return sorted((norm(x) for x in v), key=repr)
        if isinstance(v, Decimal) or isinstance(v, int) and not isinstance(v, bool):
            return Decimal(v)
        return v
    assert norm(built_duckdb[run][key]) == norm(built_postgres[run][key])
