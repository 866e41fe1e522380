"""The payment state machine: which status may follow which, and the trail of every move.

    initiated -> pending_confirm -> processing -> risk_checking -> channel_calling
    risk_checking -> auth_required (review) -> channel_calling | cancelled | failed
    channel_calling -> success | failed | pending_callback (the channel answers later)
    pending_callback -> success | failed
    initiated | pending_confirm | auth_required -> cancelled
    success | partially_refunded -> refunding -> partially_refunded | refunded

A payment created through the API walks initiated -> ... -> channel_calling within one request
(each step recorded in payment_events); only the final status is visible outside the
transaction. Any other move is refused with 409 illegal_transition.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.schemas import iso_z
from warehouse.models import Payment, PaymentEvent

TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"initiated"}),
    "initiated": frozenset({"pending_confirm", "processing", "cancelled"}),
    "pending_confirm": frozenset({"processing", "cancelled"}),
    "processing": frozenset({"risk_checking"}),
    "risk_checking": frozenset({"channel_calling", "auth_required", "failed"}),
    "auth_required": frozenset({"channel_calling", "cancelled", "failed"}),
    "channel_calling": frozenset({"success", "failed", "pending_callback"}),
    "pending_callback": frozenset({"success", "failed"}),
    "success": frozenset({"refunding"}),
    "partially_refunded": frozenset({"refunding"}),
    "refunding": frozenset({"partially_refunded", "refunded"}),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if s and not nxt)
CAPTURED = ("success", "partially_refunded")  # states a refund may start from


def can_move(current: str | None, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def move(session: Session, payment: Payment, target: str, *, at: datetime,
         reason: str | None = None) -> None:
    current = payment.status
    if payment.created_at is not None and at < payment.created_at:
        # Only a test clock goes back in time; a payment cannot move before it existed (a
        # capture dated before its creation would land in a day that never saw it).
        raise ApiError(409, "before_payment_created",
                       f"payment {payment.id} was created at {iso_z(payment.created_at)}; it "
                       f"cannot go to {target} at {iso_z(at)}",
                       {"created_at": iso_z(payment.created_at), "at": iso_z(at)})
    if not can_move(current, target):
        raise ApiError(409, "illegal_transition",
                       f"payment {payment.id} cannot go from {current} to {target}",
                       {"from": current, "to": target})
    payment.status = target
    if target == "failed":
        payment.failed_at = at
    session.add(PaymentEvent(payment_id=payment.id, from_status=current, to_status=target,
                             reason=reason, at=at))
