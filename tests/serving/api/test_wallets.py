"""Stored-value wallets through HTTP on SQLite and Postgres: top-ups, spends, refunds, clawback."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving.channel_simulator import deliver_pending_callbacks
from tests.serving.helpers import make_api, random_card
from warehouse.models import (
    LedgerEntry,
    Payment,
    PaymentEvent,
    PendingTopup,
    Refund,
    SimChannelOperation,
    Wallet,
    WalletTransaction,
)

WALLET = {"type": "wallet"}


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def topup(api, key, customer="cus_1", amount="10000", bonus="0", currency="USD", idem=None,
          method=None):
    body = {"customer_id": customer, "currency": currency, "amount_minor": amount,
            "bonus_minor": bonus,
            "payment_method": method or {"type": "card", "number": random_card()}}
    return api.client.post("/api/v1/wallets/topups", json=body, headers={
        "Authorization": f"Bearer {key}", "Idempotency-Key": idem or uuid.uuid4().hex})


def spend(api, key, amount, customer="cus_1", **extra):
    return api.pay(key, amount=amount, method=WALLET, customer={"id": customer}, **extra)


def get(api, key, path):
    return api.client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {key}"})


def wallet_parts(api, wallet_id) -> tuple[int, int]:
    with Session(api.engine) as s:
        w = s.get(Wallet, wallet_id)
        return w.principal_minor, w.bonus_minor


def txns(api, **where) -> list[WalletTransaction]:
    with Session(api.engine) as s:
        query = select(WalletTransaction).order_by(WalletTransaction.created_at,
                                                   WalletTransaction.id)
        for column, value in where.items():
            query = query.where(getattr(WalletTransaction, column) == value)
        return s.scalars(query).all()


def assert_ledger_balances(api):
    with Session(api.engine) as s:
        totals = defaultdict(int)
        for leg in s.scalars(select(LedgerEntry)):
            totals[(leg.transaction_id, leg.currency)] += leg.amount_minor
    assert totals and set(totals.values()) == {0}


def legs_of(api, payment_id) -> list[tuple[str, str, int]]:
    with Session(api.engine) as s:
        return sorted((leg.kind, leg.account.split(":")[0], leg.amount_minor) for leg in s.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == payment_id)))


def test_topup_with_bonus_credits_the_wallet_and_lists_it(api):
    merchant_id, key = api.merchant(kyc_tier=3)
    resp = topup(api, key, amount="10000", bonus="2000")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["payment"]["status"] == "success" and body["payment"]["channel"] == "ch_card_sim"
    wallet = body["wallet"]
    assert wallet["id"].startswith("wal_") and wallet["merchant_id"] == merchant_id
    assert (wallet["principal_minor"], wallet["bonus_minor"], wallet["total_minor"]) == (
        "10000", "2000", "12000")
    # A top-up is a normal capture on the platform's books.
    assert legs_of(api, body["payment"]["id"]) == [("capture", "channel_receivable", 10000),
                                                   ("capture", "merchant_payable", -10000)]
    # A second top-up credits the same wallet.
    again = topup(api, key, amount="500", bonus="0").json()["wallet"]
    assert again["id"] == wallet["id"] and again["total_minor"] == "12500"

    listed = get(api, key, "/wallets?customer_id=cus_1").json()
    assert [w["id"] for w in listed["data"]] == [wallet["id"]] and listed["has_more"] is False
    assert get(api, key, "/wallets?customer_id=nobody").json()["data"] == []
    one = get(api, key, f"/wallets/{wallet['id']}").json()
    assert one["principal_minor"] == "10500" and one["bonus_minor"] == "2000"
    moves = get(api, key, f"/wallets/{wallet['id']}/transactions").json()["data"]
    assert sorted((m["kind"], m["principal_minor"], m["bonus_minor"]) for m in moves) == [
        ("topup", "10000", "2000"), ("topup", "500", "0")]
    assert {m["topup_id"] for m in moves} == {m["payment_id"] for m in moves}

    _, other_key = api.merchant("Other")
    assert get(api, other_key, f"/wallets/{wallet['id']}").status_code == 404
    assert get(api, other_key, f"/wallets/{wallet['id']}/transactions").status_code == 404
    assert get(api, other_key, "/wallets?customer_id=cus_1").json()["data"] == []


def test_declined_topup_credits_nothing_and_bad_input_is_refused(api):
    _, key = api.merchant(kyc_tier=3)
    declined = topup(api, key, bonus="100",
                     method={"type": "card", "number": "4000000000000002"}).json()
    assert declined["payment"]["status"] == "failed" and declined["wallet"] is None
    assert txns(api) == []
    negative = topup(api, key, bonus="-1")
    assert negative.status_code == 422 and negative.json()["error"]["details"]["field"] == \
        "bonus_minor"
    own = topup(api, key, method=WALLET)
    assert own.status_code == 422 and own.json()["error"]["code"] == "invalid_payment_method"
    no_key = api.client.post("/api/v1/wallets/topups", json={}, headers={
        "Authorization": f"Bearer {key}"})
    assert no_key.status_code in (400, 422)


def test_idempotent_topup_replay_does_not_credit_twice(api):
    _, key = api.merchant(kyc_tier=3)
    card = {"type": "card", "number": "4242424242424242"}
    first = topup(api, key, bonus="100", idem="top-1", method=card)
    second = topup(api, key, bonus="100", idem="top-1", method=card)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json() == second.json()
    assert wallet_parts(api, first.json()["wallet"]["id"]) == (10000, 100)
    assert len(txns(api)) == 1
    other = topup(api, key, bonus="999", idem="top-1", method=card)
    assert other.status_code == 409


def test_spend_is_pro_rata_with_largest_remainder_and_posts_memo_legs(api):
    merchant_id, key = api.merchant(kyc_tier=3)
    wallet_id = topup(api, key, amount="100", bonus="50").json()["wallet"]["id"]
    resp = spend(api, key, "100")
    assert resp.status_code == 201, resp.text
    payment = resp.json()
    assert payment["status"] == "success" and payment["channel"] == "ch_wallet_sim"
    assert payment["payment_method_type"] == "wallet"
    (txn,) = txns(api, kind="spend")
    assert (txn.principal_minor, txn.bonus_minor) == (-67, -33)
    assert payment["channel_reference"] == txn.id and txn.payment_id == payment["id"]
    assert wallet_parts(api, wallet_id) == (33, 17)
    with Session(api.engine) as s:
        trail = [e.to_status for e in s.scalars(select(PaymentEvent).where(
            PaymentEvent.payment_id == payment["id"]).order_by(PaymentEvent.id))]
    assert trail == ["initiated", "processing", "risk_checking", "channel_calling", "success"]
    # No channel money: balanced memo legs only.
    assert legs_of(api, payment["id"]) == [("wallet_spend", "wallet_liability", 100),
                                           ("wallet_spend", "wallet_redemption", -100)]
    with Session(api.engine) as s:
        accounts = {leg.account for leg in s.scalars(select(LedgerEntry).where(
            LedgerEntry.payment_id == payment["id"]))}
    assert accounts == {f"wallet_liability:{merchant_id}", f"wallet_redemption:{merchant_id}"}
    assert_ledger_balances(api)


def test_wallet_payment_errors_write_nothing(api):
    _, key = api.merchant(kyc_tier=3)
    no_customer = api.pay(key, amount="10", method=WALLET)
    assert no_customer.status_code == 422
    assert no_customer.json()["error"]["code"] == "customer_required"
    missing = spend(api, key, "10", customer="cus_none")
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "wallet_not_found"
    wallet_id = topup(api, key, amount="100", bonus="50").json()["wallet"]["id"]
    short = spend(api, key, "151")
    assert short.status_code == 422
    assert short.json()["error"]["code"] == "insufficient_wallet_balance"
    assert short.json()["error"]["details"]["balance_minor"] == "150"
    assert wallet_parts(api, wallet_id) == (100, 50)
    with Session(api.engine) as s:
        assert s.scalar(select(func.count()).select_from(Payment).where(
            Payment.payment_method_type == "wallet")) == 0
    assert spend(api, key, "150").json()["status"] == "success"
    assert wallet_parts(api, wallet_id) == (0, 0)


def test_concurrent_spends_never_overdraw(api):
    _, key = api.merchant(kyc_tier=3)
    wallet_id = topup(api, key, amount="1000", bonus="500").json()["wallet"]["id"]
    results = []

    def hit():
        results.append(spend(api, key, "400"))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [422] * 5, [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 422} == {
        "insufficient_wallet_balance"}
    principal, bonus = wallet_parts(api, wallet_id)
    assert principal >= 0 and bonus >= 0 and principal + bonus == 300
    spends = txns(api, kind="spend")
    assert len(spends) == 3
    assert 1000 + sum(t.principal_minor for t in spends) == principal
    assert 500 + sum(t.bonus_minor for t in spends) == bonus


def test_refund_of_a_spend_restores_its_parts(api):
    _, key = api.merchant(kyc_tier=3)
    wallet_id = topup(api, key, amount="100", bonus="50").json()["wallet"]["id"]
    payment = spend(api, key, "100").json()
    first = api.refund(key, payment["id"], amount="50")
    assert first.status_code == 201, first.text
    assert first.json()["amount_minor"] == "50"
    (back,) = txns(api, kind="spend_refund")
    assert (back.principal_minor, back.bonus_minor) == (34, 16)
    assert back.refund_id == first.json()["id"]
    assert wallet_parts(api, wallet_id) == (67, 33)
    rest = api.refund(key, payment["id"])
    assert rest.json()["amount_minor"] == "50"
    assert wallet_parts(api, wallet_id) == (100, 50)  # exactly the original parts
    with Session(api.engine) as s:
        assert s.get(Payment, payment["id"]).status == "refunded"
    legs = legs_of(api, payment["id"])
    assert [leg for leg in legs if leg[0] == "wallet_spend_refund"] == [
        ("wallet_spend_refund", "wallet_liability", -50),
        ("wallet_spend_refund", "wallet_liability", -50),
        ("wallet_spend_refund", "wallet_redemption", 50),
        ("wallet_spend_refund", "wallet_redemption", 50)]
    assert not [leg for leg in legs if leg[1] in ("channel_receivable", "merchant_payable")]
    assert_ledger_balances(api)


def test_partial_then_full_refund_of_a_topup_claws_back_exactly_the_bonus(api):
    _, key = api.merchant(kyc_tier=3)
    body = topup(api, key, amount="10000", bonus="2000").json()
    payment_id, wallet_id = body["payment"]["id"], body["wallet"]["id"]
    first = api.refund(key, payment_id, amount="3333")
    assert first.status_code == 201, first.text
    assert first.json()["amount_minor"] == "3333"  # all cash: the bonus is unspent
    assert wallet_parts(api, wallet_id) == (10000 - 3333, 2000 - 667)
    rest = api.refund(key, payment_id)
    assert rest.json()["amount_minor"] == "6667"
    assert wallet_parts(api, wallet_id) == (0, 0)
    claws = txns(api, kind="topup_refund")
    assert sorted((t.principal_minor, t.bonus_minor, t.shortfall_minor) for t in claws) == [
        (-6667, -1333, 0), (-3333, -667, 0)]
    assert {t.topup_id for t in claws} == {payment_id}
    with Session(api.engine) as s:
        payment = s.get(Payment, payment_id)
        assert payment.status == "refunded" and payment.refunded_minor == 10000
    again = api.refund(key, payment_id, amount="1")
    assert again.status_code == 409
    assert_ledger_balances(api)


def test_refund_of_a_topup_after_the_bonus_was_spent_keeps_the_shortfall(api):
    _, key = api.merchant(kyc_tier=3)
    with_bonus = topup(api, key, amount="10000", bonus="2000").json()
    wallet_id = with_bonus["wallet"]["id"]
    plain = topup(api, key, amount="10000", bonus="0").json()
    spend(api, key, "11000")  # 10,000 principal and 1,000 bonus (20,000 : 2,000)
    assert wallet_parts(api, wallet_id) == (10000, 1000)
    refund = api.refund(key, with_bonus["payment"]["id"])
    assert refund.status_code == 201, refund.text
    # 2,000 bonus due; 1,000 left to claw; the other 1,000 was spent: kept from the cash.
    assert refund.json()["amount_minor"] == "9000"
    (claw,) = txns(api, kind="topup_refund")
    assert (claw.principal_minor, claw.bonus_minor, claw.shortfall_minor) == (-10000, -1000, 1000)
    assert wallet_parts(api, wallet_id) == (0, 0)
    with Session(api.engine) as s:
        rows = s.scalars(select(Refund).where(
            Refund.payment_id == with_bonus["payment"]["id"])).all()
        assert [r.amount_minor for r in rows] == [9000]
        payment = s.get(Payment, with_bonus["payment"]["id"])
        assert payment.status == "refunded" and payment.refunded_minor == 9000
    assert legs_of(api, with_bonus["payment"]["id"])[-2:] == [
        ("refund", "channel_receivable", -9000), ("refund", "merchant_payable", 9000)]
    # The other top-up's principal has left the wallet: it cannot be refunded any more.
    blocked = api.refund(key, plain["payment"]["id"])
    assert blocked.status_code == 422
    assert blocked.json()["error"]["code"] == "insufficient_wallet_balance"
    assert_ledger_balances(api)


def test_wallet_amounts_in_transactions_and_errors_carry_their_currency(api):
    # api.md / money.md 1: every amount travels with its currency: a wallet transaction's parts,
    # and the amounts an error's details name (the wallet's currency, EUR here).
    _, key = api.merchant(kyc_tier=3)
    bonus_topup = topup(api, key, amount="100", bonus="100", currency="EUR").json()
    wallet_id = bonus_topup["wallet"]["id"]
    short = spend(api, key, "201", currency="EUR")
    assert short.json()["error"]["details"] == {
        "field": "amount_minor", "balance_minor": "200", "currency": "EUR", "wallet_id": wallet_id}
    assert spend(api, key, "200", currency="EUR").json()["status"] == "success"
    moves = get(api, key, f"/wallets/{wallet_id}/transactions").json()["data"]
    assert [(m["kind"], m["principal_minor"], m["bonus_minor"], m["currency"]) for m in moves] == [
        ("topup", "100", "100", "EUR"), ("spend", "-100", "-100", "EUR")]
    # Refunds of the top-up: more than its principal; more than the wallet's principal; and,
    # once a later top-up refilled the principal, nothing left to pay (the bonus was spent).
    over = api.refund(key, bonus_topup["payment"]["id"], amount="101")
    assert over.json()["error"]["details"] == {
        "field": "amount_minor", "remaining_minor": "100", "currency": "EUR"}
    emptied = api.refund(key, bonus_topup["payment"]["id"])
    assert emptied.json()["error"]["details"] == {
        "field": "amount_minor", "principal_minor": "0", "currency": "EUR", "wallet_id": wallet_id}
    topup(api, key, amount="1000", currency="EUR")
    nothing = api.refund(key, bonus_topup["payment"]["id"])
    assert nothing.json()["error"]["details"] == {
        "field": "amount_minor", "shortfall_minor": "100", "currency": "EUR"}


def _pending_topup(api, payment_id):
    with Session(api.engine) as s:
        return s.get(PendingTopup, payment_id)


def test_topup_the_channel_confirms_later_is_credited_once(api):
    """A top-up whose channel answers later credits nothing until the signed callback says it
    succeeded; then the wallet gets principal and bonus once, and the top-up refunds as any."""
    _, key = api.merchant(kyc_tier=3)
    later = topup(api, key, amount="10000", bonus="500",
                  method={"type": "card", "number": "4000000000003220"}).json()
    assert later["payment"]["status"] == "pending_callback" and later["wallet"] is None
    assert txns(api) == [] and _pending_topup(api, later["payment"]["id"]).outcome is None
    report = deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC))
    assert report["delivered"] == 1
    [credit] = txns(api)
    assert (credit.kind, credit.principal_minor, credit.bonus_minor, credit.payment_id) == (
        "topup", 10000, 500, later["payment"]["id"])
    assert wallet_parts(api, credit.wallet_id) == (10000, 500)
    assert _pending_topup(api, later["payment"]["id"]).outcome == "credited"
    # The same callback again is refused (the payment is no longer pending): no second credit.
    with Session(api.engine) as s:
        s.execute(update(SimChannelOperation).values(delivered_at=None))
        s.commit()
    deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC))
    assert len(txns(api)) == 1 and wallet_parts(api, credit.wallet_id) == (10000, 500)
    refund = api.refund(key, later["payment"]["id"], amount="4000")
    assert refund.status_code == 201, refund.text
    assert wallet_parts(api, credit.wallet_id) == (6000, 300)
    assert_ledger_balances(api)


def test_topup_the_channel_declines_later_credits_nothing(api):
    _, key = api.merchant(kyc_tier=3)
    later = topup(api, key, bonus="100",
                  method={"type": "card", "number": "4000000000000341"}).json()
    assert later["payment"]["status"] == "pending_callback"
    deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC))
    assert txns(api) == [] and _pending_topup(api, later["payment"]["id"]).outcome == "void"
    with Session(api.engine) as s:
        assert s.scalar(select(func.count()).select_from(Wallet)) == 0


@pytest.mark.parametrize("decision", ["confirm", "cancel"])
def test_topup_held_for_review_is_credited_when_confirmed(api, decision):
    from serving.ratelimit import TokenBuckets

    _, key = api.merchant(kyc_tier=3)
    api.client.app.state.customer_limits = TokenBuckets(1000.0)  # velocity, not the rate limit
    for _ in range(10):  # the customer's eleventh payment within the hour is reviewed
        assert api.pay(key, amount="100", customer={"id": "cus_busy"}).json()["status"] == "success"
    held = topup(api, key, customer="cus_busy", amount="2000", bonus="200").json()
    assert held["payment"]["status"] == "auth_required" and held["wallet"] is None
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    if decision == "cancel":
        done = api.client.post(f"/api/v1/payments/{held['payment']['id']}/cancel", headers=auth)
        assert done.json()["status"] == "cancelled"
        assert txns(api) == [] and _pending_topup(api, held["payment"]["id"]).outcome == "void"
        return
    done = api.client.post(f"/api/v1/payments/{held['payment']['id']}/confirm", headers=auth,
                           json={"payment_method": {"type": "card", "number": random_card()}})
    assert done.status_code == 200 and done.json()["status"] == "success"
    [credit] = txns(api)
    assert (credit.principal_minor, credit.bonus_minor) == (2000, 200)
    assert _pending_topup(api, held["payment"]["id"]).outcome == "credited"
