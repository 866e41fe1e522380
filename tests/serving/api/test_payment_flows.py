"""Payments through HTTP: routing and failover, risk outcomes, confirm/cancel, pending callbacks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import channels
from serving.channel_simulator import deliver_pending_callbacks
from serving.errors import ApiError
from serving.routing import HEALTH, clear_config_cache
from serving.services.payments import apply_channel_outcome
from tests.serving.helpers import make_api
from warehouse.models import (
    ChannelCurrency,
    LedgerEntry,
    OutboxEvent,
    Payment,
    PaymentEvent,
    RiskListEntry,
)


@pytest.fixture
def api(oltp_url, make_settings):
    HEALTH.reset()
    clear_config_cache()
    yield make_api(make_settings(database_url=oltp_url))
    HEALTH.reset()
    clear_config_cache()
    for channel_id, *_ in channels.DEFAULT_CHANNELS:
        channels.set_fault(channel_id, None)


def trail(api, payment_id):
    with Session(api.engine) as s:
        return [e.to_status for e in s.scalars(
            select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id))]


def test_success_walks_the_state_machine_and_stores_the_routing_decision(api):
    _, key = api.merchant()
    body = api.pay(key, amount="1000").json()
    assert trail(api, body["id"]) == ["initiated", "processing", "risk_checking",
                                      "channel_calling", "success"]
    # The cheaper card channel (180 bps) wins over the backup (220 bps).
    assert body["channel"] == "ch_card_sim"
    routing = body["routing"]
    assert routing["chosen"] == "ch_card_sim"
    assert routing["candidates"] == ["ch_card_sim", "ch_card_backup_sim"]
    costs = {c["channel"]: c["cost_minor"] for c in routing["considered"]}
    assert costs == {"ch_card_sim": "18", "ch_card_backup_sim": "22"}


def test_each_considered_channels_cost_carries_its_currency(api):
    # api.md / money.md 1: an amount travels with its currency. A channel's cost is its cost
    # price in the payment's currency, on the payment's amount: JPY here (exponent 0).
    _, key = api.merchant(kyc_tier=3)
    body = api.pay(key, amount="5000", currency="JPY").json()
    assert body["status"] == "success", body
    costs = {c["channel"]: (c["cost_minor"], c["cost_currency"])
             for c in body["routing"]["considered"]}
    assert costs == {"ch_card_sim": ("90", "JPY"), "ch_card_backup_sim": ("110", "JPY")}
    with Session(api.engine) as s:  # stored so on the payment as well
        stored = s.get(Payment, body["id"]).routing["considered"]
    assert {c["cost_currency"] for c in stored} == {"JPY"}


def test_a_routing_decision_stored_before_cost_currency_still_renders_with_it(api):
    # Payments (and their events) stored before considered[] carried cost_currency: the API
    # shows each cost with the payment's currency, the one routing priced it in.
    _, key = api.merchant(kyc_tier=3)
    paid = api.pay(key, amount="1000", currency="EUR").json()
    with Session(api.engine) as s:
        payment = s.get(Payment, paid["id"])
        old = [{k: v for k, v in c.items() if k != "cost_currency"}
               for c in payment.routing["considered"]]
        payment.routing = {**payment.routing, "considered": old}
        for event in s.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_id == paid["id"])):
            event.payload = {**event.payload, "routing": {**event.payload["routing"],
                                                          "considered": old}}
        s.commit()
    auth = {"Authorization": f"Bearer {key}"}
    got = api.client.get(f"/api/v1/payments/{paid['id']}", headers=auth).json()
    assert [(c["cost_minor"], c["cost_currency"]) for c in got["routing"]["considered"]] == [
        ("22", "EUR"), ("18", "EUR")]
    assert got["routing"]["chosen"] == "ch_card_sim" and "method" not in got["routing"]
    events = api.client.get("/api/v1/events", headers=auth).json()["data"]
    assert [c["cost_currency"] for e in events for c in e["data"]["routing"]["considered"]] == [
        "EUR", "EUR"]


def test_outage_fails_over_then_routes_around_the_unhealthy_channel(api):
    _, key = api.merchant()
    channels.set_fault("ch_card_sim", "timeout")
    first = api.pay(key, amount="500").json()
    assert first["status"] == "success" and first["channel"] == "ch_card_backup_sim"
    assert first["routing"]["attempts"] == [
        {"channel": "ch_card_sim", "outcome": "timeout"},
        {"channel": "ch_card_backup_sim", "outcome": "approved"}]
    # Its success rate fell to 0: the backup is now preferred despite its higher price.
    second = api.pay(key, amount="500").json()
    assert second["routing"]["candidates"] == ["ch_card_backup_sim", "ch_card_sim"]
    assert second["routing"]["attempts"] == [{"channel": "ch_card_backup_sim", "outcome": "approved"}]


def test_breaker_opens_and_stops_calling_a_failing_channel(api):
    _, key = api.merchant()
    channels.set_fault("ch_card_sim", "timeout")
    forced = {"channel": "ch_card_sim"}
    for _ in range(10):
        body = api.pay(key, amount="500", **forced).json()
        assert body["failure_code"] == "channel_unavailable"
    assert HEALTH.get("ch_card_sim").state == "open"
    later = api.pay(key, amount="500", **forced).json()
    assert later["status"] == "failed" and later["routing"]["attempts"] == []
    reasons = {c["channel"]: c["reasons"] for c in later["routing"]["considered"]}
    assert reasons["ch_card_sim"] == ["breaker_open"]
    unforced = api.pay(key, amount="500").json()
    assert unforced["channel"] == "ch_card_backup_sim" and unforced["status"] == "success"


def test_a_forced_channel_of_another_payment_method_is_named_in_the_reasons(api):
    _, key = api.merchant()
    body = api.pay(key, amount="500", method={"type": "bank_transfer"},
                   channel="ch_wechat_sim").json()
    assert (body["status"], body["failure_code"]) == ("failed", "no_channel_available")
    reasons = {c["channel"]: c["reasons"] for c in body["routing"]["considered"]}
    assert reasons["ch_wechat_sim"] == ["payment_method_not_supported"]
    assert all("not_the_forced_channel" in why for cid, why in reasons.items()
               if cid != "ch_wechat_sim")


def test_every_channel_down_fails_the_payment_without_ledger(api):
    _, key = api.merchant()
    channels.set_fault("ch_card_sim", "timeout")
    channels.set_fault("ch_card_backup_sim", "timeout")
    body = api.pay(key, amount="500").json()
    assert body["status"] == "failed" and body["failure_code"] == "channel_unavailable"
    with Session(api.engine) as s:
        assert s.scalars(select(LedgerEntry)).first() is None


def test_limits_and_currencies_decide_eligibility(api):
    _, key = api.merchant()
    with Session(api.engine) as s:
        s.get(ChannelCurrency, ("ch_card_sim", "USD")).max_amount_minor = 10_000
        s.get(ChannelCurrency, ("ch_card_backup_sim", "USD")).daily_limit_minor = 15_000
        s.commit()
    clear_config_cache()
    big = api.pay(key, amount="12000").json()
    assert big["channel"] == "ch_card_backup_sim"
    reasons = {c["channel"]: c["reasons"] for c in big["routing"]["considered"]}
    assert reasons["ch_card_sim"] == ["above_max_amount"]
    over = api.pay(key, amount="12000").json()  # backup's daily limit would be passed
    assert over["status"] == "failed" and over["failure_code"] == "no_channel_available"
    crypto_in_usd = api.pay(key, amount="100", method={"type": "wechat_pay"})
    assert crypto_in_usd.json()["failure_code"] == "no_channel_available"


def test_kyc_limits_block_lists_and_velocity(api):
    merchant_id, key = api.merchant(kyc_tier=1)  # USD: 500 per payment, 1,000 per day
    single = api.pay(key, amount="50001").json()
    assert single["status"] == "failed" and single["failure_code"] == "risk_rejected"
    assert "single_payment_limit_kyc_1" in single["risk"]["reasons"]
    assert api.pay(key, amount="45000").json()["status"] == "success"
    assert api.pay(key, amount="45000").json()["status"] == "success"
    daily = api.pay(key, amount="20000").json()
    assert daily["risk"]["reasons"] == ["daily_limit_kyc_1"]
    with Session(api.engine) as s:
        s.add(RiskListEntry(list_type="block", kind="email", value="fraud@example.com"))
        s.commit()
    blocked = api.pay(key, amount="100", customer={"id": "c9", "email": "fraud@example.com"})
    assert blocked.json()["risk"] == {"decision": "reject", "score": None,
                                      "reasons": ["blocklist_email"]}
    _, key3 = api.merchant("Busy", kyc_tier=3)
    # The velocity rule (per hour) is under test, not the per-customer rate limit (per second),
    # which 12 quick requests would otherwise trip on a fast machine.
    from serving.ratelimit import TokenBuckets

    api.client.app.state.customer_limits = TokenBuckets(1000)
    statuses = [api.pay(key3, amount="100", customer={"id": "cus_fast"}).json()
                for _ in range(12)]
    assert [b["risk"]["decision"] for b in statuses[:10]] == ["approve"] * 10
    assert statuses[10]["status"] == "auth_required"
    assert statuses[10]["risk"]["reasons"] == ["velocity_customer_id"]


def test_geo_anomaly_holds_for_review_and_confirm_continues(api):
    _, key = api.merchant(kyc_tier=3)
    t1 = {"Clearhouse-Test-Clock": "2026-11-20T10:00:00Z"}
    t2 = {"Clearhouse-Test-Clock": "2026-11-20T10:20:00Z"}
    card = {"type": "card", "number": "4242424242424242"}
    api.pay(key, amount="100", customer={"id": "cus_geo", "geo": "US"}, headers=t1)
    held = api.pay(key, amount="100", customer={"id": "cus_geo", "geo": "JP"}, headers=t2).json()
    assert held["status"] == "auth_required" and held["risk"]["reasons"] == ["geo_anomaly"]
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "confirm-geo", **t2}
    missing = api.client.post(f"/api/v1/payments/{held['id']}/confirm", json={}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "payment_method_required"
    auth["Idempotency-Key"] = "confirm-geo-2"
    done = api.client.post(f"/api/v1/payments/{held['id']}/confirm",
                           json={"payment_method": card}, headers=auth)
    assert done.status_code == 200 and done.json()["status"] == "success"
    assert trail(api, held["id"])[-3:] == ["auth_required", "channel_calling", "success"]


def test_confirm_later_and_cancel(api):
    _, key = api.merchant()
    auth = {"Authorization": f"Bearer {key}"}
    pending = api.pay(key, amount="300", confirm=False,
                      method={"type": "alipay", "test_outcome": "success"}, currency="CNY").json()
    assert pending["status"] == "pending_confirm" and pending["channel"] is None
    done = api.client.post(f"/api/v1/payments/{pending['id']}/confirm", json={},
                           headers={**auth, "Idempotency-Key": "c1"})
    assert done.json()["status"] == "success" and done.json()["channel"] == "ch_alipay_sim"
    again = api.client.post(f"/api/v1/payments/{pending['id']}/cancel",
                            headers={**auth, "Idempotency-Key": "x1"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    other = api.pay(key, amount="300", confirm=False).json()
    cancelled = api.client.post(f"/api/v1/payments/{other['id']}/cancel",
                                headers={**auth, "Idempotency-Key": "x2"})
    assert cancelled.json()["status"] == "cancelled"
    refund = api.refund(key, other["id"])
    assert refund.status_code == 409


def _status_changes(api, status: str, channel: str) -> float:
    prefix = f'clearhouse_payment_status_changes_total{{channel="{channel}",status="{status}"}} '
    lines = [ln for ln in api.client.get("/metrics").text.splitlines() if ln.startswith(prefix)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_confirm_and_cancel_are_counted_as_status_changes_once(api):
    _, key = api.merchant()
    auth = {"Authorization": f"Bearer {key}"}
    before = (_status_changes(api, "success", "ch_alipay_sim"),
              _status_changes(api, "cancelled", "none"))
    pending = api.pay(key, amount="300", confirm=False,
                      method={"type": "alipay", "test_outcome": "success"}, currency="CNY").json()
    other = api.pay(key, amount="300", confirm=False).json()
    for _ in range(2):  # the replay (same key) is not a second change
        api.client.post(f"/api/v1/payments/{pending['id']}/confirm", json={},
                        headers={**auth, "Idempotency-Key": "c1"})
        api.client.post(f"/api/v1/payments/{other['id']}/cancel",
                        headers={**auth, "Idempotency-Key": "x2"})
    after = (_status_changes(api, "success", "ch_alipay_sim"),
             _status_changes(api, "cancelled", "none"))
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)


@pytest.mark.parametrize("number,later,final", [("4000000000003220", "succeeded", "success"),
                                                ("4000000000000341", "failed", "failed")])
def test_pending_then_callback(api, number, later, final):
    _, key = api.merchant()
    body = api.pay(key, amount="700", method={"type": "card", "number": number}).json()
    assert body["status"] == "pending_callback" and body["channel_reference"]
    with Session(api.engine) as s:
        from warehouse.models import SimChannelOperation

        op = s.get(SimChannelOperation, body["channel_reference"])
        assert op.outcome == later
        payment = s.get(Payment, body["id"])
        apply_channel_outcome(s, payment=payment, approved=later == "succeeded",
                              failure_code=op.failure_code, now=datetime.now(UTC))
        s.commit()
        legs = s.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == body["id"])).all()
        assert len(legs) == (2 if final == "success" else 0)
    got = api.client.get(f"/api/v1/payments/{body['id']}",
                         headers={"Authorization": f"Bearer {key}"}).json()
    assert (got["status"], got["failure_code"]) == (
        final, None if final == "success" else "card_declined")


def test_a_replayed_day_confirms_only_its_own_pending_payments(api):
    """Callbacks at a test clock confirm what existed by then: a payment taken since keeps
    waiting, and a callback dated before a payment's creation is refused, changing nothing."""
    _, key = api.merchant()
    auth = {"Authorization": f"Bearer {key}"}
    pending = {"type": "card", "number": "4000000000003220"}
    that_day = api.pay(key, amount="700", method=pending,
                       headers={"Clearhouse-Test-Clock": "2026-10-20T12:00:00Z"}).json()
    taken_since = api.pay(key, amount="800", method=pending).json()  # the wall clock: today
    end_of_day = datetime(2026, 10, 20, 23, 59, 59, tzinfo=UTC)
    report = deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC),
                                       test_clock=end_of_day)
    assert report == {"delivered": 1, "failed": 0, "skipped": 0}
    got = api.client.get(f"/api/v1/payments/{that_day['id']}", headers=auth).json()
    assert (got["status"], got["captured_at"]) == ("success", "2026-10-20T23:59:59.000Z")
    still = api.client.get(f"/api/v1/payments/{taken_since['id']}", headers=auth).json()
    assert still["status"] == "pending_callback"

    with Session(api.engine) as s:
        payment = s.get(Payment, taken_since["id"])
        with pytest.raises(ApiError) as refused:
            apply_channel_outcome(s, payment=payment, approved=True, failure_code=None,
                                  now=end_of_day)
        s.rollback()
    assert refused.value.status == 409 and refused.value.code == "before_payment_created"
    assert trail(api, taken_since["id"])[-1] == "pending_callback"
    with Session(api.engine) as s:
        assert not s.scalars(select(LedgerEntry).where(
            LedgerEntry.payment_id == taken_since["id"])).all()


@pytest.mark.parametrize("method_type,currency", [
    ("wechat_pay", "CNY"), ("alipay", "CNY"), ("e_cny", "CNY"), ("bank_transfer", "USD"),
    ("apple_pay", "USD"), ("crypto", "USDC")])
def test_declines_off_card_channels_carry_no_card_failure_code(api, method_type, currency):
    """A wallet, bank or chain channel declines with the generic `declined`, at once or in its
    later callback: `card_declined` is the card channels' own code."""
    _, key = api.merchant(f"Shop {method_type}")
    auth = {"Authorization": f"Bearer {key}"}
    declined = api.pay(key, amount="700", currency=currency,
                       method={"type": method_type, "test_outcome": "decline"}).json()
    assert (declined["status"], declined["failure_code"]) == ("failed", "declined")
    pending = api.pay(key, amount="700", currency=currency,
                      method={"type": method_type, "test_outcome": "pending_decline"}).json()
    assert pending["status"] == "pending_callback", pending
    report = deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC))
    assert report == {"delivered": 1, "failed": 0, "skipped": 0}
    final = api.client.get(f"/api/v1/payments/{pending['id']}", headers=auth).json()
    assert (final["status"], final["failure_code"]) == ("failed", "declined")


def test_timeout_instrument_fails_over_to_the_backup_and_then_fails(api):
    _, key = api.merchant()
    body = api.pay(key, amount="700", method={"type": "card", "number": "4000000000000119"}).json()
    assert body["status"] == "failed" and body["failure_code"] == "channel_unavailable"
    assert [a["channel"] for a in body["routing"]["attempts"]] == ["ch_card_sim", "ch_card_backup_sim"]
