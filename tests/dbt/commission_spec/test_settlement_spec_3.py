"""Third-round audit of settlement.md (with money.md and commission.md as they bear on it): weekly
periods across a month and a year boundary, months of 28 and 31 days, quiet periods, a second
chargeback of one payment, FX of every exponent pair the earlier rounds left out (USDC 6 -> USD 2,
KWD 3 -> EUR 2) with halves on negative amounts, a weekend's rate, and late refunds, chargebacks
and payouts landing after several periods have closed since. Black box, through the raw tables
the ledger extract and the file loads fill and the marts `dbt build` makes, on DuckDB and on
Postgres. Two builds per engine: the books as of 2025-01-29 (weeks through 2025-01-26 close),
then as of 2025-02-19 after late data arrived.

Every expected figure was worked out by hand from the spec text; the working is in the comments.
round() below is ROUND_HALF_UP (half away from zero), money.md rule 4.

Channel ch_card: USD 100 bps + 10, EUR 100 + 10, JPY 100 + 0, KWD 100 + 20 fils, USDC 100 + 0.

K  m_wk: weekly (ISO week from Monday) T+1, settles USD, under agent g1 (percentage 50 bps,
   weekly commission statements); price USD 200 bps + 0. The week of Monday 2024-12-30 runs into
   2025-01-05: across a month and a year boundary. Quiet weeks follow. Late data in the second
   build: a refund of 2025-01-02, a chargeback of 2025-01-08 and a payout of 2025-01-15, all in
   weeks the first build closed, so several weeks have closed since each.
C  m_cb: monthly USD, directly under the platform, USD 200 + 0: one payment charged back twice
   (a partial chargeback, then a second one for the rest).
M  m_mo: monthly T+0, settles EUR; EUR 250 + 0 and KWD 250 + 0. January (31 days) then
   February 2025 (28 days); a KWD capture on Saturday 2025-02-01 00:00:00 takes Friday's rate.
X  m_fx: monthly, settles USD; USDC 100 + 0 (6 decimals) and JPY 300 + 0. Halves on negative
   amounts (refunds); a Saturday refund takes Friday's rate.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.commission_spec.marts import build_twice, statement
from tests.dbt.conftest import built_on_both_engines, insert_raw

T0 = datetime(2024, 12, 1)
FIRST_AS_OF, SECOND_AS_OF = date(2025, 1, 29), date(2025, 2, 19)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


MERCHANTS = [  # id, agent, settlement currency, cycle, T+N
    ("m_wk", "g1", "USD", "weekly", 1),
    ("m_cb", None, "USD", "monthly", 0),
    ("m_mo", None, "EUR", "monthly", 0),
    ("m_fx", None, "USD", "monthly", 0),
]
PRICES = [  # id, subject_type, subject_id, currency, bps, fixed
    ("ch_usd", "channel", "ch_card", "USD", 100, 10),
    ("ch_eur", "channel", "ch_card", "EUR", 100, 10),
    ("ch_jpy", "channel", "ch_card", "JPY", 100, 0),
    ("ch_kwd", "channel", "ch_card", "KWD", 100, 20),
    ("ch_usdc", "channel", "ch_card", "USDC", 100, 0),
    ("m_wk_usd", "merchant", "m_wk", "USD", 200, 0),
    ("m_cb_usd", "merchant", "m_cb", "USD", 200, 0),
    ("m_mo_eur", "merchant", "m_mo", "EUR", 250, 0),
    ("m_mo_kwd", "merchant", "m_mo", "KWD", 250, 0),
    ("m_fx_usdc", "merchant", "m_fx", "USDC", 100, 0),
    ("m_fx_jpy", "merchant", "m_fx", "JPY", 300, 0),
]
PAYMENTS = [  # id, merchant, amount, currency, captured_at
    ("pk1", "m_wk", 10_000, "USD", "2024-12-29 23:59:59"),  # Sunday: week from 12-23
    ("pk2", "m_wk", 20_000, "USD", "2024-12-30 00:00:00"),  # Monday: week 12-30 .. 01-05
    ("pk3", "m_wk", 5_000, "USD", "2025-01-05 23:59:59"),  # Sunday of the same week
    ("pk4", "m_wk", 1_000, "USD", "2025-01-06 00:00:00"),  # next week
    ("pc", "m_cb", 10_000, "USD", "2025-01-10 10:00:00"),
    ("pm1", "m_mo", 10_000, "EUR", "2025-01-31 23:59:59"),  # last second of January
]
LATE_PAYMENTS = [  # first seen by the second build
    ("pk5", "m_wk", 4_000, "USD", "2025-01-31 10:00:00"),  # its week was still open: not late
    ("pm2", "m_mo", 12_345, "KWD", "2025-02-01 00:00:00"),  # Saturday
    ("pu1", "m_fx", 12_345_678, "USDC", "2025-02-10 09:00:00"),
    ("pj", "m_fx", 10_000, "JPY", "2025-02-10 10:00:00"),
]
REFUNDS = []  # id, payment, amount, succeeded_at
LATE_REFUNDS = [
    ("rk_late", "pk2", 2_000, "2025-01-02 10:00:00"),  # its week closed at the first build
    ("rm", "pm2", 1_000, "2025-02-01 12:00:00"),
    ("ru1", "pu1", 5_000, "2025-02-11 10:00:00"),
    ("rj", "pj", 240, "2025-02-15 10:00:00"),  # Saturday
]
CHARGEBACKS = [  # psp line, payment, gross, currency, transaction_at
    ("cb_c1", "pc", -4_000, "USD", "2025-01-15 10:00:00"),
    ("cb_c2", "pc", -6_000, "USD", "2025-01-20 10:00:00"),  # a second chargeback of pc
]
LATE_CHARGEBACKS = [("cb_k", "pk1", -10_000, "USD", "2025-01-08 10:00:00")]
LATE_WITHDRAWALS = [("wd_k", "m_wk", 3_000, "2025-01-15 10:00:00")]
ECB = {  # 1 EUR = r X
    "2025-01-31": {"USD": "1.0400", "JPY": "160.00", "KWD": "0.3200"},  # a Friday
    "2025-02-10": {"USD": "1.0300", "JPY": "160.00", "KWD": "0.3210"},
    "2025-02-14": {"USD": "1.0300", "JPY": "160.00", "KWD": "0.3220"},  # a Friday
}


# --- loading ------------------------------------------------------------------------------------


def _insert(warehouse, table_name: str, rows: list[dict]) -> None:
    insert_raw(warehouse, table_name, rows, T0)


def _all_payments():
    return {p[0]: p for p in PAYMENTS + LATE_PAYMENTS}


def _payment_rows(payments, refunded: dict[str, int]):
    return [{"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}",
             "amount_minor": amount, "currency": ccy, "payment_method_type": "card",
             "status": ("refunded" if refunded.get(pid) == amount else
                        "partially_refunded" if refunded.get(pid) else "success"),
             "channel_id": "ch_card", "channel_reference": f"chref-{pid}",
             "risk_decision": "approve", "customer_id": "cus_1",
             "refunded_minor": refunded.get(pid, 0), "captured_at": ts(at), "created_at": ts(at),
             "updated_at": ts(at)}
            for pid, m, amount, ccy, at in payments]


def _refund_rows(refunds):
    payments = _all_payments()
    return [{"id": rid, "payment_id": pid, "merchant_id": payments[pid][1],
             "amount_minor": amount, "currency": payments[pid][3], "status": "succeeded",
             "succeeded_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
            for rid, pid, amount, at in refunds]


def _refunded(refunds) -> dict[str, int]:
    out: dict[str, int] = {}
    for _rid, pid, amount, _at in refunds:
        out[pid] = out.get(pid, 0) + amount
    return out


def _chargeback_rows(chargebacks):
    return [{"psp_line_id": lid, "file_id": f"ch_card_{ts(at).date()}", "format": "psp_csv",
             "line_number": 2, "settlement_date": ts(at).date(), "record_type": "chargeback",
             "channel": "ch_card", "channel_reference": f"chref-{pid}",
             "merchant_reference": pid, "transaction_at": ts(at), "currency": ccy,
             "gross_minor": gross, "fee_minor": 0, "net_minor": gross, "status": "BOOK"}
            for lid, pid, gross, ccy, at in chargebacks]


def _fx_rows(ecb):
    return [{"fx_rate_id": f"ecb:{day}:{ccy}", "file_id": f"ecb_{day}", "source": "ecb",
             "rate_date": date.fromisoformat(day), "base_currency": "EUR", "quote_currency": ccy,
             "rate_text": rate, "rate": Decimal(rate)}
            for day, by_ccy in ecb.items() for ccy, rate in by_ccy.items()]


def load_first(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "agent_id": agent, "settlement_currency": ccy,
         "settlement_cycle": cycle, "settlement_delay_days": delay, "created_at": T0,
         "updated_at": T0} for m, agent, ccy, cycle, delay in MERCHANTS])
    _insert(warehouse, "agents", [{"id": "g1", "name": "g1", "status": "active",
                                   "statement_cycle": "weekly", "created_at": T0,
                                   "updated_at": T0}])
    _insert(warehouse, "agent_parents", [{"id": 1, "agent_id": "g1", "parent_id": None,
                                          "valid_from": T0, "valid_to": None, "created_at": T0,
                                          "updated_at": T0}])
    _insert(warehouse, "commission_models", [
        {"id": "cm_g1_usd", "agent_id": "g1", "currency": "USD", "model": "percentage",
         "pct_bps": 50, "fixed_minor": None, "valid_from": T0, "valid_to": None,
         "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "channels", [
        {"id": "ch_card", "name": "ch_card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "prices", [
        {"id": pid, "subject_type": st, "subject_id": sid, "currency": c, "rate_bps": bps,
         "fixed_minor": fixed, "valid_from": T0, "valid_to": None, "created_at": T0,
         "updated_at": T0} for pid, st, sid, c, bps, fixed in PRICES])
    _insert(warehouse, "payments", _payment_rows(PAYMENTS, _refunded(REFUNDS)))
    _insert(warehouse, "psp_lines", _chargeback_rows(CHARGEBACKS))


def load_second(warehouse) -> None:
    """What arrived by 2025-02-19: a refund of 2025-01-02, a chargeback file of 2025-01-08 and a
    payout marked paid on 2025-01-15 (all in weeks closed at the first build), a capture of
    2025-01-31 (its week was still open then), February's business and the ECB rates."""
    refunded = _refunded(REFUNDS + LATE_REFUNDS)
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.payments SET refunded_minor = ?, status = ? WHERE id = ?",
        [(Decimal(refunded["pk2"]), "partially_refunded", "pk2")])
    _insert(warehouse, "payments", _payment_rows(LATE_PAYMENTS, refunded))
    _insert(warehouse, "refunds", _refund_rows(LATE_REFUNDS))
    _insert(warehouse, "psp_lines", _chargeback_rows(LATE_CHARGEBACKS))
    _insert(warehouse, "withdrawals", [
        {"id": wid, "owner_type": "merchant", "owner_id": owner, "amount_minor": amount,
         "currency": "USD", "status": "paid", "decided_by": "usr_ops", "decided_at": ts(at),
         "paid_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
        for wid, owner, amount, at in LATE_WITHDRAWALS])
    _insert(warehouse, "fx_rates", _fx_rows(ECB))


# --- building -----------------------------------------------------------------------------------


def _build_twice(warehouse, tmp_path_factory, _dbt_build) -> dict:
    # build_twice runs dbt itself (the same run_dbt_build the fixture hands over)
    return build_twice(warehouse, tmp_path_factory.mktemp(f"audit3_{warehouse.engine}"),
                       load_first, FIRST_AS_OF, load_second, SECOND_AS_OF)


built_duckdb, built_postgres, built = built_on_both_engines("built", _build_twice)


def line(run: dict, line_id: str) -> tuple:
    r = run["lines"][line_id]
    return (r["statement_id"], r["line_type"], r["txn_currency"], int(r["txn_gross_minor"]),
            int(r["txn_fee_minor"]), int(r["gross_minor"]), int(r["fee_minor"]),
            int(r["net_minor"]), r["fx_rate_id"])


@pytest.mark.parametrize("run", ["first", "second"])
def test_both_builds_succeed(built, run):
    assert built[run]["returncode"] == 0, built[run]["output"][-6000:]


# --- K: weekly periods across a month and a year boundary ----------------------------------------


def test_a_week_across_the_year_boundary_is_one_statement(built):
    run = built["first"]
    # pk1 Sunday 2024-12-29 23:59:59 UTC -> week from Monday 12-23 (ends 12-29, paid T+1 12-30):
    # gross 10,000, F = round(10,000 * 200 / 10000) = 200 -> closing 9,800
    assert statement(run, "m_wk:USD:2024-12-23") == (0, 10_000, 0, 0, 200, 0, 9_800, 0, 9_800)
    # pk2 Monday 12-30 00:00:00 and pk3 Sunday 2025-01-05 23:59:59: one ISO week 2025-W01,
    # 2024-12-30 .. 2025-01-05, paid 01-06. F = 400 + 100 = 500; closing 9,800 + 24,500 = 34,300
    assert statement(run, "m_wk:USD:2024-12-30") == (
        9_800, 25_000, 0, 0, 500, 0, 34_300, 0, 34_300)
    heads = {sid: (r["period_start"], r["period_end"], r["settles_on"], r["status"])
             for sid, r in run["statements"].items() if r["merchant_id"] == "m_wk"}
    assert heads["m_wk:USD:2024-12-23"] == (date(2024, 12, 23), date(2024, 12, 29),
                                            date(2024, 12, 30), "closed")
    assert heads["m_wk:USD:2024-12-30"] == (date(2024, 12, 30), date(2025, 1, 5),
                                            date(2025, 1, 6), "closed")
    # pk4 Monday 2025-01-06 00:00:00: the next week. F 20 -> 35,280
    assert statement(run, "m_wk:USD:2025-01-06") == (
        34_300, 1_000, 0, 0, 20, 0, 35_280, 0, 35_280)


def test_a_quiet_week_has_a_statement_with_opening_equal_to_closing(built):
    # settlement.md: "For each merchant and cycle period the statement shows ... opening_balance
    # ... closing_balance (= next period's opening_balance)". m_wk had nothing in the weeks
    # from 01-13 and 01-20 (closed at the first build) and 01-27 (open then): each is a
    # statement carrying 35,280, opening = closing, nothing in between.
    run = built["first"]
    quiet = (35_280, 0, 0, 0, 0, 0, 35_280, 0, 35_280)
    for sid, status in (("m_wk:USD:2025-01-13", "closed"), ("m_wk:USD:2025-01-20", "closed"),
                        ("m_wk:USD:2025-01-27", "open")):
        assert sid in run["statements"], sid
        assert statement(run, sid) == quiet, sid
        assert run["statements"][sid]["status"] == status, sid
    # the second build: 01-27 got pk5 (its week was never closed, so it is not late):
    # F = 80 -> 39,200; 02-03 and 02-10 are quiet at 39,200; both weeks of January stay as
    # they were (the payout of 01-15 came late and is not booked into the closed week)
    second = built["second"]
    assert statement(second, "m_wk:USD:2025-01-27") == (
        35_280, 4_000, 0, 0, 80, 0, 39_200, 0, 39_200)
    for sid in ("m_wk:USD:2025-02-03", "m_wk:USD:2025-02-10"):
        assert statement(second, sid) == (39_200, 0, 0, 0, 0, 0, 39_200, 0, 39_200), sid
    for sid in ("m_wk:USD:2025-01-13", "m_wk:USD:2025-01-20"):
        assert second["statements"][sid] == run["statements"][sid], sid


def test_closing_equals_the_next_periods_opening_for_every_period(built):
    # every merchant, currency and period from its first statement to the open one, no gap
    for run in ("first", "second"):
        by_owner: dict[tuple, list] = {}
        for r in built[run]["statements"].values():
            by_owner.setdefault((r["merchant_id"], r["currency"]), []).append(r)
        for owner, rows in by_owner.items():
            rows.sort(key=lambda r: r["period_start"])
            for prev, nxt in zip(rows, rows[1:], strict=False):
                assert (nxt["period_start"] - prev["period_end"]).days == 1, (run, owner)
                assert nxt["opening_balance_minor"] == prev["closing_balance_minor"], (run, owner)


def test_late_refund_chargeback_and_payout_land_in_the_open_week_naming_them(built):
    run = built["second"]
    # All three belong to weeks the first build closed (several weeks have closed since):
    #   rk_late refund of pk2, 2,000 on 01-02 (week 12-30): fee back round(400 * 0.1) = 40
    #     -> net -1,960
    #   cb_k chargeback of pk1, -10,000 on 01-08 (week 01-06) -> net -10,000
    #   wd_k payout 3,000 paid 01-15 (week 01-13) -> net -3,000
    # each an adjustment line on the week open at 2025-02-19 (02-17 .. 02-23), naming the item
    # and its own period.
    expected = {
        "refund:rk_late": ("refund", "refund_id", "rk_late", date(2024, 12, 30), -2_000, -40),
        "chargeback:pk1": ("chargeback", "psp_line_id", "cb_k", date(2025, 1, 6), -10_000, 0),
        "payout:wd_k": ("payout", "payout_id", "wd_k", date(2025, 1, 13), -3_000, 0),
    }
    for line_id, (item_type, link, ref, natural, gross, fee) in expected.items():
        r = run["lines"][line_id]
        assert (r["statement_id"], r["line_type"], r["item_type"], r["is_late"], r[link],
                r["natural_period_start"], int(r["gross_minor"]), int(r["fee_minor"])) == \
            ("m_wk:USD:2025-02-17", "adjustment", item_type, True, ref, natural, gross, fee), \
            line_id
        assert line_id in r["description"] and natural.isoformat() in r["description"], line_id
    # the open week: adjustments take 1,960 + 10,000 + 3,000 = 14,960 off 39,200
    assert statement(run, "m_wk:USD:2025-02-17") == (
        39_200, 0, 0, 0, 0, 14_960, 24_240, 0, 24_240)
    assert run["statements"]["m_wk:USD:2025-02-17"]["status"] == "open"
    # the closed weeks the late items belong to are unchanged
    for sid in ("m_wk:USD:2024-12-30", "m_wk:USD:2025-01-06"):
        assert run["statements"][sid] == built["first"]["statements"][sid], sid


def test_the_agents_weekly_commission_statements_and_the_late_reversal(built):
    first, second = built["first"], built["second"]

    def lines(run, sid):
        return {(r["line_type"], r["line_id"] if r["line_type"] == "commission"
                 else r["event_id"]): (int(r["earned_minor"]), int(r["reversed_minor"]),
                                       int(r["net_minor"]))
                for r in run["agent_lines"] if r["statement_id"] == sid}

    # g1 percentage 50 bps: pk1 50 (week 12-23); pk2 100 + pk3 25 (week 12-30); pk4 5
    assert lines(first, "g1:USD:2024-12-23") == {("commission", "percentage:1"): (50, 0, 50)}
    assert lines(first, "g1:USD:2024-12-30") == {("commission", "percentage:1"): (125, 0, 125)}
    # rk_late reverses round(100 * 2,000 / 20,000) = 10 of pk2's commission; its week closed,
    # so the reversal is an adjustment on g1's open week naming the refund
    late = [r for r in second["agent_lines"] if r["line_type"] == "adjustment"]
    assert [(r["statement_id"], r["event_id"], int(r["net_minor"]), r["natural_period_start"])
            for r in late] == [("g1:USD:2025-02-17", "rk_late", -10, date(2024, 12, 30))]
    assert second["agent_statements"]["g1:USD:2024-12-30"] == \
        first["agent_statements"]["g1:USD:2024-12-30"]


# --- C: a payment charged back twice ----------------------------------------------------------


def test_a_second_chargeback_of_the_same_payment_is_on_the_statement(built):
    run = built["first"]
    # pc 10,000, F 200. The channel charges back 4,000 on 01-15, then the remaining 6,000 on
    # 01-20 (a second chargeback after a representment; reconciliation.md's chargeback rows
    # allow it). Both take money from the merchant: chargebacks 10,000, closing
    # 10,000 - 200 - 10,000 = -200. Each line names its PSP row and the payment.
    assert statement(run, "m_cb:USD:2025-01-01") == (0, 10_000, 0, 10_000, 200, 0, -200, 0, -200)
    chargebacks = sorted((r["psp_line_id"], r["payment_id"], int(r["net_minor"]))
                         for r in run["lines"].values()
                         if r["merchant_id"] == "m_cb" and r["item_type"] == "chargeback")
    assert chargebacks == [("cb_c1", "pc", -4_000), ("cb_c2", "pc", -6_000)]


# --- M and X: FX, exponents 3 -> 2 and 6 -> 2, halves on negatives, the weekend's rate ----------


def test_kwd_to_eur_on_a_28_day_february_with_fridays_rate(built):
    run = built["second"]
    # January (31 days): pm1 at 01-31 23:59:59 is January's: 10,000 EUR, F 250 -> 9,750
    jan = run["statements"]["m_mo:EUR:2025-01-01"]
    assert (jan["period_end"], jan["settles_on"], jan["status"]) == \
        (date(2025, 1, 31), date(2025, 1, 31), "closed")
    assert statement(run, "m_mo:EUR:2025-01-01") == (0, 10_000, 0, 0, 250, 0, 9_750, 0, 9_750)
    # pm2 12,345 fils at Saturday 02-01 00:00:00: Friday 01-31's rate, KWD -> EUR = 1 / 0.3200
    # = 3.125 (inverse); exponent EUR 2 - KWD 3 = -1, so x 0.3125:
    #   gross round(3,857.8125) = 3,858; F = round(308.625) = 309 fils -> round(96.5625) = 97
    assert line(run, "payment:pm2") == ("m_mo:EUR:2025-02-01", "payment", "KWD", 12_345, 309,
                                        3_858, 97, 3_761, "ecb:2025-01-31:KWD:EUR")
    # rm refunds 1,000 fils the same Saturday: gross -312.5 -> -313 (half away from zero);
    # fee back round(309 * 1,000 / 12,345 = 25.03) = 25 fils -> -7.8125 -> -8; net -305
    assert line(run, "refund:rm") == ("m_mo:EUR:2025-02-01", "refund", "KWD", -1_000, -25,
                                      -313, -8, -305, "ecb:2025-01-31:KWD:EUR")
    feb = run["statements"]["m_mo:EUR:2025-02-01"]
    assert (feb["period_end"], feb["status"]) == (date(2025, 2, 28), "open")
    # 9,750 + 3,858 - 313 - (97 - 8) = 13,206
    assert statement(run, "m_mo:EUR:2025-02-01") == (
        9_750, 3_858, 313, 0, 89, 0, 13_206, 0, 13_206)


def test_usdc_and_jpy_to_usd_with_halves_on_refunds(built):
    run = built["second"]
    # pu1 12,345,678 USDC atomic units (6 decimals), at par with USD, exponent 2 - 6 = -4:
    #   gross round(1,234.5678) = 1,235; F = round(123,456.78) = 123,457 -> round(12.3457) = 12
    assert line(run, "payment:pu1") == ("m_fx:USD:2025-02-01", "payment", "USDC", 12_345_678,
                                        123_457, 1_235, 12, 1_223, "peg:USDC:USD")
    # ru1 5,000 atomic: gross -0.5 -> -1 (half away from zero, not 0); fee back
    # round(123,457 * 5,000 / 12,345,678 = 50.00001) = 50 -> -0.005 -> 0; net -1
    assert line(run, "refund:ru1") == ("m_fx:USD:2025-02-01", "refund", "USDC", -5_000, -50,
                                       -1, 0, -1, "peg:USDC:USD")
    # pj 10,000 JPY on Monday 02-10: JPY -> USD = 1.0300 / 160.00 = 0.0064375, exponent +2:
    #   gross 6,437.5 -> 6,438; F = 300 -> 193.125 -> 193
    assert line(run, "payment:pj") == ("m_fx:USD:2025-02-01", "payment", "JPY", 10_000, 300,
                                       6_438, 193, 6_245, "ecb:2025-02-10:JPY:USD")
    # rj 240 JPY on Saturday 02-15 takes Friday 02-14's rate (its own id): gross -154.5 -> -155;
    # fee back round(300 * 240 / 10,000 = 7.2) = 7 -> -4.50625 -> -5; net -150
    assert line(run, "refund:rj") == ("m_fx:USD:2025-02-01", "refund", "JPY", -240, -7,
                                      -155, -5, -150, "ecb:2025-02-14:JPY:USD")
    # February: gross 1,235 + 6,438 = 7,673; refunds 1 + 155 = 156;
    # fees 12 + 193 + 0 - 5 = 200; closing 7,673 - 156 - 200 = 7,317
    assert statement(run, "m_fx:USD:2025-02-01") == (0, 7_673, 156, 0, 200, 0, 7_317, 0, 7_317)


# --- the finance tie-out for a weekly and a monthly period ------------------------------------


def _tie_out(run: dict, start: date, end: date) -> dict[str, tuple[int, int]]:
    """Per transaction currency, over the items of [start, end]: (gross - refunds, merchants'
    net + agents' commissions + platform net + channel cost)."""
    def within(r):
        return start <= r["occurred_at"].date() <= end

    out: dict[str, list[int]] = {}
    for r in run["lines"].values():
        if r["item_type"] in ("payment", "refund") and within(r):
            t = out.setdefault(r["txn_currency"], [0, 0])
            t[0] += int(r["txn_gross_minor"])
            t[1] += int(r["txn_gross_minor"]) - int(r["txn_fee_minor"])
    for r in run["commissions"]:
        if within(r):
            out.setdefault(r["currency"], [0, 0])[1] += int(r["amount_minor"])
    for r in run["revenue"].values():
        if within(r):
            out.setdefault(r["currency"], [0, 0])[1] += (int(r["platform_net_minor"])
                                                         + int(r["channel_cost_minor"]))
    return {c: tuple(v) for c, v in out.items()}


def test_finance_tie_out_for_a_week_and_a_month(built):
    run = built["second"]
    results = {r["unique_id"]: r["status"] for r in (run["run_results"] or {})["results"]}
    assert [s for uid, s in results.items() if "assert_finance_tie_out" in uid] == ["pass"]
    # ISO week 2024-12-30 .. 2025-01-05 in USD: pk2 20,000 + pk3 5,000 - rk_late 2,000 (booked
    # on a February statement as a late item, counted on its own day) = 23,000
    assert _tie_out(run, date(2024, 12, 30), date(2025, 1, 5)) == {"USD": (23_000, 23_000)}
    # February 2025, per transaction currency (the statements convert, the tie-out does not):
    #   KWD 12,345 - 1,000 = 11,345; USDC 12,345,678 - 5,000 = 12,340,678; JPY 10,000 - 240
    assert _tie_out(run, date(2025, 2, 1), date(2025, 2, 28)) == {
        "KWD": (11_345, 11_345), "USDC": (12_340_678, 12_340_678), "JPY": (9_760, 9_760)}


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
