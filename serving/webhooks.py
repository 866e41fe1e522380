"""Merchant webhooks from the transactional outbox: enqueue, deliver with retries, redeliver.

    outbox_events (written with the change)  --enqueue-->  webhook_deliveries (one per endpoint)
    webhook_deliveries (pending, due)  --deliver_due-->  POST merchant's callback_url, signed

All state is in the database, so the dispatcher can die at any point:
- `enqueue` creates the deliveries and sets `published_at` in one transaction (outbox rows are
  locked with SKIP LOCKED on Postgres, the SQLite write lock elsewhere), and never makes a second
  delivery for an (event, url) it already has.
- `deliver_due` claims due deliveries in a short transaction: it counts the attempt and pushes
  `next_attempt_at` forward by a lease (LEASE), so a concurrent dispatcher skips them. It then
  POSTs outside any transaction (the SQLite write lock is never held across the network) and
  records the outcome in a second short transaction, guarded by the attempt number. If the
  process dies between the POST and that commit, the lease runs out and the event goes again
  with the same `Clearhouse-Event-Id`: delivery is at-least-once and receivers dedupe by that id.
- Failures (non-2xx, network error, timeout) retry after 30 s * 2^(attempt-1) plus up to 10 %
  deterministic jitter, capped at 6 h; the 12th failed attempt marks the delivery dead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, Select, func, select, update
from sqlalchemy.orm import Session, aliased

from serving import signing
from serving.routing import decision_out
from serving.schemas import iso_z
from warehouse.ids import new_id
from warehouse.models import Merchant, OutboxEvent, Payment, Refund, WebhookDelivery

log = logging.getLogger("clearhouse.webhooks")

MAX_ATTEMPTS = 12
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
JITTER = 0.10  # up to +10 %, derived from the delivery id and attempt (reproducible)
LEASE = timedelta(minutes=5)  # a claimed delivery is someone else's for this long
CLAIM_CHUNK = 10  # claimed at a time: 10 sends x REQUEST_TIMEOUT stays well inside LEASE
REQUEST_TIMEOUT = httpx.Timeout(10.0)
ENQUEUE_BATCH = 500
USER_AGENT = "Clearhouse-Webhooks/1"


def backoff(attempt: int, key: str = "") -> timedelta:
    """Delay after the `attempt`-th failed attempt (1-based): 30 s, 60 s, 120 s, ... <= 6 h."""
    base = min(BASE_DELAY * 2 ** (max(attempt, 1) - 1), MAX_DELAY)
    digest = hashlib.sha256(f"{key}:{attempt}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 2**32
    return min(base * (1 + JITTER * fraction), MAX_DELAY)


# --- which merchant an event belongs to ---------------------------------------------------------

_AggregatePayment = aliased(Payment, name="aggregate_payment")
_PayloadPayment = aliased(Payment, name="payload_payment")


def event_merchant_id():
    """SQL expression: the event's merchant, from the payload's merchant_id, else the payment
    or refund the event is about (its aggregate), else the payload's payment_id."""
    return func.coalesce(
        OutboxEvent.payload["merchant_id"].as_string(),
        _AggregatePayment.merchant_id,
        Refund.merchant_id,
        _PayloadPayment.merchant_id,
    )


def select_events() -> Select[OutboxEvent, str | None]:
    """SELECT (OutboxEvent, merchant_id) with the joins event_merchant_id() needs."""
    return (
        select(OutboxEvent, event_merchant_id().label("merchant_id"))
        .outerjoin(_AggregatePayment, _AggregatePayment.id == OutboxEvent.aggregate_id)
        .outerjoin(Refund, Refund.id == OutboxEvent.aggregate_id)
        .outerjoin(_PayloadPayment,
                   _PayloadPayment.id == OutboxEvent.payload["payment_id"].as_string())
    )


def event_out(event: OutboxEvent) -> dict:
    """The event as the API shows it and as a webhook body carries it."""
    data = event.payload
    if data.get("object") == "payment" and data.get("routing"):  # stored before cost_currency
        data = {**data, "routing": decision_out(data["routing"], data["currency"])}
    return {"id": event.id, "type": event.event_type, "created_at": iso_z(event.created_at),
            "data": data}


def delivery_out(delivery: WebhookDelivery) -> dict:
    def ts(value: datetime | None) -> str | None:
        return None if value is None else iso_z(value)

    return {"id": delivery.id, "object": "webhook_delivery", "event_id": delivery.event_id,
            "merchant_id": delivery.merchant_id, "url": delivery.url, "status": delivery.status,
            "attempts": delivery.attempts,
            "next_attempt_at": ts(delivery.next_attempt_at) if delivery.status == "pending" else None,
            "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
            "delivered_at": ts(delivery.delivered_at), "created_at": ts(delivery.created_at)}


# --- enqueue -------------------------------------------------------------------------------------

def enqueue(session: Session, now: datetime, *, batch: int = ENQUEUE_BATCH) -> int:
    """Turn unpublished outbox events into deliveries; returns how many deliveries were created.

    Events of merchants without a callback_url are marked published with no delivery (they stay
    listed under GET /events and can be sent later with redeliver). The caller commits.
    """
    rows = session.execute(
        select_events().where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.created_at, OutboxEvent.id).limit(batch)
        .with_for_update(of=OutboxEvent, skip_locked=True)  # Postgres; SQLite: the write lock
    ).all()
    if not rows:
        return 0
    merchant_ids = {merchant_id for _, merchant_id in rows if merchant_id}
    urls = dict(session.execute(
        select(Merchant.id, Merchant.callback_url)
        .where(Merchant.id.in_(merchant_ids), Merchant.callback_url.is_not(None))
    ).all()) if merchant_ids else {}
    existing: set[tuple[str, str]] = {(event_id, url) for event_id, url in session.execute(
        select(WebhookDelivery.event_id, WebhookDelivery.url)
        .where(WebhookDelivery.event_id.in_([event.id for event, _ in rows])))}
    created = 0
    for event, merchant_id in rows:
        url = urls.get(merchant_id) if merchant_id else None
        if url and (event.id, url) not in existing:
            session.add(WebhookDelivery(id=new_id("webhook_delivery"), event_id=event.id,
                                        merchant_id=merchant_id, url=url, status="pending",
                                        attempts=0, next_attempt_at=now, created_at=now))
            existing.add((event.id, url))
            created += 1
        event.published_at = now
    session.flush()
    return created


def redeliver(session: Session, *, event: OutboxEvent, merchant_id: str,
              now: datetime) -> WebhookDelivery | None:
    """A new delivery of `event` to the merchant's current callback_url, due now (None when the
    merchant has no callback_url). The caller commits."""
    url = session.scalar(select(Merchant.callback_url).where(Merchant.id == merchant_id))
    if not url:
        return None
    delivery = WebhookDelivery(id=new_id("webhook_delivery"), event_id=event.id,
                               merchant_id=merchant_id, url=url, status="pending", attempts=0,
                               next_attempt_at=now, created_at=now)
    session.add(delivery)
    session.flush()
    return delivery


# --- deliver -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    delivery_id: str
    attempt: int
    event_id: str
    url: str
    body: bytes
    secret: str | None


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    delivery_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"delivered": self.delivered, "retrying": self.retrying, "dead": self.dead}


def _claim(engine: Engine, now: datetime, limit: int) -> list[Claim]:
    with Session(engine) as session, session.begin():
        # Oldest due first, then in event order. Best effort only: a delivery being retried
        # falls behind later events, so receivers must not rely on order.
        deliveries = session.scalars(
            select(WebhookDelivery)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, OutboxEvent.created_at, OutboxEvent.id)
            .limit(limit)
            # Postgres: rows another dispatcher is claiming are skipped, never waited for;
            # SQLite: BEGIN IMMEDIATE's write lock serialises claims.
            .with_for_update(of=WebhookDelivery, skip_locked=True)
        ).all()
        if not deliveries:
            return []
        events = {e.id: e for e in session.scalars(
            select(OutboxEvent).where(OutboxEvent.id.in_({d.event_id for d in deliveries})))}
        secrets = dict(session.execute(
            select(Merchant.id, Merchant.webhook_secret)
            .where(Merchant.id.in_({d.merchant_id for d in deliveries}))).all())
        claims = []
        for delivery in deliveries:
            delivery.attempts += 1
            delivery.next_attempt_at = now + LEASE
            body = json.dumps(event_out(events[delivery.event_id]), separators=(",", ":"))
            claims.append(Claim(delivery.id, delivery.attempts, delivery.event_id, delivery.url,
                                body.encode(), secrets.get(delivery.merchant_id)))
        return claims


def _send(client: httpx.Client, claim: Claim, now: datetime) -> tuple[int | None, str | None]:
    """POST one claimed delivery: (status code, error); error None means delivered."""
    if not claim.secret:
        return None, "the merchant has no webhook_secret; nothing is sent unsigned"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.SIGNATURE_HEADER: signing.sign(claim.secret, claim.body, now),
        signing.EVENT_ID_HEADER: claim.event_id,
    }
    try:
        response = client.post(claim.url, content=claim.body, headers=headers,
                               timeout=REQUEST_TIMEOUT, follow_redirects=False)
    except httpx.TimeoutException as exc:
        return None, f"timeout: {type(exc).__name__}"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _record(engine: Engine, claim: Claim, now: datetime, status_code: int | None,
            error: str | None) -> str:
    """Store the outcome of a claimed attempt; returns the delivery's new status."""
    values: dict[str, Any]
    if error is None:
        values = {"status": "delivered", "delivered_at": now, "last_status_code": status_code,
                  "last_error": None}
    elif claim.attempt >= MAX_ATTEMPTS:
        values = {"status": "dead", "last_status_code": status_code, "last_error": error}
    else:
        values = {"status": "pending", "last_status_code": status_code, "last_error": error,
                  "next_attempt_at": now + backoff(claim.attempt, claim.delivery_id)}
    with Session(engine) as session, session.begin():
        # Guarded by the attempt: if our lease ran out and another dispatcher claimed the
        # delivery again, its outcome is the one that counts.
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == claim.delivery_id,
                   WebhookDelivery.attempts == claim.attempt,
                   WebhookDelivery.status == "pending")
            .values(**values))
    return str(values["status"])


def deliver_due(engine: Engine, client: httpx.Client, now: datetime, batch: int = 100
                ) -> DeliveryReport:
    """Send up to `batch` due deliveries (claimed CLAIM_CHUNK at a time) and record outcomes."""
    report = DeliveryReport()
    clock = signing.running_clock(now)  # each delivery signed when it is sent
    while len(report.delivery_ids) < batch:
        claims = _claim(engine, now, min(CLAIM_CHUNK, batch - len(report.delivery_ids)))
        if not claims:
            break
        for claim in claims:
            status_code, error = _send(client, claim, clock())
            status = _record(engine, claim, now, status_code, error)
            report.delivery_ids.append(claim.delivery_id)
            if status == "delivered":
                report.delivered += 1
            elif status == "dead":
                report.dead += 1
                log.warning("webhook delivery %s of event %s is dead after %d attempts: %s",
                            claim.delivery_id, claim.event_id, claim.attempt, error)
            else:
                report.retrying += 1
    return report


def run_once(engine: Engine, client: httpx.Client, now: datetime, batch: int = 100) -> dict:
    """One dispatcher tick: enqueue new outbox events, then deliver what is due."""
    with Session(engine) as session:
        enqueued = enqueue(session, now)
        session.commit()
    return {"enqueued": enqueued, **deliver_due(engine, client, now, batch).as_dict()}
