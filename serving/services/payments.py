"""Payments and refunds: validate, route to a channel, record, post to the ledger, announce.

One database transaction per state change: the payment row, its ledger legs and its outbox event
commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from serving import channels
from serving.errors import ApiError, not_found
from serving.schemas import PaymentCreate, PaymentOut, RefundCreate, RefundOut, RiskDecision
from warehouse.ids import new_id
from warehouse.ledger import Leg, channel_receivable, merchant_payable, post_transaction
from warehouse.models import Channel, OutboxEvent, Payment, Price, Refund

CAPTURED = ("success", "partially_refunded")  # states a refund may start from


def price_in_force(session: Session, *, subject_type: str, subject_id: str, currency: str,
                   at: datetime) -> Price | None:
    return session.scalars(
        select(Price).where(
            Price.subject_type == subject_type, Price.subject_id == subject_id,
            Price.currency == currency, Price.valid_from <= at,
            or_(Price.valid_to.is_(None), Price.valid_to > at),
        ).order_by(Price.valid_from.desc()).limit(1)
    ).first()


def _pick_channel(session: Session, body: PaymentCreate) -> Channel:
    method_type = body.payment_method.type
    if body.channel:
        channel = session.get(Channel, body.channel)
        if channel is None or channel.status != "active" or channel.channel_type != method_type:
            raise ApiError(422, "channel_unavailable",
                           f"channel {body.channel!r} is not an active {method_type} channel",
                           {"field": "channel"})
        return channel
    channel = session.scalars(
        select(Channel).where(Channel.channel_type == method_type, Channel.status == "active")
        .order_by(Channel.id).limit(1)
    ).first()
    if channel is None:
        raise ApiError(422, "no_channel_available",
                       f"no active channel takes {method_type} payments",
                       {"field": "payment_method.type"})
    return channel


def payment_out(payment: Payment) -> dict:
    return PaymentOut(
        id=payment.id, merchant_id=payment.merchant_id,
        merchant_reference=payment.merchant_reference, status=payment.status,
        amount_minor=payment.amount_minor, currency=payment.currency,
        refunded_minor=payment.refunded_minor, payment_method_type=payment.payment_method_type,
        channel=payment.channel_id, channel_reference=payment.channel_reference,
        failure_code=payment.failure_code, risk=RiskDecision(decision=payment.risk_decision),
        created_at=payment.created_at, captured_at=payment.captured_at,
    ).model_dump(mode="json")


def create_payment(session: Session, *, merchant_id: str, body: PaymentCreate,
                   now: datetime) -> tuple[int, dict]:
    if price_in_force(session, subject_type="merchant", subject_id=merchant_id,
                      currency=body.currency, at=now) is None:
        raise ApiError(422, "currency_not_enabled",
                       f"{body.currency} is not enabled for this merchant (no price in force)",
                       {"field": "currency"})
    channel = _pick_channel(session, body)
    result = channels.charge(channel.channel_type, body.payment_method.model_dump())
    payment = Payment(
        id=new_id("payment"), merchant_id=merchant_id, merchant_reference=body.merchant_reference,
        amount_minor=body.amount_minor, currency=body.currency,
        status="success" if result.approved else "failed",
        payment_method_type=body.payment_method.type, channel_id=channel.id,
        channel_reference=result.channel_reference, failure_code=result.failure_code,
        risk_decision="approve", refunded_minor=0, created_at=now,
        customer_id=body.customer.id if body.customer else None,
        customer=body.customer.model_dump(exclude_none=True) if body.customer else None,
        captured_at=now if result.approved else None,
    )
    session.add(payment)
    if result.approved:
        post_transaction(session, kind="capture", merchant_id=merchant_id, at=now,
                         payment_id=payment.id, legs=[
                             Leg(channel_receivable(channel.id), body.currency, body.amount_minor),
                             Leg(merchant_payable(merchant_id), body.currency, -body.amount_minor),
                         ])
    out = payment_out(payment)
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=payment.id, created_at=now,
                            event_type=f"payment.{'succeeded' if result.approved else 'failed'}",
                            payload=out))
    return 201, out


def create_refund(session: Session, *, merchant_id: str, body: RefundCreate,
                  now: datetime) -> tuple[int, dict]:
    payment = session.scalars(
        select(Payment).where(Payment.id == body.payment_id, Payment.merchant_id == merchant_id)
        .with_for_update()  # serialise refunds of one payment (Postgres row lock)
    ).first()
    if payment is None:
        raise not_found("payment", body.payment_id)
    if payment.status not in CAPTURED:
        raise ApiError(409, "payment_not_refundable",
                       f"payment {payment.id} is {payment.status}; only captured payments refund",
                       {"status": payment.status})
    remaining = payment.amount_minor - payment.refunded_minor
    amount = body.amount_minor if body.amount_minor is not None else remaining
    if amount > remaining:
        raise ApiError(422, "refund_exceeds_captured",
                       f"refund of {amount} exceeds the {remaining} {payment.currency} that remain",
                       {"field": "amount_minor", "remaining_minor": str(remaining)})
    channels.refund(payment.payment_method_type)
    refund = Refund(id=new_id("refund"), payment_id=payment.id, merchant_id=merchant_id,
                    amount_minor=amount, currency=payment.currency, status="succeeded",
                    reason=body.reason, created_at=now, succeeded_at=now)
    session.add(refund)
    payment.refunded_minor += amount
    payment.status = "refunded" if payment.refunded_minor == payment.amount_minor else "partially_refunded"
    post_transaction(session, kind="refund", merchant_id=merchant_id, at=now, payment_id=payment.id,
                     refund_id=refund.id, legs=[
                         Leg(merchant_payable(merchant_id), payment.currency, amount),
                         Leg(channel_receivable(payment.channel_id), payment.currency, -amount),
                     ])
    out = RefundOut(id=refund.id, payment_id=payment.id, status=refund.status, amount_minor=amount,
                    currency=refund.currency, reason=refund.reason,
                    created_at=now).model_dump(mode="json")
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=refund.id, created_at=now,
                            event_type="refund.succeeded", payload=out))
    return 201, out
