"""Planted fraud in the day simulator and the offline labelled history built from it."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from clearhouse.simulator import (
    CURRENCIES,
    DECLINE_CARDS,
    FRAUD_KINDS,
    PENDING_CARD,
    REPORT_DELAY_DAYS,
    PlannedPayment,
    SimMerchant,
    make_customers,
    plan_day,
    run_day,
    set_up_merchants,
)
from ml.simulate import history, history_merchants, read_history, write_history
from serving.app import create_app
from serving.channels import APPROVED_CARDS, CARD_INSTRUMENTS, card_fingerprint, luhn_ok
from serving.risk import INDICATIVE_USD, KYC_SINGLE_LIMIT_MAJOR, to_usd_major
from serving.schemas import iso_z
from warehouse.migrate import upgrade
from warehouse.money import exponent

DAY = date(2026, 3, 2)
N = 1000
SEED = 42
MERCHANTS = history_merchants()


@pytest.fixture(scope="module")
def days() -> list[list[PlannedPayment]]:
    """Three busy days: enough planted episodes of every kind to check their signatures."""
    return [plan_day(MERCHANTS, DAY + timedelta(days=d), N, SEED) for d in range(3)]


@pytest.fixture(scope="module")
def planted(days) -> dict[str, list[PlannedPayment]]:
    by_kind = defaultdict(list)
    for plans in days:
        for plan in plans:
            if plan.fraud:
                by_kind[plan.fraud].append(plan)
    return by_kind


@pytest.fixture(scope="module")
def customers():
    return {c.id: c for c in make_customers(N // 3, SEED)}


def card(plan: PlannedPayment) -> str | None:
    return card_fingerprint(plan.body["payment_method"])


def median_minor(code: str) -> float:
    return CURRENCIES[code][1] * 10 ** exponent(code)


# --- plan_day -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 49, 150, 1000])
def test_plan_day_returns_n_plans_in_slot_order_and_repeats_itself(n):
    plans = plan_day(MERCHANTS, DAY, n, SEED)
    assert [p.index for p in plans] == list(range(n))
    assert plans == plan_day(MERCHANTS, DAY, n, SEED)
    assert plans != plan_day(MERCHANTS, DAY + timedelta(days=1), n, SEED)


@pytest.mark.parametrize(("n", "expected"), [(10, 0), (49, 0), (200, 4), (1000, 20), (3000, 60)])
def test_about_two_percent_is_planted_and_none_on_tiny_days(n, expected):
    assert sum(p.fraud is not None for p in plan_day(MERCHANTS, DAY, n, SEED)) == expected


def test_every_kind_is_planted_on_a_busy_day(days):
    for plans in days:
        assert {p.fraud for p in plans} - {None} == set(FRAUD_KINDS)


def test_ordinary_payments_keep_their_customers_card_device_ip_and_home(days, customers):
    for plan in (p for plans in days for p in plans if p.fraud is None):
        assert plan.reported_at is None
        who = customers[plan.body["customer"]["id"]]
        assert plan.body["customer"] == {"id": who.id, "email": f"{who.id}@example.com",
                                         "ip": who.ip, "device_id": who.device_id,
                                         "geo": who.home}
        number = plan.body["payment_method"].get("number")
        assert number in (None, who.card, PENDING_CARD, *DECLINE_CARDS)


def test_planted_payments_pass_the_channel_and_are_never_refunded(planted):
    for plan in (p for plans in planted.values() for p in plans):
        method = plan.body["payment_method"]
        assert plan.refund_at is None and plan.refund_minor is None
        assert "test_outcome" not in method
        if method["type"] == "card":
            assert luhn_ok(method["number"])
            assert method["number"] not in CARD_INSTRUMENTS
            assert method["number"] not in APPROVED_CARDS
        assert plan.at.date() >= DAY and plan.at.tzinfo is UTC


def test_card_testing_is_a_burst_of_small_payments_on_one_stolen_card(planted, customers):
    by_card = defaultdict(list)
    for plan in planted["card_testing"]:
        by_card[card(plan)].append(plan)
    assert len(by_card) >= 3  # one card per day at least
    for burst in by_card.values():
        times = sorted(p.at for p in burst)
        assert len(burst) >= 8 and times[-1] - times[0] <= timedelta(minutes=10)
        assert len({p.merchant.id for p in burst}) == 1
        assert len({p.body["customer"]["ip"] for p in burst}) == 1
        assert len({p.body["customer"]["device_id"] for p in burst}) == 1
        ids = [p.body["customer"]["id"] for p in burst]
        assert len(set(ids)) == len(ids) and not set(ids) & set(customers)
        assert len({p.body["customer"]["email"] for p in burst}) == len(burst)
        for p in burst:
            assert p.body["currency"] in ("USD", "EUR")
            assert 100 <= int(p.body["amount_minor"]) <= 500


def test_account_takeover_is_a_known_customer_on_a_new_device_abroad(planted, customers):
    takeovers = planted["account_takeover"]
    assert len(takeovers) >= 3
    for plan in takeovers:
        seen = plan.body["customer"]
        who = customers[seen["id"]]  # an existing customer, with ordinary payments elsewhere
        assert seen["device_id"] != who.device_id and seen["ip"] != who.ip
        assert seen["geo"] != who.home
        code = plan.body["currency"]
        assert 5 * median_minor(code) - 1 <= int(plan.body["amount_minor"]) \
            <= 15 * median_minor(code) + 1
    assert sum(p.at.hour < 6 for p in takeovers) >= len(takeovers) / 2  # mostly at night


def test_mule_cash_out_is_one_device_fanning_in_many_cards_within_an_hour(planted, customers):
    by_device = defaultdict(list)
    for plan in planted["mule_cash_out"]:
        by_device[plan.body["customer"]["device_id"]].append(plan)
    assert len(by_device) >= 3
    for fan_in in by_device.values():
        times = sorted(p.at for p in fan_in)
        assert len({card(p) for p in fan_in}) == len(fan_in) >= 4
        assert times[-1] - times[0] <= timedelta(hours=1)
        assert len({p.merchant.id for p in fan_in}) == 1
        assert len({p.body["customer"]["ip"] for p in fan_in}) == 1
        assert not {p.body["customer"]["id"] for p in fan_in} & set(customers)
        for p in fan_in:
            code = p.body["currency"]
            assert 3 * median_minor(code) - 1 <= int(p.body["amount_minor"]) \
                <= 10 * median_minor(code) + 1


def test_friendly_fraud_looks_like_the_customers_own_payment(planted, customers):
    assert planted["friendly_fraud"]
    for plan in planted["friendly_fraud"]:
        who = customers[plan.body["customer"]["id"]]
        assert plan.body["customer"]["device_id"] == who.device_id
        assert plan.body["customer"]["ip"] == who.ip
        assert plan.body["customer"]["geo"] == who.home
        assert plan.body["payment_method"].get("number", who.card) == who.card


def test_big_tickets_stay_under_the_smallest_tier_3_single_limit(planted):
    # A CNY-settling merchant has the smallest tier-3 limit in dollars: 20,000 CNY.
    limit_usd = KYC_SINGLE_LIMIT_MAJOR[3] * Decimal(INDICATIVE_USD["CNY"])
    for plan in planted["account_takeover"] + planted["mule_cash_out"]:
        assert to_usd_major(int(plan.body["amount_minor"]), plan.body["currency"]) < limit_usd


def test_reports_come_after_the_payment_within_the_kinds_delay_and_some_never():
    plans = [p for d in range(10) for p in plan_day(MERCHANTS, DAY + timedelta(days=d), N, SEED)
             if p.fraud]
    for plan in plans:
        if plan.reported_at is not None:
            low, high = REPORT_DELAY_DAYS[plan.fraud]
            assert timedelta(days=low) <= plan.reported_at - plan.at <= timedelta(days=high)
    never = sum(p.reported_at is None for p in plans)
    assert 0.04 * len(plans) <= never <= 0.2 * len(plans)  # about 10 %


# --- run_day records what it planted -----------------------------------------------------------


def fake_api(request: httpx.Request) -> httpx.Response:
    """Approves every payment, naming it after its slot, so the test knows which id is which."""
    body = json.loads(request.content)
    if request.url.path == "/api/v1/payments":
        return httpx.Response(201, json={
            "id": "pay_" + body["merchant_reference"], "status": "success",
            "currency": body["currency"], "amount_minor": body["amount_minor"]})
    if request.url.path == "/api/v1/wallets/topups":
        return httpx.Response(201, json={"wallet": {}, "payment": {"id": "pay_topup"}})
    return httpx.Response(201, json={})


def test_run_day_lists_every_planted_payment_with_its_api_id_and_report_time():
    merchants = [SimMerchant(f"mer_{i}", f"M{i}", f"key_{i}") for i in range(3)]
    with httpx.Client(transport=httpx.MockTransport(fake_api), base_url="http://api") as client:
        result = run_day(client, merchants, day=DAY, payments=400, seed=SEED, concurrency=2)
    plans = plan_day(merchants, DAY, 400, SEED)
    expected = {(f"pay_order-{DAY:%Y%m%d}-{p.index:06d}", p.fraud, p.reported_at)
                for p in plans if p.fraud}
    assert len(expected) == 8 and sorted(result.planted) == sorted(expected)
    assert result.payments == 400 and not result.errors


def test_the_real_api_takes_planted_payments_without_a_channel_decline(make_settings):
    settings = make_settings()
    upgrade(settings.oltp_url)
    app = create_app(settings)
    merchants = set_up_merchants(app.state.engine, settings.home_dir / "creds.json")
    planted = sorted((p for p in plan_day(merchants, DAY, N, SEED) if p.fraud), key=lambda p: p.at)
    assert {p.fraud for p in planted} == set(FRAUD_KINDS)
    with TestClient(app) as client:
        for plan in planted:
            resp = client.post("/api/v1/payments", json=plan.body, headers={
                "Authorization": f"Bearer {plan.merchant.api_key}",
                "Idempotency-Key": f"planted-{plan.index}", "Clearhouse-Test-Clock": iso_z(plan.at)})
            assert resp.status_code == 201, resp.text
            payment = resp.json()
            # Risk rules may hold (velocity, geo) or reject a planted payment; the channel never
            # declines one.
            assert payment["status"] in ("success", "auth_required") or \
                payment["failure_code"] == "risk_rejected", (plan.fraud, payment)
    app.state.engine.dispose()


# --- the offline history ------------------------------------------------------------------------

EVENT_LAYOUT = {
    "payment_id": pl.Utf8, "created_at": pl.Datetime("us", "UTC"), "merchant_id": pl.Utf8,
    "method": pl.Utf8, "amount_minor": pl.Int64, "currency": pl.Utf8, "customer_id": pl.Utf8,
    "card_fingerprint": pl.Utf8, "customer_ip": pl.Utf8, "device_id": pl.Utf8, "geo": pl.Utf8,
    "status": pl.Utf8, "failed_at": pl.Datetime("us", "UTC"),
}
LABEL_LAYOUT = {"payment_id": pl.Utf8, "kind": pl.Utf8, "reported_at": pl.Datetime("us", "UTC")}


@pytest.fixture(scope="module")
def hist() -> tuple[pl.DataFrame, pl.DataFrame]:
    return history(DAY, 4, 500, seed=7)


def test_history_has_the_payment_event_layout(hist):
    from ml.payment_features import EVENT_COLUMNS

    events, labels = hist
    assert dict(events.schema) == EVENT_LAYOUT and tuple(events.columns) == EVENT_COLUMNS
    assert dict(labels.schema) == LABEL_LAYOUT
    assert events.height == 4 * 500 and events["payment_id"].is_unique().all()
    assert events.equals(events.sort("created_at", "payment_id"))
    assert events["payment_id"][0].startswith("pay_hist_7_2026030")
    assert set(events["merchant_id"]) <= {m.id for m in MERCHANTS} and len(MERCHANTS) == 8
    assert set(events["method"]) <= {"card", "apple_pay", "bank_transfer", "wechat_pay", "alipay",
                                     "e_cny", "crypto"}
    assert set(events["status"]) == {"success", "failed"}
    assert (events["card_fingerprint"].is_not_null() == (events["method"] == "card")).all()
    assert events.select(pl.col("customer_id", "customer_ip", "device_id", "geo")
                         .null_count().sum()).row(0) == (0, 0, 0, 0)


def test_history_status_follows_the_channels_answer_to_the_instrument():
    plans = plan_day(MERCHANTS, DAY, 500, 7)
    events, _ = history(DAY, 1, 500, seed=7)
    status = dict(zip(events["payment_id"], events["status"], strict=True))
    for plan in plans:
        method = plan.body["payment_method"]
        declined = method.get("number") in DECLINE_CARDS or method.get("test_outcome") == "decline"
        assert status[f"pay_hist_7_{DAY:%Y%m%d}_{plan.index:06d}"] == \
            ("failed" if declined else "success")


def test_labels_are_the_reported_planted_payments_only(hist):
    events, labels = hist
    planted = [(f"pay_hist_7_{day:%Y%m%d}_{p.index:06d}", p)
               for day in (DAY + timedelta(days=d) for d in range(4))
               for p in plan_day(MERCHANTS, day, 500, 7) if p.fraud]
    assert sorted(labels["payment_id"]) == sorted(pid for pid, p in planted if p.reported_at)
    assert len(planted) == 4 * 10
    joined = labels.join(events, on="payment_id", how="left")
    assert joined["created_at"].null_count() == 0  # every label names a payment
    assert (joined["reported_at"] > joined["created_at"]).all()
    assert set(labels["kind"]) <= set(FRAUD_KINDS)


def test_history_repeats_itself_for_a_seed_and_differs_for_another(hist):
    events, labels = hist
    again_events, again_labels = history(DAY, 4, 500, seed=7)
    assert events.equals(again_events) and labels.equals(again_labels)
    other, _ = history(DAY, 4, 500, seed=8)
    assert not events.drop("payment_id").equals(other.drop("payment_id"))


def test_history_of_no_days_is_empty_with_the_layout():
    events, labels = history(DAY, 0, 500)
    assert events.is_empty() and dict(events.schema) == EVENT_LAYOUT
    assert labels.is_empty() and dict(labels.schema) == LABEL_LAYOUT


def test_history_round_trips_through_parquet(hist, tmp_path):
    events, labels = hist
    write_history(tmp_path / "hist", events, labels)
    assert sorted(p.name for p in (tmp_path / "hist").iterdir()) == ["events.parquet",
                                                                     "labels.parquet"]
    back_events, back_labels = read_history(tmp_path / "hist")
    assert back_events.schema == events.schema and back_events.equals(events)
    assert back_labels.schema == labels.schema and back_labels.equals(labels)


def test_labels_arrive_after_the_fact(hist):
    _, labels = hist
    cutoff = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) + timedelta(days=4)
    known = labels.filter(pl.col("reported_at") <= cutoff)
    assert 0 < known.height < labels.height  # at the end of the history most are not known yet
