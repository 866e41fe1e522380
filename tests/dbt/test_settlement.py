"""Settlement statements (settlement.md) built by dbt on DuckDB and Postgres, twice, two days
apart: cycles (daily T+1, weekly, monthly), FX into the settlement currency with the rate id
on every converted line, chargebacks, payouts, manual adjustments, and closed periods that
never change - data that arrives after its period closed lands in the next open period as an
adjustment naming it. Every figure is recomputed here with the Python money core.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import pytest

from ingest.files.formats.ecb import cross_rate
from ingest.raw_schema import RAW_SCHEMA
from tests.dbt.conftest import built_on_both_engines, insert_raw
from tests.dbt.settlement_oracle import with_quiet_periods
from warehouse.money import FxRate, Money, convert, fee_minor, prorate

FIRST_AS_OF, SECOND_AS_OF, THIRD_AS_OF = date(2024, 4, 2), date(2024, 4, 4), date(2024, 4, 5)
T0 = datetime(2024, 1, 1)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


MERCHANTS = [
    # (id, settlement currency, cycle, T+N)
    ("mer_w", "EUR", "weekly", 2),
    ("mer_m", "USD", "monthly", 0),
    ("mer_d", "USD", "daily", 1),
]
PRICES = [  # (merchant, currency, bps, fixed)
    ("mer_w", "USD", 300, 30), ("mer_w", "EUR", 200, 0), ("mer_w", "USDC", 100, 0),
    ("mer_m", "JPY", 325, 0), ("mer_m", "USD", 250, 25), ("mer_d", "USD", 290, 30),
]
PAYMENTS = [  # (id, merchant, amount, currency, captured_at)
    ("pw1", "mer_w", 10_000, "USD", "2024-03-02 10:00:00"),  # Saturday: Friday's rate
    ("pw2", "mer_w", 5_000, "EUR", "2024-03-04 09:00:00"),
    ("pw3", "mer_w", 2_500_000, "USDC", "2024-04-02 12:00:00"),  # at par with USD, then ECB
    ("pm1", "mer_m", 12_345, "JPY", "2024-03-01 05:00:00"),  # JPY -> USD cross through EUR
    ("pm2", "mer_m", 20_000, "USD", "2024-03-15 10:00:00"),
    ("pm3", "mer_m", 7_000, "USD", "2024-03-10 10:00:00"),
    ("pm4", "mer_m", 1_000, "USD", "2024-04-01 10:00:00"),
    ("pd1", "mer_d", 10_000, "USD", "2024-03-29 10:00:00"),
    ("pd2", "mer_d", 4_000, "USD", "2024-03-30 10:00:00"),
]
LATE_PAYMENTS = [
    ("pd3", "mer_d", 6_000, "USD", "2024-03-29 23:00:00"),  # arrives after 03-29 closed
    ("pd4", "mer_d", 3_000, "USD", "2024-04-03 08:00:00"),  # on time
]
REFUNDS = [("rm2", "pm2", "mer_m", 5_000, "USD", "2024-03-20 10:00:00")]
ECB_FIRST = {"2024-03-01": {"USD": "1.0850", "JPY": "162.50"},
             "2024-03-04": {"USD": "1.0900", "JPY": "163.00"}}
ECB_SECOND = {"2024-03-02": {"USD": "1.2000"},  # would move pw1, whose week is closed
              "2024-04-02": {"USD": "1.0950", "JPY": "164.00"}}  # moves pw3, week still open
CHARGEBACKS_FIRST = [  # (psp line id, payment, gross, transaction_at)
    ("cb_pm3", "pm3", -7_000, "2024-03-25 10:00:00"),
    ("cb_pm3_resent", "pm3", -7_000, "2024-03-26 10:00:00"),  # the same chargeback again
]
CHARGEBACKS_SECOND = [("cb_pm2", "pm2", -15_000, "2024-03-30 10:00:00")]  # late: March closed
WITHDRAWALS = [  # (id, owner type, owner, amount, status, decided_at)
    ("wd_1", "merchant", "mer_m", 3_000, "paid", "2024-03-28 10:00:00"),
    ("wd_2", "merchant", "mer_m", 500, "requested", None),
    ("wd_3", "agent", "mer_m", 700, "paid", "2024-03-28 11:00:00"),  # an agent's: not here
]
# mer_d sells through agent agt_s (markup on a cost price, daily commission statements), so the
# late capture and the retroactive price change reach the agent's statements too.
AGENT = "agt_s"
AGENT_COST_USD = (200, 20)
ADJUSTMENTS = [("adj_1", "mer_m", -1_000, "USD", "POS terminal rental, March", "usr_finance",
                "2024-03-29 09:00:00")]


# --- loading ------------------------------------------------------------------------------------


def _insert(warehouse, table_name: str, rows: list[dict]) -> None:
    insert_raw(warehouse, table_name, rows, T0)


def _daily_merchant_on_cards(warehouse, merchant_id: str, settlement_currency: str) -> None:
    """A merchant settling daily at T+0 in `settlement_currency`, and the card channel."""
    _insert(warehouse, "merchants", [
        {"id": merchant_id, "name": merchant_id, "status": "active",
         "settlement_currency": settlement_currency, "settlement_cycle": "daily",
         "settlement_delay_days": 0, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "channels", [
        {"id": "ch_card", "name": "Card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}])


def _payment_rows(payments):
    return [{"id": pid, "merchant_id": m, "merchant_reference": f"order-{pid}",
             "amount_minor": amount, "currency": ccy,
             "status": "partially_refunded" if pid == "pm2" else "success",
             "payment_method_type": "card", "channel_id": "ch_card",
             "channel_reference": f"chref-{pid}", "risk_decision": "approve",
             "customer_id": "cus_1", "refunded_minor": 5_000 if pid == "pm2" else 0,
             "captured_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
            for pid, m, amount, ccy, at in payments]


def _fx_rows(rates):
    return [{"fx_rate_id": f"ecb:{day}:{ccy}", "file_id": f"ecb_{day}", "source": "ecb",
             "rate_date": date.fromisoformat(day), "base_currency": "EUR",
             "quote_currency": ccy, "rate_text": rate, "rate": Decimal(rate)}
            for day, by_ccy in rates.items() for ccy, rate in by_ccy.items()]


def _chargeback_rows(chargebacks):
    return [{"psp_line_id": lid, "file_id": f"f_{lid}", "format": "clearhouse_psp_csv",
             "line_number": 2, "settlement_date": ts(at).date(), "record_type": "chargeback",
             "channel": "ch_card", "channel_reference": f"chref-{pid}", "merchant_reference": pid,
             "transaction_at": ts(at), "currency": "USD", "gross_minor": gross,
             "fee_minor": 1_500, "net_minor": gross - 1_500, "status": "BOOK"}
            for lid, pid, gross, at in chargebacks]


def load_first(warehouse) -> None:
    _insert(warehouse, "merchants", [
        {"id": m, "name": m, "status": "active", "settlement_currency": ccy,
         "settlement_cycle": cycle, "settlement_delay_days": delay, "created_at": T0,
         "updated_at": T0, "agent_id": AGENT if m == "mer_d" else None}
        for m, ccy, cycle, delay in MERCHANTS])
    _insert(warehouse, "agents", [{"id": AGENT, "name": "Agent S", "status": "active",
                                   "statement_cycle": "daily", "created_at": T0,
                                   "updated_at": T0}])
    _insert(warehouse, "agent_parents", [{"id": 1, "agent_id": AGENT, "parent_id": None,
                                          "valid_from": T0, "valid_to": None, "created_at": T0,
                                          "updated_at": T0}])
    _insert(warehouse, "commission_models", [
        {"id": "cm_s", "agent_id": AGENT, "currency": "USD", "model": "markup",
         "valid_from": T0, "valid_to": None, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "channels", [
        {"id": "ch_card", "name": "Card", "channel_type": "card", "status": "active",
         "settlement_window_days": 1, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "prices", [
        {"id": f"prc_{m}_{ccy}", "subject_type": "merchant", "subject_id": m, "currency": ccy,
         "rate_bps": bps, "fixed_minor": fixed, "valid_from": T0, "created_at": T0,
         "updated_at": T0} for m, ccy, bps, fixed in PRICES]
        + [{"id": "prc_agt_s_USD", "subject_type": "agent", "subject_id": AGENT,
            "currency": "USD", "rate_bps": AGENT_COST_USD[0], "fixed_minor": AGENT_COST_USD[1],
            "valid_from": T0, "created_at": T0, "updated_at": T0}])
    _insert(warehouse, "payments", _payment_rows(PAYMENTS))
    _insert(warehouse, "refunds", [
        {"id": rid, "payment_id": pid, "merchant_id": m, "amount_minor": amount,
         "currency": ccy, "status": "succeeded", "succeeded_at": ts(at), "created_at": ts(at),
         "updated_at": ts(at)} for rid, pid, m, amount, ccy, at in REFUNDS])
    _insert(warehouse, "withdrawals", [
        {"id": wid, "owner_type": kind, "owner_id": owner, "amount_minor": amount,
         "currency": "USD", "status": status, "decided_by": "usr_ops" if at else None,
         "decided_at": ts(at) if at else None, "created_at": T0, "updated_at": T0}
        for wid, kind, owner, amount, status, at in WITHDRAWALS])
    _insert(warehouse, "settlement_adjustments", [
        {"id": aid, "merchant_id": m, "amount_minor": amount, "currency": ccy, "reason": reason,
         "created_by": who, "effective_at": ts(at), "created_at": ts(at), "updated_at": ts(at)}
        for aid, m, amount, ccy, reason, who, at in ADJUSTMENTS])
    _insert(warehouse, "fx_rates", _fx_rows(ECB_FIRST))
    _insert(warehouse, "psp_lines", _chargeback_rows(CHARGEBACKS_FIRST))


def load_second(warehouse) -> None:
    _insert(warehouse, "payments", _payment_rows(LATE_PAYMENTS))
    _insert(warehouse, "fx_rates", _fx_rows(ECB_SECOND))
    _insert(warehouse, "psp_lines", _chargeback_rows(CHARGEBACKS_SECOND))


# Third build: items already on closed statements change. mer_d's USD price is corrected
# retroactively (pd1, pd2, pd4 closed; pd3's late line closes in this very run), the channel
# re-sends pm3's chargeback with another amount (March closed), and mer_w's USD price changes
# too: pw1's correction is converted at the rate pw1 was booked with, not a newer one.
NEW_PRICE_D = (350, 35)
NEW_PRICE_W_USD = (320, 30)  # pw1: USD on a EUR statement, its week closed at the first build
RESENT_CHARGEBACK = ("cb_pm3", -6_500)


def change_closed_items(warehouse) -> None:
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.prices SET rate_bps = ?, fixed_minor = ? WHERE id = ?",
        [(*NEW_PRICE_D, "prc_mer_d_USD"), (*NEW_PRICE_W_USD, "prc_mer_w_USD")])
    line_id, gross = RESENT_CHARGEBACK
    warehouse.execute_many(
        f"UPDATE {RAW_SCHEMA}.psp_lines SET gross_minor = ?, net_minor = ? WHERE psp_line_id = ?",
        [(Decimal(gross), Decimal(gross - 1_500), line_id)])


# --- the oracle: every line and statement from the money core -----------------------------------


def _rate(base: str, quote: str, day: date, rates: dict) -> FxRate:
    """The latest ECB rate on or before `day` for base -> quote (USDC at par with USD)."""
    anchor = {"USDC": "USD"}
    b, q = anchor.get(base, base), anchor.get(quote, quote)
    for rate_day in sorted(rates, reverse=True):
        eur = {"EUR": "1", **rates[rate_day]}
        if date.fromisoformat(rate_day) <= day and b in eur and q in eur:
            return FxRate(f"ecb:{rate_day}:{b}:{q}", base, quote,
                          Decimal(cross_rate(eur[b], eur[q]).rate), "ecb", day)
    raise AssertionError(f"no rate {base}->{quote} on {day}")


def _fee(merchant, currency, amount):
    _, _, bps, fixed = next(p for p in PRICES if p[0] == merchant and p[1] == currency)
    return fee_minor(amount, bps, fixed)


def _line(kind, merchant, currency, gross, fee, at, rates):
    settle = next(c for m, c, _, _ in MERCHANTS if m == merchant)
    rate_id = None
    if currency != settle:
        rate = _rate(currency, settle, ts(at).date(), rates)
        rate_id = rate.rate_id
        gross, fee = (convert(Money(v, currency), rate).money.amount_minor for v in (gross, fee))
    return {"type": kind, "merchant": merchant, "currency": settle, "gross": gross, "fee": fee,
            "net": gross - fee, "rate_id": rate_id, "day": ts(at).date()}


def expected_lines(build: int) -> dict[str, dict]:
    rates = {**ECB_FIRST, **(ECB_SECOND if build == 2 else {})}
    lines = {}
    for pid, m, amount, ccy, at in PAYMENTS + (LATE_PAYMENTS if build == 2 else []):
        lines[f"payment:{pid}"] = _line("payment", m, ccy, amount, _fee(m, ccy, amount), at,
                                        rates)
    for rid, pid, m, amount, ccy, at in REFUNDS:
        payment_fee = _fee(m, ccy, next(p[2] for p in PAYMENTS if p[0] == pid))
        reversed_fee = prorate(payment_fee, amount, next(p[2] for p in PAYMENTS if p[0] == pid))
        lines[f"refund:{rid}"] = _line("refund", m, ccy, -amount, -reversed_fee, at, rates)
    for _lid, pid, gross, at in CHARGEBACKS_FIRST[:1] + (CHARGEBACKS_SECOND if build == 2 else []):
        lines[f"chargeback:{pid}"] = _line("chargeback", "mer_m", "USD", gross, 0, at, rates)
    for wid, kind, owner, amount, status, at in WITHDRAWALS:
        if kind == "merchant" and status == "paid":
            lines[f"payout:{wid}"] = _line("payout", owner, "USD", -amount, 0, at, rates)
    for aid, m, amount, ccy, _reason, _who, at in ADJUSTMENTS:
        lines[f"adjustment:{aid}"] = _line("adjustment", m, ccy, amount, 0, at, rates)
    if build == 2:  # pw1's week closed at the first build: it keeps its first conversion
        lines["payment:pw1"] = expected_lines(1)["payment:pw1"]
    return lines


def _period_start(merchant: str, day: date) -> date:
    cycle = next(c for m, _, c, _ in MERCHANTS if m == merchant)
    if cycle == "weekly":
        return date.fromordinal(day.toordinal() - day.weekday())
    return day.replace(day=1) if cycle == "monthly" else day


LATE = {"payment:pd3": date(2024, 4, 4), "chargeback:pm2": date(2024, 4, 1)}  # -> open period


def expected_statements(build: int) -> dict[str, dict]:
    groups = defaultdict(list)
    for line_id, line in expected_lines(build).items():
        start = LATE.get(line_id) or _period_start(line["merchant"], line["day"])
        groups[f"{line['merchant']}:{line['currency']}:{start}"].append(
            {**line, "late": line_id in LATE})
    out, closing = {}, defaultdict(int)
    for sid in sorted(groups, key=lambda s: (s.rsplit(":", 1)[0], s.rsplit(":", 1)[1])):
        lines, key = groups[sid], sid.rsplit(":", 1)[0]

        def total(kind, field, lines=lines):
            return sum(x[field] for x in lines if x["type"] == kind and not x["late"])

        s = {"opening": closing[key], "gross": total("payment", "gross"),
             "refunds": -total("refund", "gross"), "chargebacks": -total("chargeback", "net"),
             "fees": total("payment", "fee") + total("refund", "fee"),
             "adjustments": -total("adjustment", "net") - sum(x["net"] for x in lines
                                                                if x["late"]),
             "payouts": -total("payout", "net")}
        s["net_activity"] = (s["opening"] + s["gross"] - s["refunds"] - s["chargebacks"]
                             - s["fees"] - s["adjustments"])  # settlement.md's running total
        s["closing"] = closing[key] = s["net_activity"] - s["payouts"]
        out[sid] = s
    return with_quiet_periods(
        out, cycle_of={m: cycle for m, _, cycle, _ in MERCHANTS},
        settles_in={m: ccy for m, ccy, _, _ in MERCHANTS},
        as_of=FIRST_AS_OF if build == 1 else SECOND_AS_OF, closing="closing",
        quiet=lambda balance: {"opening": balance, "gross": 0, "refunds": 0, "chargebacks": 0,
                               "fees": 0, "adjustments": 0, "net_activity": balance,
                               "payouts": 0, "closing": balance})


# --- building -----------------------------------------------------------------------------------


def _vars(as_of: date) -> tuple[str, ...]:
    return ("--vars", json.dumps({"settlement_as_of": as_of.isoformat(),
                                  "recon_as_of": as_of.isoformat()}))


def settlement_snapshot(warehouse, merchant_id: str | None = None) -> dict:
    """The statement marts by id (the merchants' of `merchant_id` only, when given)."""
    of = "" if merchant_id is None else f" where merchant_id = '{merchant_id}'"
    return {
        "statements": {r["statement_id"]: r for r in warehouse.query(
            f"select * from analytics.fct_settlement_statements{of}")},
        "lines": {r["line_id"]: r for r in warehouse.query(
            f"select * from analytics.fct_settlement_statement_lines{of}")},
        "agent_statements": {r["statement_id"]: r for r in warehouse.query(
            "select * from analytics.fct_agent_commission_statements")},
        "agent_lines": {(r["statement_id"], r["line_id"]): r for r in warehouse.query(
            "select * from analytics.fct_agent_commission_statement_lines")},
    }


def _build_twice(warehouse, tmp_path_factory, dbt_build):
    load_first(warehouse)
    work = tmp_path_factory.mktemp(f"settle_{warehouse.engine}")
    proc = dbt_build(warehouse, work / "first", _vars(FIRST_AS_OF))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    first = settlement_snapshot(warehouse)
    load_second(warehouse)
    proc = dbt_build(warehouse, work / "second", _vars(SECOND_AS_OF))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    second = settlement_snapshot(warehouse)
    proc = dbt_build(warehouse, work / "again", _vars(SECOND_AS_OF))  # a re-run changes nothing
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    again = settlement_snapshot(warehouse)
    change_closed_items(warehouse)
    proc = dbt_build(warehouse, work / "third", _vars(THIRD_AS_OF))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    third = settlement_snapshot(warehouse)
    proc = dbt_build(warehouse, work / "third_again", _vars(THIRD_AS_OF))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    third_again = settlement_snapshot(warehouse)
    # a backfill of an older day (its Dagster partition) after the later closes
    proc = dbt_build(warehouse, work / "replay_first", _vars(FIRST_AS_OF))
    assert proc.returncode == 0, warehouse.dbt_output[-8000:]
    return {"first": first, "second": second, "again": again, "third": third,
            "third_again": third_again, "replayed_first": settlement_snapshot(warehouse),
            "warehouse": warehouse}


settled_duckdb, settled_postgres, settled = built_on_both_engines("settled", _build_twice)


def _money(row: dict, *names: str) -> dict[str, int]:
    return {n: int(row[f"{n}_minor"]) for n in names}


STATEMENT_FIELDS = ("opening_balance", "gross", "refunds", "chargebacks", "fees", "adjustments",
                    "net_activity", "payouts", "closing_balance")


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [1, 2])
def test_every_line_is_converted_exactly_and_keeps_its_rate(settled, build):
    rows = settled["first" if build == 1 else "second"]["lines"]
    expected = expected_lines(build)
    assert set(rows) == set(expected)
    for line_id, exp in expected.items():
        row = rows[line_id]
        got = {"currency": row["currency"], "gross": int(row["gross_minor"]),
               "fee": int(row["fee_minor"]), "net": int(row["net_minor"]),
               "rate_id": row["fx_rate_id"]}
        assert got == {k: exp[k] for k in got}, line_id
    assert rows["payment:pm1"]["fx_derivation"] == "cross"  # JPY -> USD through EUR
    assert rows["payment:pw1"]["fx_derivation"] == "inverse"  # USD -> EUR
    assert rows["payment:pw3"]["fx_derivation"] == "inverse+peg"  # USDC = USD -> EUR
    assert rows["payment:pw2"]["fx_derivation"] == "none" and rows["payment:pw2"]["fx_rate"] == 1
    # the original amounts stay on the line
    assert (rows["payment:pm1"]["txn_currency"], int(rows["payment:pm1"]["txn_gross_minor"])) == \
        ("JPY", 12_345)


@pytest.mark.parametrize("build", [1, 2])
def test_statements_follow_the_formula_per_cycle(settled, build):
    rows = settled["first" if build == 1 else "second"]["statements"]
    expected = expected_statements(build)
    assert set(rows) == set(expected)
    for sid, exp in expected.items():
        got = _money(rows[sid], *STATEMENT_FIELDS)
        assert got == {"opening_balance": exp["opening"], "gross": exp["gross"],
                       "refunds": exp["refunds"], "chargebacks": exp["chargebacks"],
                       "fees": exp["fees"], "adjustments": exp["adjustments"],
                       "net_activity": exp["net_activity"], "payouts": exp["payouts"],
                       "closing_balance": exp["closing"]}, sid
    week = rows["mer_w:EUR:2024-02-26"]
    assert (week["settlement_cycle"], week["period_end"], week["settles_on"]) == \
        ("weekly", date(2024, 3, 3), date(2024, 3, 5))
    march = rows["mer_m:USD:2024-03-01"]
    assert (march["settlement_cycle"], march["period_end"], march["settles_on"]) == \
        ("monthly", date(2024, 3, 31), date(2024, 3, 31))
    assert (march["chargeback_count"], march["payout_count"], march["adjustment_count"]) == \
        (1, 1, 1)
    day = rows["mer_d:USD:2024-03-29"]
    assert (day["period_end"], day["settles_on"]) == (date(2024, 3, 29), date(2024, 3, 30))


def test_open_and_closed_status_follow_the_as_of_day(settled):
    first = settled["first"]["statements"]
    assert first["mer_m:USD:2024-03-01"]["status"] == "closed"  # March ended before 04-02
    assert first["mer_m:USD:2024-04-01"]["status"] == "open"
    assert first["mer_w:EUR:2024-04-01"]["status"] == "open"
    assert first["mer_d:USD:2024-03-30"]["status"] == "closed"


def test_closed_statements_never_change(settled):
    first, second = settled["first"], settled["second"]
    closed = [sid for sid, row in first["statements"].items() if row["status"] == "closed"]
    assert len(closed) >= 5
    for sid in closed:
        assert second["statements"][sid] == first["statements"][sid], sid
    for line_id, row in first["lines"].items():
        if row["is_frozen"]:
            assert second["lines"][line_id] == row, line_id
    # the ECB rate published later for 2024-03-02 did not move pw1 (its week was closed) ...
    assert second["lines"]["payment:pw1"]["fx_rate_id"] == "ecb:2024-03-01:USD:EUR"
    # ... but the open week's pw3 took the newer rate: an open statement is provisional
    assert first["lines"]["payment:pw3"]["fx_rate_id"] == "ecb:2024-03-04:USD:EUR"
    assert second["lines"]["payment:pw3"]["fx_rate_id"] == "ecb:2024-04-02:USD:EUR"


def test_late_items_land_in_the_next_open_period_as_adjustments_naming_them(settled):
    lines = settled["second"]["lines"]
    late_payment, late_chargeback = lines["payment:pd3"], lines["chargeback:pm2"]
    assert (late_payment["statement_id"], late_payment["line_type"], late_payment["item_type"],
            late_payment["is_late"], late_payment["natural_period_start"],
            late_payment["payment_id"]) == \
        ("mer_d:USD:2024-04-04", "adjustment", "payment", True, date(2024, 3, 29), "pd3")
    assert "pd3" in late_payment["description"] and "2024-03-29" in late_payment["description"]
    assert (late_chargeback["statement_id"], late_chargeback["line_type"],
            late_chargeback["psp_line_id"], late_chargeback["natural_period_start"]) == \
        ("mer_m:USD:2024-04-01", "adjustment", "cb_pm2", date(2024, 3, 1))
    # pd4 came in time for its own day, which closed in the same run
    assert (lines["payment:pd4"]["statement_id"], lines["payment:pd4"]["is_late"]) == \
        ("mer_d:USD:2024-04-03", False)
    statement = settled["second"]["statements"]["mer_d:USD:2024-04-04"]
    assert int(statement["adjustments_minor"]) == -(6_000 - _fee("mer_d", "USD", 6_000))
    assert int(statement["gross_minor"]) == 0  # the late capture is not this period's gross


def test_chargebacks_payouts_and_adjustments_link_to_their_source(settled):
    lines = settled["first"]["lines"]
    assert "chargeback:pm3" in lines and lines["chargeback:pm3"]["psp_line_id"] == "cb_pm3"
    assert lines["payout:wd_1"]["payout_id"] == "wd_1"
    assert "payout:wd_2" not in lines and "payout:wd_3" not in lines  # unpaid; an agent's
    adjustment = lines["adjustment:adj_1"]
    assert (adjustment["description"], adjustment["created_by"], int(adjustment["net_minor"])) == \
        ("POS terminal rental, March", "usr_finance", -1_000)


def test_a_rerun_gives_the_same_statements(settled):
    assert settled["again"] == settled["second"]


def test_changes_to_items_on_closed_statements_are_booked_as_corrections(settled):
    second, third = settled["second"], settled["third"]
    corrections = {r["item_id"]: r for r in third["lines"].values() if r["is_correction"]}
    assert set(corrections) == {"payment:pd1", "payment:pd2", "payment:pd4", "chargeback:pm3",
                                "payment:pw1"}
    for pid, m, amount, ccy, _at in PAYMENTS + LATE_PAYMENTS:
        if m != "mer_d" or f"payment:{pid}" not in corrections:
            continue
        row = corrections[f"payment:{pid}"]
        delta = fee_minor(amount, *NEW_PRICE_D) - _fee("mer_d", ccy, amount)
        assert delta > 0
        assert (row["line_id"], row["statement_id"], row["line_type"], row["item_type"],
                row["payment_id"], int(row["txn_gross_minor"]), int(row["txn_fee_minor"]),
                int(row["gross_minor"]), int(row["fee_minor"]), int(row["net_minor"])) == \
            (f"correction:payment:{pid}:1", "mer_d:USD:2024-04-05", "adjustment", "payment", pid,
             0, delta, 0, delta, -delta)
        assert f"payment:{pid}" in row["description"]
    chargeback = corrections["chargeback:pm3"]
    assert (chargeback["statement_id"], chargeback["psp_line_id"], int(chargeback["gross_minor"]),
            chargeback["natural_period_start"]) == \
        ("mer_m:USD:2024-04-01", "cb_pm3", RESENT_CHARGEBACK[1] - (-7_000), date(2024, 3, 1))
    pw1, booked = corrections["payment:pw1"], second["lines"]["payment:pw1"]
    usd_delta = fee_minor(10_000, *NEW_PRICE_W_USD) - _fee("mer_w", "USD", 10_000)
    eur_delta = convert(Money(usd_delta, "USD"),
                        _rate("USD", "EUR", date(2024, 3, 2), ECB_FIRST)).money.amount_minor
    assert (pw1["statement_id"], pw1["currency"], pw1["txn_currency"],
            int(pw1["txn_fee_minor"]), int(pw1["fee_minor"]), pw1["fx_rate_id"]) == \
        ("mer_w:EUR:2024-04-01", "EUR", "USD", usd_delta, eur_delta, booked["fx_rate_id"])
    assert booked["fx_rate_id"] == "ecb:2024-03-01:USD:EUR" and eur_delta != usd_delta
    # the late pd3, still open at the change, simply took the new price when its day closed
    assert int(third["lines"]["payment:pd3"]["txn_fee_minor"]) == fee_minor(6_000, *NEW_PRICE_D)
    # closed statements did not move; the corrections sit on the open ones
    for sid, row in second["statements"].items():
        if row["status"] == "closed":
            assert third["statements"][sid] == row, sid
    day = third["statements"]["mer_d:USD:2024-04-05"]
    assert int(day["adjustments_minor"]) == sum(
        int(corrections[f"payment:{p}"]["txn_fee_minor"]) for p in ("pd1", "pd2", "pd4"))
    assert (int(day["gross_minor"]), int(day["fees_minor"])) == (0, 0)
    april = third["statements"]["mer_m:USD:2024-04-01"]
    assert int(april["adjustments_minor"]) - int(second["statements"][
        "mer_m:USD:2024-04-01"]["adjustments_minor"]) == -500  # the merchant gets 5.00 back


def test_a_correction_is_booked_once(settled):
    assert settled["third_again"] == settled["third"]


def test_replaying_an_older_day_reopens_and_moves_nothing(settled):
    """A backfill of 2024-04-02 after the closes of 04-04 and 04-05: every statement, status
    and line stays as the latest close left it."""
    assert settled["replayed_first"] == settled["third_again"]
    assert settled["replayed_first"]["statements"]["mer_d:USD:2024-04-04"]["status"] == "closed"


def test_the_finance_tie_out_holds_with_late_items_and_fx(settled):
    rows = settled["warehouse"].query("select * from analytics.fct_settlement_statement_lines")
    by_day = defaultdict(int)
    for r in rows:
        if r["item_type"] in ("payment", "refund"):
            by_day[(r["occurred_at"].date(), r["txn_currency"])] += int(r["txn_fee_minor"])
    revenue = defaultdict(int)
    for r in settled["warehouse"].query("select * from analytics.fct_platform_revenue"):
        revenue[(r["occurred_at"].date(), r["currency"])] += (
            int(r["agent_commission_minor"]) + int(r["platform_net_minor"])
            + int(r["channel_cost_minor"]))
    assert by_day == revenue  # the fees on the statements are exactly what gets split


# --- agents' commission statements: the same close -------------------------------------------


def _spread(amount: int, price=None) -> int:
    """agt_s's markup on a mer_d payment: fee(mer_d's price) - fee(its cost price)."""
    bps, fixed = price or next((b, f) for m, c, b, f in PRICES if (m, c) == ("mer_d", "USD"))
    return fee_minor(amount, bps, fixed) - fee_minor(amount, *AGENT_COST_USD)


MER_D = {pid: amount for pid, m, amount, _c, _at in PAYMENTS + LATE_PAYMENTS if m == "mer_d"}


def _agent_statement(build: dict, day: str) -> tuple[dict, list[dict]]:
    sid = f"{AGENT}:USD:{day}"
    return build["agent_statements"][sid], sorted(
        (r for (s, _l), r in build["agent_lines"].items() if s == sid),
        key=lambda r: r["line_id"])


def test_agent_statements_close_like_merchants(settled):
    first, second, third = settled["first"], settled["second"], settled["third"]
    for day, pid in (("2024-03-29", "pd1"), ("2024-03-30", "pd2")):
        statement, [line] = _agent_statement(first, day)
        assert (statement["status"], line["line_type"], line["line_id"],
                int(line["earned_minor"]), int(statement["net_minor"])) == \
            ("closed", "commission", "markup:1", _spread(MER_D[pid]), _spread(MER_D[pid]))
    # closed agent statements never change, whatever arrives later
    for sid, row in first["agent_statements"].items():
        if row["status"] == "closed":
            assert second["agent_statements"][sid] == row == third["agent_statements"][sid], sid
    for key, row in first["agent_lines"].items():
        if first["agent_statements"][key[0]]["status"] == "closed":
            assert second["agent_lines"][key] == row == third["agent_lines"][key], key


def test_a_late_capture_reaches_the_agent_as_an_adjustment_naming_it(settled):
    second = settled["second"]
    statement, [line] = _agent_statement(second, SECOND_AS_OF.isoformat())
    assert (line["line_type"], line["line_id"], line["event_id"], line["commission_id"],
            line["natural_period_start"], int(line["net_minor"]), int(line["earned_minor"])) == \
        ("adjustment", f"pd3:{AGENT}:1", "pd3", f"pd3:{AGENT}:1", date(2024, 3, 29),
         _spread(MER_D["pd3"]), _spread(MER_D["pd3"]))
    assert "pd3" in line["description"] and "2024-03-29" in line["description"]
    assert (int(statement["adjustments_minor"]), int(statement["earned_minor"]),
            statement["adjustment_count"]) == (_spread(MER_D["pd3"]), 0, 1)
    # pd4 came in time for its own day, which closed in the same run
    statement, [line] = _agent_statement(second, "2024-04-03")
    assert (statement["status"], line["line_type"], int(line["earned_minor"])) == \
        ("closed", "commission", _spread(MER_D["pd4"]))


def test_price_changes_on_closed_agent_statements_are_booked_as_corrections(settled):
    third = settled["third"]
    statement, lines = _agent_statement(third, THIRD_AS_OF.isoformat())
    deltas = {pid: _spread(MER_D[pid], NEW_PRICE_D) - _spread(MER_D[pid])
              for pid in ("pd1", "pd2", "pd4")}
    assert all(delta > 0 for delta in deltas.values())
    assert [(r["line_id"], r["line_type"], r["event_id"], int(r["net_minor"])) for r in lines] == \
        [(f"correction:{pid}:{AGENT}:1:1", "adjustment", pid, deltas[pid]) for pid in sorted(deltas)]
    assert all(r["commission_id"] in r["description"] for r in lines)
    assert (int(statement["adjustments_minor"]), statement["status"]) == \
        (sum(deltas.values()), "open")
    # the late pd3, still open at the change, took the new price when its period closed
    _, [late] = _agent_statement(third, SECOND_AS_OF.isoformat())
    assert int(late["net_minor"]) == _spread(MER_D["pd3"], NEW_PRICE_D)
    # the running balance now holds every commission at today's price, none twice
    latest = max(third["agent_statements"].values(), key=lambda r: r["period_start"])
    assert int(latest["closing_balance_minor"]) == sum(
        _spread(amount, NEW_PRICE_D) for amount in MER_D.values())


@pytest.mark.postgres
@pytest.mark.parametrize("model, key", [
    ("fct_settlement_statements", "statement_id"),
    ("fct_settlement_statement_lines", "line_id"),
    ("fct_agent_commission_statements", "statement_id"),
    ("fct_agent_commission_statement_lines", "statement_id, line_id"),
])
def test_duckdb_and_postgres_settle_identically(settled_duckdb, settled_postgres, model, key):
    sql = f"select * from analytics.{model} order by {key}"
    duck = settled_duckdb["warehouse"].query(sql)
    pg = settled_postgres["warehouse"].query(sql)
    assert duck and [list(r) for r in duck] == [list(r) for r in pg]
    assert duck == pg
