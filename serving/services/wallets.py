"""Stored-value wallets: a customer's principal (paid in) and bonus (given) at one merchant.

The wallet is the merchant's liability to its customer, kept in wallets/wallet_transactions; the
platform's books only see card/channel money:
- a top-up is a normal payment (captured through a channel, normal ledger legs) that, once it
  succeeds, credits the wallet with its amount as principal plus the merchant's bonus; one that
  ends pending (the channel calls back later) or held for review is kept in pending_topups and
  credited when its payment succeeds (void if it fails or is cancelled);
- a payment with payment_method {"type": "wallet"} moves no money through the platform: it debits
  the wallet pro rata over (principal, bonus) and posts balanced memo legs only
  (wallet_liability / wallet_redemption);
- a refund of a wallet payment puts the amount back, pro rata to that payment's original split,
  cumulatively (a full refund restores exactly the original parts);
- a refund of a top-up takes principal out of the wallet and claws the bonus back by the top-up's
  bonus/principal ratio; bonus already spent (the shortfall) is kept from the cash refund
  (warehouse.money.topup_clawback).
Every change locks the wallet row first (SELECT ... FOR UPDATE on Postgres; on SQLite the
transaction's write lock, BEGIN IMMEDIATE, serialises writers), so concurrent spends never
overdraw.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.schemas import (
    Customer,
    PaymentCreate,
    TopupCreate,
    WalletOut,
    WalletTransactionOut,
)
from serving.services.state_machine import move
from warehouse.ids import new_id
from warehouse.ledger import Leg, post_transaction, wallet_liability, wallet_redemption
from warehouse.models import Payment, PendingTopup, Refund, Wallet, WalletTransaction
from warehouse.money import allocate, allocate_increment, topup_clawback

WALLET_CHANNEL = "ch_wallet_sim"


def wallet_out(wallet: Wallet) -> dict:
    return WalletOut(
        id=wallet.id, merchant_id=wallet.merchant_id, customer_id=wallet.customer_id,
        currency=wallet.currency, principal_minor=wallet.principal_minor,
        bonus_minor=wallet.bonus_minor, total_minor=wallet.principal_minor + wallet.bonus_minor,
        created_at=wallet.created_at, updated_at=wallet.updated_at,
    ).model_dump(mode="json")


def transaction_out(txn: WalletTransaction, currency: str) -> dict:
    """`currency`: the wallet's (a transaction row does not repeat it)."""
    return WalletTransactionOut(
        id=txn.id, wallet_id=txn.wallet_id, kind=txn.kind, currency=currency,
        principal_minor=txn.principal_minor,
        bonus_minor=txn.bonus_minor, shortfall_minor=txn.shortfall_minor,
        payment_id=txn.payment_id, refund_id=txn.refund_id, topup_id=txn.topup_id,
        created_at=txn.created_at,
    ).model_dump(mode="json")


# --- locking ----------------------------------------------------------------------------------


def _locked(session: Session, *criteria) -> Wallet | None:
    return session.scalars(
        select(Wallet).where(*criteria).with_for_update()
        .execution_options(populate_existing=True)  # the row as it is after the lock
    ).first()


def _locked_one(session: Session, *criteria) -> Wallet:
    """_locked for a wallet that exists (a row of it refers to it, or it was just made)."""
    wallet = _locked(session, *criteria)
    if wallet is None:
        raise LookupError(f"no wallet where {criteria}")
    return wallet


def lock_wallet(session: Session, merchant_id: str, customer_id: str,
                currency: str) -> Wallet | None:
    return _locked(session, Wallet.merchant_id == merchant_id, Wallet.customer_id == customer_id,
                   Wallet.currency == currency)


def _lock_or_create(session: Session, merchant_id: str, customer_id: str, currency: str,
                    now: datetime) -> Wallet:
    """INSERT ... ON CONFLICT DO NOTHING, then lock: two first top-ups never make two wallets."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(Wallet)
    session.execute(insert.values(
        id=new_id("wallet"), merchant_id=merchant_id, customer_id=customer_id, currency=currency,
        principal_minor=0, bonus_minor=0, created_at=now, updated_at=now,
    ).on_conflict_do_nothing())
    return _locked_one(session, Wallet.merchant_id == merchant_id,
                       Wallet.customer_id == customer_id, Wallet.currency == currency)


# --- top-up -----------------------------------------------------------------------------------


def create_topup(session: Session, *, merchant_id: str, body: TopupCreate,
                 now: datetime) -> tuple[int, dict]:
    from serving.services import payments  # payments calls back into this module

    if body.payment_method.type == "wallet":
        raise ApiError(422, "invalid_payment_method", "a wallet cannot be topped up from itself",
                       {"field": "payment_method.type"})
    payment_body = PaymentCreate(
        amount_minor=body.amount_minor, currency=body.currency,
        merchant_reference=body.merchant_reference or f"wallet_topup:{body.customer_id}",
        payment_method=body.payment_method, customer=Customer(id=body.customer_id),
    )
    _, payment = payments.create_payment(session, merchant_id=merchant_id, body=payment_body,
                                         now=now)
    if payment["status"] == "success":
        session.flush()
        wallet = _credit_topup(session, merchant_id=merchant_id, customer_id=body.customer_id,
                               currency=body.currency, principal=body.amount_minor,
                               bonus=body.bonus_minor, payment_id=payment["id"], now=now)
        return 201, {"payment": payment, "wallet": wallet_out(wallet)}
    if payment["status"] in DEFERRED:  # credited when the payment succeeds (resolve_topup)
        session.add(PendingTopup(payment_id=payment["id"], merchant_id=merchant_id,
                                 customer_id=body.customer_id, currency=body.currency,
                                 principal_minor=body.amount_minor, bonus_minor=body.bonus_minor,
                                 created_at=now))
    # declined, failed, pending: nothing is credited now
    existing = session.scalars(select(Wallet).where(
        Wallet.merchant_id == merchant_id, Wallet.customer_id == body.customer_id,
        Wallet.currency == body.currency)).first()
    return 201, {"payment": payment, "wallet": wallet_out(existing) if existing else None}


# A top-up payment in one of these may still succeed: a channel callback, or a review.
DEFERRED = ("pending_callback", "auth_required")


def _credit_topup(session: Session, *, merchant_id: str, customer_id: str, currency: str,
                  principal: int, bonus: int, payment_id: str, now: datetime) -> Wallet:
    wallet = _lock_or_create(session, merchant_id, customer_id, currency, now)
    wallet.principal_minor += principal
    wallet.bonus_minor += bonus
    wallet.updated_at = now
    session.add(WalletTransaction(
        id=new_id("wallet_txn"), wallet_id=wallet.id, kind="topup",
        principal_minor=principal, bonus_minor=bonus,
        payment_id=payment_id, topup_id=payment_id, created_at=now))
    session.flush()
    return wallet


def resolve_topup(session: Session, payment: Payment, now: datetime) -> None:
    """After a payment left pending_callback or auth_required: if it was a deferred top-up,
    credit the wallet (the payment succeeded) or void the top-up (it failed or was cancelled).
    The pending row is locked first, so a top-up is credited once."""
    if payment.status in DEFERRED:
        return
    pending = session.get(PendingTopup, payment.id, with_for_update=True)
    if pending is None or pending.outcome is not None:
        return
    if payment.status == "success":
        session.flush()
        _credit_topup(session, merchant_id=pending.merchant_id, customer_id=pending.customer_id,
                      currency=pending.currency, principal=pending.principal_minor,
                      bonus=pending.bonus_minor, payment_id=payment.id, now=now)
        pending.outcome = "credited"
    else:
        pending.outcome = "void"
    pending.resolved_at = now


def topup_of(session: Session, payment_id: str) -> WalletTransaction | None:
    """The top-up a payment paid for, if it was one."""
    return session.scalars(select(WalletTransaction).where(
        WalletTransaction.kind == "topup", WalletTransaction.payment_id == payment_id)).first()


# --- spend ------------------------------------------------------------------------------------


def require_customer(payment_method_type: str, customer: Customer | None) -> None:
    if payment_method_type == "wallet" and not (customer and customer.id):
        raise ApiError(422, "customer_required", "a wallet payment needs customer.id",
                       {"field": "customer.id"})


def spend(session: Session, payment: Payment, now: datetime) -> WalletTransaction:
    """Settle a channel_calling wallet payment from the customer's wallet (or raise a 422)."""
    if not payment.customer_id:
        raise ApiError(422, "customer_required", "a wallet payment needs customer.id",
                       {"field": "customer.id"})
    wallet = lock_wallet(session, payment.merchant_id, payment.customer_id, payment.currency)
    if wallet is None:
        raise ApiError(422, "wallet_not_found",
                       f"customer {payment.customer_id!r} has no {payment.currency} wallet",
                       {"field": "customer.id"})
    balance = wallet.principal_minor + wallet.bonus_minor
    if balance < payment.amount_minor:
        raise ApiError(422, "insufficient_wallet_balance",
                       f"the wallet holds {balance}, less than {payment.amount_minor}",
                       {"field": "amount_minor", "balance_minor": str(balance),
                        "currency": wallet.currency, "wallet_id": wallet.id})
    principal, bonus = allocate(payment.amount_minor, [wallet.principal_minor, wallet.bonus_minor])
    wallet.principal_minor -= principal
    wallet.bonus_minor -= bonus
    wallet.updated_at = now
    txn = WalletTransaction(id=new_id("wallet_txn"), wallet_id=wallet.id, kind="spend",
                            principal_minor=-principal, bonus_minor=-bonus,
                            payment_id=payment.id, created_at=now)
    session.add(txn)
    payment.channel_id, payment.channel_reference = WALLET_CHANNEL, txn.id
    payment.routing = {**(payment.routing or {}), "chosen": WALLET_CHANNEL,
                       "candidates": [WALLET_CHANNEL], "considered": [],
                       "attempts": [{"channel": WALLET_CHANNEL, "outcome": "approved"}]}
    move(session, payment, "success", at=now)
    payment.captured_at = now
    _memo(session, payment, kind="wallet_spend", amount=payment.amount_minor, now=now)
    return txn


def _memo(session: Session, payment: Payment, *, kind: str, amount: int, now: datetime,
          refund_id: str | None = None) -> None:
    """Memo legs for stored value redeemed (amount > 0) or given back (amount < 0)."""
    post_transaction(session, kind=kind, merchant_id=payment.merchant_id, at=now,
                     payment_id=payment.id, refund_id=refund_id, legs=[
                         Leg(wallet_liability(payment.merchant_id), payment.currency, amount),
                         Leg(wallet_redemption(payment.merchant_id), payment.currency, -amount),
                     ])


def refund_spend(session: Session, *, payment: Payment, refund: Refund,
                 refunded_before: int, now: datetime) -> WalletTransaction:
    """Give a wallet payment's refund back to the wallet, pro rata to its original split."""
    original = session.scalars(select(WalletTransaction).where(
        WalletTransaction.kind == "spend", WalletTransaction.payment_id == payment.id)).one()
    wallet = _locked_one(session, Wallet.id == original.wallet_id)
    principal, bonus = allocate_increment(
        [-original.principal_minor, -original.bonus_minor], refunded_before, refund.amount_minor)
    wallet.principal_minor += principal
    wallet.bonus_minor += bonus
    wallet.updated_at = now
    txn = WalletTransaction(id=new_id("wallet_txn"), wallet_id=wallet.id, kind="spend_refund",
                            principal_minor=principal, bonus_minor=bonus, payment_id=payment.id,
                            refund_id=refund.id, created_at=now)
    session.add(txn)
    _memo(session, payment, kind="wallet_spend_refund", amount=-refund.amount_minor, now=now,
          refund_id=refund.id)
    return txn


# --- refund of a top-up ------------------------------------------------------------------------


def plan_topup_refund(session: Session, *, payment: Payment, topup: WalletTransaction,
                      requested: int | None):
    """Lock the wallet and work out the refund of a top-up: (wallet, principal out, Clawback)."""
    previous = session.scalars(select(WalletTransaction).where(
        WalletTransaction.kind == "topup_refund",
        WalletTransaction.topup_id == topup.topup_id)).all()
    refunded_before = sum(-t.principal_minor for t in previous)
    clawed_before = sum(-t.bonus_minor + (t.shortfall_minor or 0) for t in previous)
    remaining = topup.principal_minor - refunded_before
    amount = requested if requested is not None else remaining
    if amount > remaining:
        raise ApiError(422, "refund_exceeds_captured",
                       f"refund of {amount} exceeds the {remaining} {payment.currency} of the "
                       "top-up's principal that remain",
                       {"field": "amount_minor", "remaining_minor": str(remaining),
                        "currency": payment.currency})
    wallet = _locked_one(session, Wallet.id == topup.wallet_id)
    if wallet.principal_minor < amount:
        raise ApiError(422, "insufficient_wallet_balance",
                       f"the wallet's principal is {wallet.principal_minor}, less than the "
                       f"{amount} to refund", {"field": "amount_minor",
                                               "principal_minor": str(wallet.principal_minor),
                                               "currency": wallet.currency,
                                               "wallet_id": wallet.id})
    claw = topup_clawback(topup_principal=topup.principal_minor, topup_bonus=topup.bonus_minor,
                          refunded_before=refunded_before, clawed_before=clawed_before,
                          refund=amount, wallet_bonus=wallet.bonus_minor)
    if claw.cash == 0:
        raise ApiError(422, "refund_nothing_to_pay",
                       "the bonus already spent takes the whole refund: no cash would go back",
                       {"field": "amount_minor", "shortfall_minor": str(claw.shortfall),
                        "currency": payment.currency})
    return wallet, remaining, claw


def apply_topup_refund(session: Session, *, payment: Payment, topup: WalletTransaction,
                       wallet: Wallet, claw, refund: Refund, now: datetime) -> WalletTransaction:
    wallet.principal_minor -= claw.principal_out
    wallet.bonus_minor -= claw.bonus_clawed
    wallet.updated_at = now
    txn = WalletTransaction(id=new_id("wallet_txn"), wallet_id=wallet.id, kind="topup_refund",
                            principal_minor=-claw.principal_out, bonus_minor=-claw.bonus_clawed,
                            shortfall_minor=claw.shortfall, payment_id=payment.id,
                            refund_id=refund.id, topup_id=topup.topup_id, created_at=now)
    session.add(txn)
    return txn
