"""A request that cannot get its database lock in time (Settings.db_lock_timeout_ms) is answered
503 database_busy with Retry-After, its transaction rolled back whole (no payment, no claimed
Idempotency-Key), and the same request sent again once the lock is free goes through once.
Before, a Postgres request waited without end behind a stuck transaction, and SQLite's
'database is locked' came back as a 500."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving import cache
from serving.errors import database_busy
from tests.serving.helpers import LiveServer, card_payment, live_post, make_api, random_card
from warehouse.connections import to_libpq_url
from warehouse.models import IdempotencyKey, Payment

LOCK_TIMEOUT_MS = 300


@pytest.fixture
def api(oltp_url, make_settings):
    cache.clear()
    yield make_api(make_settings(database_url=oltp_url, db_lock_timeout_ms=LOCK_TIMEOUT_MS))
    cache.clear()


class HeldLock:
    """Another session holding what every payment create needs: on Postgres the idempotency
    keys' table (the create's first statement claims its key there), on SQLite the write lock."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        if self.url.startswith("sqlite"):
            self.conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg.connect(to_libpq_url(self.url))
            self.conn.execute("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def counts(api, key: str) -> tuple[int, int]:
    with Session(api.engine) as session:
        return (session.scalar(select(func.count()).select_from(Payment)),
                session.scalar(select(func.count()).where(IdempotencyKey.key == key)))


def assert_busy(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "database_busy"
    assert "same Idempotency-Key" in error["message"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast_path", "general_path"])
def test_a_payment_that_waits_too_long_for_a_lock_is_refused_whole_and_can_be_retried(
        api, oltp_url, fast_path):
    api.settings.payments_fast_path = fast_path
    api.client.app.state.settings.payments_fast_path = fast_path
    _, key = api.merchant()
    idem, method = uuid.uuid4().hex, {"type": "card", "number": random_card()}
    with HeldLock(oltp_url):
        busy = api.pay(key, amount="1250", idem=idem, method=method)
    assert_busy(busy)
    assert counts(api, idem) == (0, 0)  # nothing written, the key not kept
    retried = api.pay(key, amount="1250", idem=idem, method=method)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "success"
    replayed = api.pay(key, amount="1250", idem=idem, method=method)
    assert replayed.json()["id"] == retried.json()["id"]
    assert counts(api, idem) == (1, 1)


def test_through_a_live_server_the_async_fast_path_answers_busy_too(api, oltp_url):
    """uvicorn with the lifespan: on Postgres the claim runs on the async pool's connections,
    which get the same lock timeout as the engine's."""
    _, key = api.merchant()
    idem, body = uuid.uuid4().hex, card_payment("1250")
    with LiveServer(api.client.app, lifespan="on") as server:
        with HeldLock(oltp_url):
            busy = live_post(server.url, "/api/v1/payments", key, body, idem=idem)
        assert_busy(busy)
        retried = live_post(server.url, "/api/v1/payments", key, body, idem=idem)
    assert retried.status_code == 201, retried.text
    assert counts(api, idem) == (1, 1)


def test_other_database_errors_are_not_called_busy():
    class Driver(Exception):
        sqlstate = "23505"  # unique_violation: a bug or a race to handle, not a busy database

    class Wrapped(Exception):
        orig = Driver()

    assert database_busy(Wrapped()) is None
    assert database_busy(sqlite3.OperationalError("no such table: payments")) is None
    assert database_busy(sqlite3.OperationalError("database is locked")) is not None
    Driver.sqlstate = "55P03"
    assert database_busy(Wrapped()) == "a lock was not granted in time"
