"""The books of a paid call: the usage record, and once delivered, a payment on the same ledger
as the payments API.

A call is claimed (an x402_usage row, status `verified`) before the upstream is called; the
unique (payer, nonce) makes an EIP-3009 authorization usable once, ever. After the upstream
answered < 400 the call is settled: a payment (channel ch_x402_sim for on-chain `exact`,
ch_agent_token for tokens) that walks the state machine to success, two balanced ledger legs and
an outbox event, in the transaction that executes the transfer on chain.

Ledger legs: `exact` debits channel_receivable:ch_x402_sim (USDC that reached pay_to on chain)
and credits the seller's merchant_payable; a token payment debits the buyer's merchant_payable
(the budget is the buyer merchant's money) and credits the seller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serving.channels import TOKEN_CHANNEL, X402_CHANNEL
from serving.services.payments import payment_out
from serving.services.state_machine import move
from serving.x402 import tokens
from serving.x402.protocol import InvalidPayment
from warehouse.ids import new_id
from warehouse.ledger import Leg, channel_receivable, merchant_payable, post_transaction
from warehouse.models import OutboxEvent, Payment, X402Usage


@dataclass(frozen=True)
class Call:
    """What is being paid for, and how."""

    merchant_id: str
    rule_id: str
    http_method: str
    path: str
    scheme: str  # exact, token
    x402_version: int
    network: str
    asset: str  # currency code, e.g. USDC
    amount: int
    pay_to: str
    payer: str  # 0x address, or the token's id
    nonce: str | None = None
    token_id: str | None = None


def usage_fields(call: Call) -> dict:
    """The usage row's columns that describe the call."""
    return dict(merchant_id=call.merchant_id, rule_id=call.rule_id, http_method=call.http_method,
                path=call.path[:500], scheme=call.scheme, x402_version=call.x402_version,
                network=call.network, asset=call.asset, amount_atomic=call.amount,
                pay_to=call.pay_to, payer=call.payer, nonce=call.nonce, token_id=call.token_id)


def claim(session: Session, call: Call, now: datetime) -> X402Usage:
    """Insert the usage row; a reused (payer, nonce) is refused here, by the database."""
    usage = X402Usage(id=new_id("x402_usage"), status="verified", created_at=now,
                      updated_at=now, **usage_fields(call))
    session.add(usage)
    try:
        session.flush()
    except IntegrityError:
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization was already presented", payer=call.payer) from None
    return usage


def record_paid(session: Session, usage: X402Usage, *, tx_hash: str | None, upstream_status: int,
                buyer_merchant_id: str | None, now: datetime) -> Payment:
    """The payment, its ledger legs and outbox event for a delivered call (caller commits).
    The payment's channel_reference is the chain transaction, or for a token the usage id."""
    channel = X402_CHANNEL if usage.scheme == "exact" else TOKEN_CHANNEL
    payment = Payment(
        id=new_id("payment"), merchant_id=usage.merchant_id, merchant_reference=usage.id,
        amount_minor=usage.amount_atomic, currency=usage.asset, status=None,
        payment_method_type="x402" if usage.scheme == "exact" else "agent_token",
        channel_id=channel, channel_reference=tx_hash or usage.id, refunded_minor=0, created_at=now,
        risk_decision="approve", risk_reasons=[],
        routing={"chosen": channel, "candidates": [channel], "considered": [],
                 "attempts": [{"channel": channel, "outcome": "approved"}],
                 "x402": {"rule": usage.rule_id, "path": usage.path, "network": usage.network,
                          "payer": usage.payer, "version": usage.x402_version}},
        customer_id=usage.payer[:100])
    session.add(payment)
    for status in ("initiated", "processing", "risk_checking", "channel_calling", "success"):
        move(session, payment, status, at=now)
    payment.captured_at = now
    if usage.scheme == "exact":
        debit = channel_receivable(X402_CHANNEL)
    else:  # a token: the budget is the buying merchant's money
        assert buyer_merchant_id is not None  # a token always belongs to a merchant
        debit = merchant_payable(buyer_merchant_id)
    post_transaction(session, kind="capture", merchant_id=usage.merchant_id, at=now,
                     payment_id=payment.id, legs=[
                         Leg(debit, usage.asset, usage.amount_atomic),
                         Leg(merchant_payable(usage.merchant_id), usage.asset,
                             -usage.amount_atomic)])
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=payment.id, created_at=now,
                            event_type="payment.succeeded", payload=payment_out(payment)))
    usage.status, usage.tx_hash, usage.payment_id = "settled", tx_hash, payment.id
    usage.upstream_status, usage.settled_at, usage.updated_at = upstream_status, now, now
    return payment


def mark(session: Session, usage_id: str, *, status: str, now: datetime,
         upstream_status: int | None = None, reason: str | None = None) -> bool:
    """Close a call that was not delivered; False when it was no longer `verified` (settled,
    or written off as abandoned, whose token reservation was already given back)."""
    usage = session.get(X402Usage, usage_id, with_for_update=True)
    if usage is None or usage.status != "verified":
        return False
    usage.status, usage.error_reason, usage.updated_at = status, reason, now
    usage.upstream_status = upstream_status
    return True


def ensure_settleable(usage: X402Usage) -> None:
    """Only a call still `verified` may be charged: one written off as abandoned was given
    back (its token reservation released), so charging it now could spend past a budget."""
    if usage.status != "verified":
        raise InvalidPayment("settlement_expired",
                             f"call {usage.id} is {usage.status}: it took too long and was "
                             "written off; nothing was charged", payer=usage.payer)


# A request holds a claimed call at most for the upstream's timeout (30 s) and two settle
# attempts; a call still `verified` long after that lost its process or its client.
ABANDONED_AFTER = timedelta(minutes=5)


def write_off_abandoned(session: Session, now: datetime, *,
                        older_than: timedelta = ABANDONED_AFTER, limit: int = 500) -> int:
    """Mark calls left `verified` (the process died or the client went away between claim and
    settle) `abandoned`: nothing was charged - no transfer, no payment - and an `exact`
    authorization stays burned (it can never be presented again); a token's reservation is
    given back. Calls in flight hold the row lock while they settle and are skipped."""
    stale = session.scalars(
        select(X402Usage)
        .where(X402Usage.status == "verified", X402Usage.created_at < now - older_than)
        .order_by(X402Usage.created_at).limit(limit)
        .with_for_update(skip_locked=True)).all()
    for usage in stale:
        usage.status, usage.updated_at = "abandoned", now
        usage.error_reason = (f"not settled within {int(older_than.total_seconds())} s: "
                              "not delivered, nothing charged")
        if usage.token_id is not None:
            tokens.release(session, usage.token_id, usage.amount_atomic, now)
    return len(stale)
