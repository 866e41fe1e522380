"""Payments and refunds: validate, check risk, route to a channel, record, post, announce.

Each request is one database transaction: the payment's moves through the state machine (each
recorded in payment_events), its ledger legs and its outbox event commit together or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from serving import cache, channels, risk
from serving.errors import ApiError, not_found
from serving.routing import HEALTH, channels_with_daily_limit, decision_out, route
from serving.schemas import (
    PaymentConfirm,
    PaymentCreate,
    PaymentMethod,
    PaymentOut,
    RefundCreate,
    RefundOut,
    RiskDecision,
)
from serving.services import wallets
from serving.services.state_machine import CAPTURED, move
from warehouse.ids import new_id
from warehouse.ledger import Leg, channel_receivable, merchant_payable, post_transaction
from warehouse.models import (
    AgentPaymentToken,
    Channel,
    Merchant,
    OutboxEvent,
    Payment,
    Price,
    Refund,
    SimChannelOperation,
    X402Usage,
)

CONFIRMABLE = ("pending_confirm", "auth_required")
CANCELLABLE = ("initiated", "pending_confirm", "auth_required")


def price_in_force(session: Session, *, subject_type: str, subject_id: str, currency: str,
                   at: datetime) -> Price | None:
    return session.scalars(
        select(Price).where(
            Price.subject_type == subject_type, Price.subject_id == subject_id,
            Price.currency == currency, Price.valid_from <= at,
            or_(Price.valid_to.is_(None), Price.valid_to > at),
        ).order_by(Price.valid_from.desc()).limit(1)
    ).first()


@dataclass(frozen=True)
class MerchantSettings:
    """What the payment path reads of a merchant (cached briefly: see serving/cache.py)."""

    id: str
    kyc_tier: int
    settlement_currency: str


def merchant_settings(session: Session, merchant_id: str) -> MerchantSettings:
    def load():
        m = session.get(Merchant, merchant_id)
        return MerchantSettings(m.id, m.kyc_tier, m.settlement_currency)

    return cache.cached(("merchant", cache.scope(session.get_bind()), merchant_id), load)


def _has_price(session: Session, merchant_id: str, currency: str, at: datetime) -> bool:
    def load():
        return session.execute(select(Price.valid_from, Price.valid_to).where(
            Price.subject_type == "merchant", Price.subject_id == merchant_id,
            Price.currency == currency)).all()

    spans = cache.cached(("merchant_prices", cache.scope(session.get_bind()), merchant_id, currency),
                         load)
    return any(start <= at and (end is None or at < end) for start, end in spans)


def payment_out(payment: Payment) -> dict:
    routing = dict(decision_out(payment.routing, payment.currency)) if payment.routing else None
    if routing:
        routing.pop("method", None)  # internal: what a later confirm needs
    return PaymentOut(
        id=payment.id, merchant_id=payment.merchant_id,
        merchant_reference=payment.merchant_reference, status=payment.status,
        amount_minor=payment.amount_minor, currency=payment.currency,
        refunded_minor=payment.refunded_minor, payment_method_type=payment.payment_method_type,
        channel=payment.channel_id, channel_reference=payment.channel_reference,
        failure_code=payment.failure_code,
        risk=RiskDecision(decision=payment.risk_decision, score=payment.risk_score,
                          reasons=payment.risk_reasons or []),
        routing=routing, created_at=payment.created_at, captured_at=payment.captured_at,
    ).model_dump(mode="json")


def _announce(session: Session, payment: Payment, event_type: str, now: datetime) -> dict:
    out = payment_out(payment)
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=payment.id, created_at=now,
                            event_type=event_type, payload=out))
    return out


def _fail(session: Session, payment: Payment, code: str, now: datetime) -> None:
    move(session, payment, "failed", at=now, reason=code)
    payment.failure_code = code
    _announce(session, payment, "payment.failed", now)


def _capture(session: Session, payment: Payment, now: datetime) -> None:
    move(session, payment, "success", at=now)
    payment.captured_at = now
    assert payment.channel_id is not None  # routing chose it before the channel approved
    post_transaction(session, kind="capture", merchant_id=payment.merchant_id, at=now,
                     payment_id=payment.id, legs=[
                         Leg(channel_receivable(payment.channel_id), payment.currency,
                             payment.amount_minor),
                         Leg(merchant_payable(payment.merchant_id), payment.currency,
                             -payment.amount_minor),
                     ])
    _announce(session, payment, "payment.succeeded", now)


def _method_memory(method: PaymentMethod) -> dict:
    """What may be kept of a payment method: never the card number."""
    kept = method.model_dump(exclude_none=True)
    kept.pop("number", None)
    return kept


def create_payment(session: Session, *, merchant_id: str, body: PaymentCreate,
                   now: datetime, facts: risk.RiskFacts | None = None,
                   captured_today: dict[str, int] | None = None) -> tuple[int, dict]:
    # One flush at the end: each table gets its rows in one statement, and the payment row is
    # inserted complete instead of inserted then updated (round trips set the ceiling).
    with session.no_autoflush:
        return _create_payment(session, merchant_id=merchant_id, body=body, now=now,
                               facts=facts, captured_today=captured_today)


def _create_payment(session: Session, *, merchant_id: str, body: PaymentCreate,
                    now: datetime, facts: risk.RiskFacts | None = None,
                    captured_today: dict[str, int] | None = None) -> tuple[int, dict]:
    """`facts` and `captured_today`, when given, were read already (the Postgres fast path reads
    them in one statement with the idempotency claim); otherwise they are read here."""
    merchant = merchant_settings(session, merchant_id)
    wallets.require_customer(body.payment_method.type, body.customer)
    if not _has_price(session, merchant_id, body.currency, now):
        raise ApiError(422, "currency_not_enabled",
                       f"{body.currency} is not enabled for this merchant (no price in force)",
                       {"field": "currency"})
    if body.channel is not None and session.get(Channel, body.channel) is None:
        # A forced channel that does not exist is bad input, not a routing outcome (a channel
        # that exists but cannot take the payment fails it with the reasons in `routing`).
        raise ApiError(422, "unknown_channel", f"no channel with id {body.channel!r}",
                       {"field": "channel"})
    method = body.payment_method.model_dump(exclude_none=True)
    customer = body.customer
    payment = Payment(
        id=new_id("payment"), merchant_id=merchant_id, merchant_reference=body.merchant_reference,
        amount_minor=body.amount_minor, currency=body.currency, status=None,
        payment_method_type=body.payment_method.type, refunded_minor=0, created_at=now,
        risk_decision="not_checked",
        customer_id=customer.id if customer else None,
        customer=customer.model_dump(exclude_none=True) if customer else None,
        customer_ip=customer.ip if customer else None,
        device_id=customer.device_id if customer else None,
        card_fingerprint=channels.card_fingerprint(method),
        routing={"method": _method_memory(body.payment_method), "forced": body.channel},
    )
    session.add(payment)
    move(session, payment, "initiated", at=now)
    if not body.confirm:
        move(session, payment, "pending_confirm", at=now)
        return 201, _announce(session, payment, "payment.created", now)
    move(session, payment, "processing", at=now)
    _risk_and_channel(session, payment, merchant, method, body.channel, now, facts=facts,
                      captured_today=captured_today)
    return 201, payment_out(payment)


def risk_input(payment: Payment, merchant: MerchantSettings) -> risk.RiskInput:
    customer = payment.customer or {}
    return risk.RiskInput(
        merchant=merchant, amount_minor=payment.amount_minor, currency=payment.currency,
        customer_id=payment.customer_id, email=customer.get("email"),
        customer_ip=payment.customer_ip, device_id=payment.device_id,
        card_fingerprint=payment.card_fingerprint, geo=customer.get("geo"),
        payment_id=payment.id, method=payment.payment_method_type)


def _risk_and_channel(session: Session, payment: Payment, merchant: MerchantSettings, method: dict,
                      forced: str | None, now: datetime, *, facts: risk.RiskFacts | None = None,
                      captured_today: dict[str, int] | None = None) -> None:
    move(session, payment, "risk_checking", at=now)
    checked = risk_input(payment, merchant)
    if facts is None:  # on Postgres one locked read for the rules and the channels' limits
        limited = channels_with_daily_limit(session, payment.payment_method_type,
                                            payment.currency)
        with session.no_autoflush:  # the payment stays out of its own history
            facts = risk.gather(session, checked, now, limited_channels=limited)
        captured_today = facts.captured_today
    result = risk.decide(checked, facts, now, session=session)
    payment.risk_decision, payment.risk_score = result.decision, result.score
    payment.risk_reasons = result.reasons
    if result.decision == "reject":
        _fail(session, payment, "risk_rejected", now)
        return
    if result.decision == "review":
        move(session, payment, "auth_required", at=now, reason=",".join(result.reasons))
        _announce(session, payment, "payment.requires_action", now)
        return
    _call_channel(session, payment, method, forced, now, captured_today=captured_today)


def _call_channel(session: Session, payment: Payment, method: dict, forced: str | None,
                  now: datetime, *, captured_today: dict[str, int] | None = None) -> None:
    move(session, payment, "channel_calling", at=now)
    if payment.payment_method_type == "wallet":  # stored value: no channel, no platform money
        wallets.spend(session, payment, now)
        _announce(session, payment, "payment.succeeded", now)
        return
    decision = route(session, method_type=payment.payment_method_type, currency=payment.currency,
                     amount_minor=payment.amount_minor, now=now, forced_channel=forced,
                     captured_today=captured_today)
    result = None
    for channel_id in decision.candidates:
        if not HEALTH.allows(channel_id):
            decision.attempts.append({"channel": channel_id, "outcome": "skipped_breaker_open"})
            continue
        started = time.perf_counter()
        result = channels.charge(channel_id, payment.payment_method_type, method)
        latency = (time.perf_counter() - started) * 1000
        HEALTH.record(channel_id, ok=result.outcome != "timeout", latency_ms=latency)
        decision.attempts.append({"channel": channel_id, "outcome": result.outcome})
        if result.outcome != "timeout":
            decision.chosen = channel_id
            break
    payment.routing = {**(payment.routing or {}), **decision.as_json()}
    if decision.chosen is None:
        code = "channel_unavailable" if decision.candidates else "no_channel_available"
        _fail(session, payment, code, now)
        return
    assert result is not None  # the chosen channel answered
    payment.channel_id, payment.channel_reference = decision.chosen, result.channel_reference
    if result.outcome == "approved":
        _capture(session, payment, now)
    elif result.outcome == "declined":
        _fail(session, payment, result.failure_code or "declined", now)
    else:  # pending: the channel confirms later with a signed callback
        move(session, payment, "pending_callback", at=now)
        session.add(SimChannelOperation(channel_reference=result.channel_reference,
                                        channel_id=decision.chosen,
                                        outcome=result.later_outcome or "succeeded",
                                        failure_code=None if result.later_outcome != "failed"
                                        else result.failure_code or "declined",
                                        created_at=now))
        _announce(session, payment, "payment.pending", now)


def _own_payment(session: Session, merchant_id: str, payment_id: str) -> Payment:
    payment = session.scalars(
        select(Payment).where(Payment.id == payment_id, Payment.merchant_id == merchant_id)
        .with_for_update()  # serialise state changes of one payment (Postgres row lock)
    ).first()
    if payment is None:
        raise not_found("payment", payment_id)
    return payment


def confirm_payment(session: Session, *, merchant_id: str, payment_id: str, body: PaymentConfirm,
                    now: datetime) -> tuple[int, dict]:
    """pending_confirm -> risk and channel; auth_required (after review) -> channel."""
    payment = _own_payment(session, merchant_id, payment_id)
    if payment.status not in CONFIRMABLE:
        raise ApiError(409, "illegal_transition",
                       f"payment {payment.id} is {payment.status}; only {', '.join(CONFIRMABLE)} "
                       "payments can be confirmed", {"status": payment.status})
    memory = (payment.routing or {}).get("method", {})
    if body.payment_method is not None:
        if body.payment_method.type != payment.payment_method_type:
            raise ApiError(422, "payment_method_mismatch",
                           "confirm with the same payment method type", {"field": "payment_method"})
        method = body.payment_method.model_dump(exclude_none=True)
    elif payment.payment_method_type == "card":
        raise ApiError(422, "payment_method_required",
                       "card numbers are never stored: send payment_method to confirm",
                       {"field": "payment_method"})
    else:
        method = memory
    forced = (payment.routing or {}).get("forced")
    if payment.status == "pending_confirm":
        move(session, payment, "processing", at=now)
        merchant = merchant_settings(session, merchant_id)
        _risk_and_channel(session, payment, merchant, method, forced, now)
    else:
        _call_channel(session, payment, method, forced, now)
        wallets.resolve_topup(session, payment, now)  # a top-up held for review
    return 200, payment_out(payment)


def cancel_payment(session: Session, *, merchant_id: str, payment_id: str,
                   now: datetime) -> tuple[int, dict]:
    payment = _own_payment(session, merchant_id, payment_id)
    move(session, payment, "cancelled", at=now, reason="cancelled_by_merchant")
    wallets.resolve_topup(session, payment, now)
    return 200, _announce(session, payment, "payment.cancelled", now)


def apply_channel_outcome(session: Session, *, payment: Payment, approved: bool,
                          failure_code: str | None, now: datetime) -> dict:
    """A channel's (signed, verified) callback settles a pending payment."""
    if payment.status != "pending_callback":
        raise ApiError(409, "illegal_transition",
                       f"payment {payment.id} is {payment.status}, not pending_callback",
                       {"status": payment.status})
    if approved:
        _capture(session, payment, now)
    else:
        _fail(session, payment, failure_code or "declined", now)
    wallets.resolve_topup(session, payment, now)  # a top-up the channel confirmed later
    return payment_out(payment)


def _refunded_to(session: Session, payment: Payment) -> str:
    """The account a refund credits: the one the payment's capture debited. A card (or on-chain
    x402) payment's money came from its channel; an agent-token payment's came out of the balance
    of the buyer merchant that issued the token (serving/x402/booking.py), so it goes back there.
    The token's remaining budget is not restored: the budget is a cap on what the agent may
    spend, not a balance, and a refund does not let the agent spend more."""
    if payment.channel_id != channels.TOKEN_CHANNEL:
        assert payment.channel_id is not None  # only a captured payment is refunded
        return channel_receivable(payment.channel_id)
    # A token payment's channel_reference is its usage id (booking.record_paid).
    buyer_id = session.scalars(
        select(AgentPaymentToken.merchant_id)
        .join(X402Usage, X402Usage.token_id == AgentPaymentToken.id)
        .where(X402Usage.id == payment.channel_reference, X402Usage.payment_id == payment.id)
    ).one()
    return merchant_payable(buyer_id)


def refund_out(refund: Refund) -> dict:
    return RefundOut(id=refund.id, payment_id=refund.payment_id, status=refund.status,
                     amount_minor=refund.amount_minor, currency=refund.currency,
                     reason=refund.reason, created_at=refund.created_at).model_dump(mode="json")


def create_refund(session: Session, *, merchant_id: str, body: RefundCreate,
                  now: datetime) -> tuple[int, dict]:
    payment = _own_payment(session, merchant_id, body.payment_id)
    if body.currency is not None and body.currency != payment.currency:
        raise ApiError(422, "currency_mismatch",
                       f"payment {payment.id} is in {payment.currency}, not {body.currency}",
                       {"field": "currency", "payment_currency": payment.currency})
    if payment.status not in CAPTURED:
        raise ApiError(409, "payment_not_refundable",
                       f"payment {payment.id} is {payment.status}; only captured payments refund",
                       {"status": payment.status})
    topup = (wallets.topup_of(session, payment.id) if payment.payment_method_type != "wallet"
             else None)
    if topup is not None:
        # A top-up's refund takes principal r out of the wallet and claws the bonus back; the
        # cash refunded (the Refund's amount) is r less the bonus already spent.
        wallet, remaining, claw = wallets.plan_topup_refund(session, payment=payment, topup=topup,
                                                            requested=body.amount_minor)
        amount, fully = claw.cash, claw.principal_out == remaining
    else:
        remaining = payment.amount_minor - payment.refunded_minor
        amount = body.amount_minor if body.amount_minor is not None else remaining
        if amount > remaining:
            raise ApiError(422, "refund_exceeds_captured",
                           f"refund of {amount} exceeds the {remaining} {payment.currency} that "
                           "remain", {"field": "amount_minor", "remaining_minor": str(remaining),
                                      "currency": payment.currency})
        fully = amount == remaining
    move(session, payment, "refunding", at=now)
    channel_reference = None
    if payment.payment_method_type != "wallet":  # a wallet payment gives back stored value only
        channel_reference = channels.refund(payment.payment_method_type)
    refund = Refund(id=new_id("refund"), payment_id=payment.id, merchant_id=merchant_id,
                    amount_minor=amount, currency=payment.currency, status="succeeded",
                    reason=body.reason, created_at=now, succeeded_at=now,
                    channel_reference=channel_reference)
    session.add(refund)
    refunded_before = payment.refunded_minor
    payment.refunded_minor += amount
    move(session, payment, "refunded" if fully else "partially_refunded", at=now,
         reason=refund.id)
    if payment.payment_method_type == "wallet":
        wallets.refund_spend(session, payment=payment, refund=refund,
                             refunded_before=refunded_before, now=now)
    else:
        if topup is not None:
            wallets.apply_topup_refund(session, payment=payment, topup=topup, wallet=wallet,
                                       claw=claw, refund=refund, now=now)
        post_transaction(session, kind="refund", merchant_id=merchant_id, at=now,
                         payment_id=payment.id, refund_id=refund.id, legs=[
                             Leg(merchant_payable(merchant_id), payment.currency, amount),
                             Leg(_refunded_to(session, payment), payment.currency, -amount),
                         ])
    out = refund_out(refund)
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=refund.id, created_at=now,
                            event_type="refund.succeeded", payload={**out, "merchant_id": merchant_id}))
    return 201, out
