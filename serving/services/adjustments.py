"""Settlement adjustments: manual statement items, with reason and who (settlement.md).

Positive credits the merchant, negative debits it; always in the merchant's settlement
currency. effective_at (the business time of the request) is when it counts on the statement.
Nothing is posted to the ledger here: like fees, adjustments reach the statements through the
warehouse (raw.settlement_adjustments).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from serving.auth import Principal
from serving.errors import ApiError, not_found
from serving.schemas import iso_z
from serving.services import audit
from warehouse.ids import new_id
from warehouse.models import Merchant, SettlementAdjustment


def adjustment_out(a: SettlementAdjustment) -> dict:
    return {
        "id": a.id, "object": "settlement_adjustment", "merchant_id": a.merchant_id,
        "amount_minor": str(a.amount_minor), "currency": a.currency, "reason": a.reason,
        "created_by": a.created_by, "effective_at": iso_z(a.effective_at),
        "created_at": iso_z(a.created_at),
    }


def create(session: Session, principal: Principal, merchant_id: str, *, amount_minor: int,
           currency: str, reason: str, now: datetime) -> tuple[int, dict]:
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise not_found("merchant", merchant_id)
    if currency != merchant.settlement_currency:
        raise ApiError(422, "currency_not_settlement_currency",
                       f"adjustments are in the merchant's settlement currency "
                       f"({merchant.settlement_currency}), not {currency}",
                       {"field": "currency", "settlement_currency": merchant.settlement_currency})
    a = SettlementAdjustment(id=new_id("settlement_adjustment"), merchant_id=merchant_id,
                             amount_minor=amount_minor, currency=currency, reason=reason,
                             created_by=principal.actor, effective_at=now, created_at=now)
    session.add(a)
    session.flush()
    audit.record(session, actor=principal.actor, action="settlement_adjustment.created",
                 resource_type="settlement_adjustment", resource_id=a.id,
                 details={"merchant_id": merchant_id, "amount_minor": str(amount_minor),
                          "currency": currency, "reason": reason})
    return 201, adjustment_out(a)
