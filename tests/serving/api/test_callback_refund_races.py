"""A deferred top-up's callback (delivered several times at once) racing refunds of it."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import signing
from serving.channel_simulator import callback_body, callback_path
from tests.serving.api.test_wallet_races import check_wallet
from tests.serving.helpers import make_api, race
from warehouse.models import Channel, Payment, SimChannelOperation, Wallet, WalletTransaction

PENDING_SUCCEEDS = "4000000000003220"


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def test_duplicate_callbacks_racing_refunds_credit_once(api):
    _, key = api.merchant(kyc_tier=3)
    resp = api.client.post("/api/v1/wallets/topups", json={
        "customer_id": "cus_cb", "currency": "USD", "amount_minor": "1000", "bonus_minor": "200",
        "payment_method": {"type": "card", "number": PENDING_SUCCEEDS}},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex})
    assert resp.status_code == 201, resp.text
    payment_id = resp.json()["payment"]["id"]
    assert resp.json()["payment"]["status"] == "pending_callback"
    with Session(api.engine) as s:
        payment = s.get(Payment, payment_id)
        op = s.get(SimChannelOperation, payment.channel_reference)
        secret = s.get(Channel, payment.channel_id).callback_secret
        body, path = callback_body(op), callback_path(payment.channel_id)

    def go(i):
        if i % 2:
            return api.client.post(path, content=body, headers={
                "Content-Type": "application/json",
                signing.SIGNATURE_HEADER: signing.sign(secret, body, time.time())})
        time.sleep(0.01 * i)
        return api.refund(key, payment_id, amount="300")

    results = race(10, go)
    assert all(r.status_code in (200, 201, 409, 422) for r in results), [r.text for r in results]
    with Session(api.engine) as s:
        wallets = s.scalars(select(Wallet).where(Wallet.customer_id == "cus_cb")).all()
        topups = s.scalars(select(WalletTransaction).where(WalletTransaction.kind == "topup")).all()
    assert len(wallets) == 1 and len(topups) == 1, [r.text for r in results]
    check_wallet(api, wallets[0].id)
