"""Factories for webhook and callback tests: outbox events, merchant endpoints, a local receiver
(httpx.MockTransport: no network) that checks every Clearhouse-Signature like a merchant would."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session

from serving import signing
from warehouse.ids import new_id
from warehouse.models import Merchant, OutboxEvent

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HOOK_URL = "https://merchant.example/hooks"


def configure_webhook(engine, merchant_id: str, url: str | None = HOOK_URL,
                      secret: str | None = "whsec_test_secret") -> None:
    with Session(engine) as session:
        merchant = session.get(Merchant, merchant_id)
        merchant.callback_url, merchant.webhook_secret = url, secret
        session.commit()


def add_event(engine, merchant_id: str | None, *, event_type: str = "payment.succeeded",
              at: datetime = NOW, payload: dict | None = None) -> str:
    event_id = new_id("event")
    data = payload if payload is not None else {"merchant_id": merchant_id, "amount_minor": "1000"}
    with Session(engine) as session:
        session.add(OutboxEvent(id=event_id, event_type=event_type, aggregate_id="pay_test",
                                payload=data, created_at=at))
        session.commit()
    return event_id


@dataclass
class Receiver:
    """A merchant endpoint. `plan` lists what the next calls get (a status code or an exception
    to raise); after it runs out, every call gets `default`. Bad signatures get a 400."""

    secret: str = "whsec_test_secret"
    plan: list = field(default_factory=list)
    default: int = 200
    now: datetime = NOW
    calls: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        signing.verify(self.secret, body, request.headers.get(signing.SIGNATURE_HEADER),
                       now=self.now)  # raises (and the test fails) on a bad signature
        with self.lock:
            outcome = self.plan.pop(0) if self.plan else self.default
            self.calls.append({"url": str(request.url), "headers": dict(request.headers),
                               "event": json.loads(body)})
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"ok": outcome < 300})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    @property
    def event_ids(self) -> list[str]:
        return [call["headers"]["clearhouse-event-id"] for call in self.calls]
