"""Stored-value wallets under concurrency (SQLite and Postgres)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.serving.helpers import make_api, race, random_card, transaction_totals
from warehouse.models import Payment, Refund, Wallet, WalletTransaction

WALLET = {"type": "wallet"}


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def topup(api, key, customer="cus_1", amount="10000", bonus="0", idem=None):
    body = {"customer_id": customer, "currency": "USD", "amount_minor": amount,
            "bonus_minor": bonus, "payment_method": {"type": "card", "number": random_card()}}
    return api.client.post("/api/v1/wallets/topups", json=body, headers={
        "Authorization": f"Bearer {key}", "Idempotency-Key": idem or uuid.uuid4().hex})


def spend(api, key, amount, customer="cus_1"):
    return api.pay(key, amount=amount, method=WALLET, customer={"id": customer})


def check_wallet(api, wallet_id):
    with Session(api.engine) as s:
        w = s.get(Wallet, wallet_id)
        txns = s.scalars(select(WalletTransaction).where(WalletTransaction.wallet_id == wallet_id)).all()
        totals = transaction_totals(s)
        assert set(totals.values()) == {0}
        assert w.principal_minor >= 0 and w.bonus_minor >= 0, (w.principal_minor, w.bonus_minor)
        assert w.principal_minor == sum(t.principal_minor for t in txns)
        assert w.bonus_minor == sum(t.bonus_minor for t in txns)
        for p in s.scalars(select(Payment)):
            refunded = sum(r.amount_minor for r in s.scalars(
                select(Refund).where(Refund.payment_id == p.id)))
            assert p.refunded_minor == refunded <= p.amount_minor
        return w.principal_minor, w.bonus_minor, txns


def test_concurrent_partial_refunds_of_one_topup(api):
    _, key = api.merchant(kyc_tier=3)
    body = topup(api, key, amount="1000", bonus="500").json()
    payment_id, wallet_id = body["payment"]["id"], body["wallet"]["id"]
    results = race(8, lambda i: api.refund(key, payment_id, amount="300"))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [422] * 5, [r.text for r in results]
    principal, bonus, txns = check_wallet(api, wallet_id)
    assert principal == 100 and bonus == 50


def test_topup_refund_racing_spends(api):
    _, key = api.merchant(kyc_tier=3)
    body = topup(api, key, amount="1000", bonus="1000").json()
    payment_id, wallet_id = body["payment"]["id"], body["wallet"]["id"]

    def act(i):
        if i % 2:
            return api.refund(key, payment_id, amount="250")
        return spend(api, key, "300")

    results = race(8, act)
    assert all(r.status_code in (201, 422) for r in results), [r.text for r in results]
    check_wallet(api, wallet_id)


def test_spend_refunds_race(api):
    _, key = api.merchant(kyc_tier=3)
    wallet_id = topup(api, key, amount="700", bonus="300").json()["wallet"]["id"]
    payment_id = spend(api, key, "1000").json()["id"]
    results = race(8, lambda i: api.refund(key, payment_id, amount="150"))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 6 + [422] * 2, [r.text for r in results]
    principal, bonus, _ = check_wallet(api, wallet_id)
    assert principal + bonus == 900


def test_first_topups_race_make_one_wallet(api):
    _, key = api.merchant(kyc_tier=3)
    results = race(6, lambda i: topup(api, key, customer="cus_new", amount="100", bonus="10"))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    with Session(api.engine) as s:
        wallets = s.scalars(select(Wallet).where(Wallet.customer_id == "cus_new")).all()
    assert len(wallets) == 1
    principal, bonus, _ = check_wallet(api, wallets[0].id)
    assert (principal, bonus) == (600, 60)


def test_same_key_topup_race_credits_once(api):
    _, key = api.merchant(kyc_tier=3)
    idem = uuid.uuid4().hex
    card = random_card()
    body = {"customer_id": "cus_k", "currency": "USD", "amount_minor": "500",
            "bonus_minor": "50", "payment_method": {"type": "card", "number": card}}
    results = race(6, lambda i: api.client.post("/api/v1/wallets/topups", json=body, headers={
        "Authorization": f"Bearer {key}", "Idempotency-Key": idem}))
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.text for r in results}) == 1
    wallet_id = results[0].json()["wallet"]["id"]
    assert check_wallet(api, wallet_id)[:2] == (500, 50)
