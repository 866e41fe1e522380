"""Webhooks from the outbox on SQLite and Postgres: enqueue, signed delivery, backoff, dead
letters, crash recovery (at-least-once, same event id) and concurrent dispatchers."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving import signing, webhooks
from tests.serving.helpers import make_api
from tests.serving.webhook_helpers import HOOK_URL, NOW, Receiver, add_event, configure_webhook
from warehouse.models import OutboxEvent, WebhookDelivery


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


@pytest.fixture
def merchant(api):
    merchant_id, _ = api.merchant("Hooked")
    configure_webhook(api.engine, merchant_id)
    return merchant_id


def enqueue(engine, now=NOW) -> int:
    with Session(engine) as session:
        created = webhooks.enqueue(session, now)
        session.commit()
    return created


def deliver(engine, receiver: Receiver, now=NOW, batch=100) -> webhooks.DeliveryReport:
    receiver.now = now
    with receiver.client() as client:
        return webhooks.deliver_due(engine, client, now, batch=batch)


def deliveries(engine, event_id=None) -> list[WebhookDelivery]:
    with Session(engine) as session:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if event_id:
            query = query.where(WebhookDelivery.event_id == event_id)
        return list(session.scalars(query))


def test_backoff_doubles_from_30_seconds_with_bounded_jitter_and_caps_at_6_hours():
    for attempt in range(1, 13):
        base = min(30 * 2 ** (attempt - 1), 6 * 3600)
        delay = webhooks.backoff(attempt, "whd_x").total_seconds()
        assert base <= delay <= min(base * 1.1, 6 * 3600)
        assert webhooks.backoff(attempt, "whd_x") == webhooks.backoff(attempt, "whd_x")
    assert webhooks.backoff(11, "whd_x") == webhooks.backoff(12, "whd_y") == timedelta(hours=6)


def test_enqueue_makes_one_delivery_per_event_and_url_and_is_idempotent(api, merchant):
    silent, _ = api.merchant("No endpoint")
    mine = [add_event(api.engine, merchant) for _ in range(3)]
    add_event(api.engine, silent)
    add_event(api.engine, None, payload={"note": "no merchant"})
    assert enqueue(api.engine) == 3
    assert enqueue(api.engine) == 0
    with Session(api.engine) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)
                              .where(OutboxEvent.published_at.is_(None))) == 0
        # Even if an event came back unpublished, its (event, url) already has a delivery.
        session.execute(update(OutboxEvent).values(published_at=None))
        session.commit()
    assert enqueue(api.engine) == 0
    rows = deliveries(api.engine)
    assert sorted(d.event_id for d in rows) == sorted(mine)
    assert {(d.merchant_id, d.url, d.status, d.attempts) for d in rows} == {
        (merchant, HOOK_URL, "pending", 0)}
    assert all(d.id.startswith("whd_") for d in rows)


def test_api_payment_and_refund_events_are_delivered_signed(api):
    merchant_id, key = api.merchant("Shop")
    configure_webhook(api.engine, merchant_id)
    payment = api.pay(key, amount="1500").json()
    api.refund(key, payment["id"], amount="500")
    receiver = Receiver()
    with receiver.client() as client:
        result = webhooks.run_once(api.engine, client, NOW)
    assert result == {"enqueued": 2, "delivered": 2, "retrying": 0, "dead": 0}
    by_type = {call["event"]["type"]: call for call in receiver.calls}
    assert set(by_type) == {"payment.succeeded", "refund.succeeded"}  # refund found via refunds
    call = by_type["payment.succeeded"]
    assert call["url"] == HOOK_URL
    assert call["headers"]["content-type"] == "application/json"
    assert call["headers"]["clearhouse-event-id"] == call["event"]["id"]
    signed_at, _ = signing.parse(call["headers"]["clearhouse-signature"])
    assert 0 <= signed_at - int(NOW.timestamp()) < 60  # when sent: NOW plus the pass so far
    assert set(call["event"]) == {"id", "type", "created_at", "data"}
    assert call["event"]["data"]["id"] == payment["id"]
    assert call["event"]["data"]["amount_minor"] == "1500"
    assert by_type["refund.succeeded"]["event"]["data"]["amount_minor"] == "500"
    assert {(d.status, d.attempts, d.last_status_code) for d in deliveries(api.engine)} == {
        ("delivered", 1, 200)}


def test_500_then_timeout_retry_with_backoff_then_deliver(api, merchant):
    event_id = add_event(api.engine, merchant)
    enqueue(api.engine)
    receiver = Receiver(plan=[500, httpx.ReadTimeout("slow receiver")])

    report = deliver(api.engine, receiver)
    assert (report.retrying, report.delivered) == (1, 0)
    (first,) = deliveries(api.engine)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert first.last_error == "HTTP 500"
    wait = first.next_attempt_at - NOW
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=33)

    assert deliver(api.engine, receiver, NOW + wait - timedelta(seconds=1)).delivery_ids == []
    at = first.next_attempt_at
    report = deliver(api.engine, receiver, at)
    (second,) = deliveries(api.engine)
    assert (report.retrying, second.attempts, second.last_status_code) == (1, 2, None)
    assert second.last_error.startswith("timeout")
    assert timedelta(seconds=60) <= second.next_attempt_at - at <= timedelta(seconds=66)

    report = deliver(api.engine, receiver, second.next_attempt_at)
    (third,) = deliveries(api.engine)
    assert (report.delivered, third.status, third.attempts) == (1, "delivered", 3)
    assert (third.last_status_code, third.last_error) == (200, None)
    assert third.delivered_at == second.next_attempt_at
    assert receiver.event_ids == [event_id] * 3


def test_network_error_is_a_failed_attempt(api, merchant):
    add_event(api.engine, merchant)
    enqueue(api.engine)
    deliver(api.engine, Receiver(plan=[httpx.ConnectError("connection refused")]))
    (row,) = deliveries(api.engine)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("ConnectError")


def test_dead_after_twelve_failed_attempts(api, merchant):
    add_event(api.engine, merchant)
    enqueue(api.engine)
    receiver = Receiver(default=503)
    now, waits = NOW, []
    for attempt in range(1, 13):
        report = deliver(api.engine, receiver, now)
        assert len(report.delivery_ids) == 1
        (row,) = deliveries(api.engine)
        assert row.attempts == attempt
        if attempt < 12:
            assert (row.status, report.retrying) == ("pending", 1)
            waits.append(row.next_attempt_at - now)
            now = row.next_attempt_at
    assert (row.status, row.last_status_code, report.dead) == ("dead", 503, 1)
    assert waits[-1] == timedelta(hours=6) and waits == sorted(waits)
    assert deliver(api.engine, receiver, now + timedelta(days=30)).delivery_ids == []
    assert len(receiver.calls) == 12


def test_crash_after_send_before_commit_redelivers_with_the_same_event_id(api, merchant,
                                                                          monkeypatch):
    event_id = add_event(api.engine, merchant)
    enqueue(api.engine)
    receiver = Receiver()

    def crash(*_args, **_kwargs):
        raise RuntimeError("the dispatcher died before recording the outcome")

    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "_record", crash)
        with pytest.raises(RuntimeError):
            deliver(api.engine, receiver)
    assert receiver.event_ids == [event_id]
    (row,) = deliveries(api.engine)  # the claim committed; the outcome never did
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, NOW + webhooks.LEASE)

    assert deliver(api.engine, receiver, NOW + timedelta(seconds=60)).delivery_ids == []
    report = deliver(api.engine, receiver, NOW + webhooks.LEASE)
    assert report.delivered == 1
    assert receiver.event_ids == [event_id, event_id]  # at-least-once; receivers dedupe by id
    (row,) = deliveries(api.engine)
    assert (row.status, row.attempts) == ("delivered", 2)


def test_a_stale_outcome_does_not_overwrite_a_newer_attempt(api, merchant):
    add_event(api.engine, merchant)
    enqueue(api.engine)
    (claim,) = webhooks._claim(api.engine, NOW, 10)
    (again,) = webhooks._claim(api.engine, NOW + webhooks.LEASE, 10)  # lease ran out
    assert (claim.attempt, again.attempt) == (1, 2)
    webhooks._record(api.engine, again, NOW + webhooks.LEASE, 200, None)
    webhooks._record(api.engine, claim, NOW + webhooks.LEASE, 500, "HTTP 500")  # late, ignored
    (row,) = deliveries(api.engine)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)


def test_merchant_without_webhook_secret_gets_nothing_unsigned(api):
    merchant_id, _ = api.merchant("No secret")
    configure_webhook(api.engine, merchant_id, secret=None)
    add_event(api.engine, merchant_id)
    enqueue(api.engine)
    receiver = Receiver()
    deliver(api.engine, receiver)
    assert receiver.calls == []
    (row,) = deliveries(api.engine)
    assert row.status == "pending" and "webhook_secret" in row.last_error


def test_secret_is_read_at_send_time_so_rotation_applies_to_retries(api, merchant):
    add_event(api.engine, merchant)
    enqueue(api.engine)
    deliver(api.engine, Receiver(default=500))
    configure_webhook(api.engine, merchant, secret="whsec_rotated")
    (row,) = deliveries(api.engine)
    receiver = Receiver(secret="whsec_rotated")
    assert deliver(api.engine, receiver, row.next_attempt_at).delivered == 1
    with pytest.raises(signing.SignatureMismatch):
        signing.verify("whsec_test_secret", b"", receiver.calls[0]["headers"]
                       ["clearhouse-signature"], now=row.next_attempt_at)


def test_two_concurrent_dispatchers_never_send_the_same_attempt_twice(api, merchant):
    events = [add_event(api.engine, merchant) for _ in range(40)]
    enqueue(api.engine)
    receiver = Receiver()
    original = receiver.__call__

    def slow(request):  # keep both dispatchers busy at the same time
        threading.Event().wait(0.005)
        return original(request)

    barrier = threading.Barrier(2)
    reports: list[webhooks.DeliveryReport] = []
    errors: list[BaseException] = []

    def dispatcher():
        try:
            with httpx.Client(transport=httpx.MockTransport(slow)) as client:
                barrier.wait()
                reports.append(webhooks.deliver_due(api.engine, client, NOW, batch=100))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert Counter(receiver.event_ids) == Counter(events)  # each exactly once
    claimed = [d for report in reports for d in report.delivery_ids]
    assert len(claimed) == len(set(claimed)) == 40
    assert all(report.delivery_ids for report in reports)  # both took part
    assert {(d.status, d.attempts) for d in deliveries(api.engine)} == {("delivered", 1)}


def test_claim_skips_deliveries_another_dispatcher_holds(api, merchant):
    """Postgres: FOR UPDATE SKIP LOCKED; a dispatcher never waits for, nor takes, a row that
    another one is claiming. (SQLite has one writer at a time: its write lock serialises.)"""
    if api.engine.dialect.name != "postgresql":
        pytest.skip("row locks are Postgres; SQLite serialises claims with its write lock")
    for _ in range(3):
        add_event(api.engine, merchant)
    enqueue(api.engine)
    first = deliveries(api.engine)[0].id
    with Session(api.engine) as holder:
        holder.scalars(select(WebhookDelivery).where(WebhookDelivery.id == first)
                       .with_for_update()).all()  # a claim in progress, not yet committed
        claims = webhooks._claim(api.engine, NOW, 10)
        assert sorted(c.delivery_id for c in claims) == [d.id for d in deliveries(api.engine)
                                                         if d.id != first]
        holder.rollback()
    assert [c.delivery_id for c in webhooks._claim(api.engine, NOW, 10)] == [first]


def test_each_delivery_is_signed_when_it_is_sent_not_when_the_pass_began(api, merchant,
                                                                        monkeypatch):
    """api.md: a signature older than 300 s is refused. A pass behind slow endpoints (here 200 s
    go by at each look at the clock) stamps each delivery with its own sending time; all of them
    used to carry the pass's start, so the later ones arrived already stale."""
    for _ in range(3):
        add_event(api.engine, merchant)
    enqueue(api.engine)
    ticks = iter(range(0, 100_000, 200))
    monkeypatch.setattr(signing, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    stamps = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        stamps.append(signing.parse(request.headers[signing.SIGNATURE_HEADER])[0])
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
        assert webhooks.deliver_due(api.engine, client, NOW).delivered == 3
    start = int(NOW.timestamp())
    assert len(stamps) == 3 and start < stamps[0] < stamps[1] < stamps[2]
    assert stamps[2] - stamps[0] >= 400  # 200 s per look at the clock, two looks at least
