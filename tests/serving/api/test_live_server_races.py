"""The money paths under a real uvicorn server with the lifespan on (on Postgres the async
pool of serving/pg_async.py serves the payments fast path), hit from many client threads."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import cache
from tests.serving.helpers import LiveServer, card_payment, live_post, make_api, race
from warehouse.models import IdempotencyKey, LedgerEntry, Payment, Refund


@pytest.fixture
def live(oltp_url, make_settings):
    cache.clear()
    api = make_api(make_settings(database_url=oltp_url))
    with LiveServer(api.client.app, lifespan="on") as server:
        if api.engine.dialect.name == "postgresql":
            assert getattr(api.client.app.state, "pg_pool", None) is not None
        yield api, server.url
    cache.clear()


def test_same_key_same_body_payment_one_effect_identical_responses(live):
    api, url = live
    _, key = api.merchant(kyc_tier=3)
    body, idem = card_payment(), uuid.uuid4().hex
    results = race(10, lambda i: live_post(url, "/api/v1/payments", key, body, idem))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.text for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 9
    with Session(api.engine) as s:
        assert len(s.scalars(select(Payment)).all()) == 1


def test_same_key_other_body_payment_is_409(live):
    api, url = live
    _, key = api.merchant(kyc_tier=3)
    idem = uuid.uuid4().hex
    results = race(10, lambda i: live_post(url, "/api/v1/payments", key,
                                      card_payment(amount=str(1000 + i)), idem))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 9, [r.text for r in results]
    with Session(api.engine) as s:
        assert len(s.scalars(select(Payment)).all()) == 1


def test_live_concurrent_partial_refunds(live):
    api, url = live
    _, key = api.merchant(kyc_tier=3)
    payment = live_post(url, "/api/v1/payments", key, card_payment("1000")).json()
    results = race(10, lambda i: live_post(url, "/api/v1/refunds", key,
                                      {"payment_id": payment["id"], "amount_minor": "300"},
                                      uuid.uuid4().hex))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [422] * 7, [r.text for r in results]
    with Session(api.engine) as s:
        p = s.get(Payment, payment["id"])
        refunds = s.scalars(select(Refund)).all()
        assert p.refunded_minor == sum(r.amount_minor for r in refunds) == 900
        totals = defaultdict(int)
        for leg in s.scalars(select(LedgerEntry)):
            totals[leg.transaction_id] += leg.amount_minor
        assert set(totals.values()) == {0}


def test_live_same_key_refund_one_effect(live):
    api, url = live
    _, key = api.merchant(kyc_tier=3)
    payment = live_post(url, "/api/v1/payments", key, card_payment("1000")).json()
    idem = uuid.uuid4().hex
    results = race(10, lambda i: live_post(url, "/api/v1/refunds", key,
                                      {"payment_id": payment["id"], "amount_minor": "300"}, idem))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.text for r in results}) == 1
    with Session(api.engine) as s:
        assert len(s.scalars(select(Refund)).all()) == 1
        key_row = s.scalars(select(IdempotencyKey).where(IdempotencyKey.key == idem)).one()
        assert key_row.response_status == 201
