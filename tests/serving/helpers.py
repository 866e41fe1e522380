"""Factories for API tests: an app on a migrated database, a bootstrapped admin and merchants."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.app import create_app
from serving.auth import issue_operator_token
from serving.channels import luhn_ok
from serving.schemas import MerchantCreate
from serving.services.admin import bootstrap_admin, create_merchant
from warehouse.models import LedgerEntry


def random_card(prefix: str = "424242") -> str:
    """A fresh Luhn-valid test card that approves (card velocity rules see a new card)."""
    import random

    body = prefix + "".join(random.choice("0123456789") for _ in range(15 - len(prefix)))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


@dataclass
class Api:
    client: TestClient
    settings: object
    engine: object
    admin_token: str

    def merchant(self, name: str = "Acme", **kwargs) -> tuple[str, str]:
        with Session(self.engine) as session:
            merchant, key = create_merchant(session, MerchantCreate(name=name, **kwargs))
            session.commit()
            return merchant.id, key

    def pay(self, key: str, *, amount="1000", currency="USD", idem=None, method=None,
            headers=None, **extra):
        body = {"amount_minor": amount, "currency": currency, "merchant_reference": "order-1",
                "payment_method": method or {"type": "card", "number": random_card()},
                **extra}
        hdrs = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem or uuid.uuid4().hex,
                **(headers or {})}
        return self.client.post("/api/v1/payments", json=body, headers=hdrs)

    def refund(self, key: str, payment_id: str, amount=None, idem=None):
        body = {"payment_id": payment_id}
        if amount is not None:
            body["amount_minor"] = amount
        return self.client.post("/api/v1/refunds", json=body, headers={
            "Authorization": f"Bearer {key}", "Idempotency-Key": idem or uuid.uuid4().hex})


def make_api(settings) -> Api:
    app = create_app(settings)
    engine = app.state.engine
    with Session(engine) as session:
        user = bootstrap_admin(session)
        session.commit()
        token = issue_operator_token(settings, user)
    return Api(TestClient(app), settings, engine, token)


def sqlite_api(tmp_path, make_settings):
    """Settings and an Api on a fresh SQLite OLTP database in tmp_path, migrated to head."""
    from warehouse.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'oltp.sqlite'}"
    upgrade(url)
    settings = make_settings(database_url=url)
    return settings, make_api(settings)


# --- concurrency: a real HTTP server, and requests released at once ---------------------------


class LiveServer:
    """The app under uvicorn on 127.0.0.1 in a background thread. lifespan="on" runs the app's
    start-up as a worker does (on Postgres: the async pool the fast paths use)."""

    def __init__(self, app, lifespan: str = "off"):
        import socket

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def live_post(url: str, path: str, key: str, body: dict, idem: str | None = None):
    """POST to a LiveServer with a merchant's key and an Idempotency-Key (fresh if not given)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.post(path, json=body, headers={
            "Authorization": f"Bearer {key}", "Idempotency-Key": idem or uuid.uuid4().hex})


def card_payment(amount: str = "1000", card: str | None = None) -> dict:
    """A payment body in USD paid by an approving test card (a fresh one unless given)."""
    return {"amount_minor": amount, "currency": "USD", "merchant_reference": "order-1",
            "payment_method": {"type": "card", "number": card or random_card()}}


def race(n: int, call: Callable[[int], object]) -> list:
    """call(0) .. call(n - 1) in n threads released together; their results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def transaction_totals(session: Session) -> dict[tuple[str, str], int]:
    """Every ledger transaction's legs added up per currency: all 0 when the books balance."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for leg in session.scalars(select(LedgerEntry)):
        totals[(leg.transaction_id, leg.currency)] += leg.amount_minor
    return totals
