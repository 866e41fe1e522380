"""Refunds under concurrency and retries (SQLite and Postgres)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.serving.helpers import make_api, race, transaction_totals
from warehouse.models import LedgerEntry, Payment, Refund


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def books(api, payment_id):
    with Session(api.engine) as s:
        payment = s.get(Payment, payment_id)
        refunds = s.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
        totals = transaction_totals(s)
        refund_legs = s.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == payment_id,
                                                          LedgerEntry.kind == "refund")).all()
        return payment, refunds, totals, refund_legs


def test_concurrent_partial_refunds_never_exceed_captured(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    results = race(8, lambda i: api.refund(key, payment_id, amount="300"))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [422] * 5, [r.text for r in results]
    payment, refunds, totals, legs = books(api, payment_id)
    assert sum(r.amount_minor for r in refunds) == 900
    assert payment.refunded_minor == 900
    assert payment.status == "partially_refunded"
    assert set(totals.values()) == {0}
    assert sum(leg.amount_minor for leg in legs if leg.amount_minor > 0) == 900


def test_concurrent_full_refunds_refund_once(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    results = race(6, lambda i: api.refund(key, payment_id))
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 201 and codes.count(201) == 1, [r.text for r in results]
    payment, refunds, totals, _ = books(api, payment_id)
    assert [r.amount_minor for r in refunds] == [1000]
    assert payment.refunded_minor == 1000 and payment.status == "refunded"


def test_concurrent_same_key_refund_is_one_refund_with_identical_responses(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    idem = uuid.uuid4().hex
    results = race(8, lambda i: api.refund(key, payment_id, amount="400", idem=idem))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.text for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 7
    payment, refunds, _, _ = books(api, payment_id)
    assert len(refunds) == 1 and payment.refunded_minor == 400


def test_concurrent_same_key_other_body_is_409(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    idem = uuid.uuid4().hex
    results = race(8, lambda i: api.refund(key, payment_id, amount=str(100 + i), idem=idem))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7, [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {
        "idempotency_key_reused"}
    _, refunds, _, _ = books(api, payment_id)
    assert len(refunds) == 1


def test_mixed_full_and_partial_refunds_race(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    results = race(8, lambda i: api.refund(key, payment_id, amount=None if i % 2 else "250"))
    payment, refunds, totals, _ = books(api, payment_id)
    total = sum(r.amount_minor for r in refunds)
    assert total <= 1000 and payment.refunded_minor == total, [r.text for r in results]
    ok = [r for r in results if r.status_code == 201]
    assert sum(int(r.json()["amount_minor"]) for r in ok) == total
    assert set(totals.values()) == {0}
