"""/api/v1/merchants/{id}/adjustments: manual settlement adjustments (settlement.md).

POST: platform_admin and finance (Idempotency-Key, audit-logged); merchant and agent
keys 403. GET: operators, a merchant itself, an agent for the merchants of its subtree; another
tenant's merchant is a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from serving import tenancy
from serving.api.common import (
    IdempotencyKeyHeader,
    Limit,
    StartingAfter,
    call_idempotent,
    idempotent_response,
    page,
)
from serving.auth import Principal
from serving.deps import EngineDep, NowDep, PrincipalDep, SessionDep, require_roles
from serving.errors import not_found
from serving.schemas import CurrencyCode, _minor, minor_input_schema
from serving.services import adjustments as service
from serving.services.idempotency import check_key
from warehouse.models import Merchant, SettlementAdjustment

router = APIRouter(tags=["settlement adjustments"])
WriterDep = Annotated[Principal, Depends(require_roles("platform_admin", "finance"))]


def _nonzero(value: int) -> int:
    if value == 0:
        raise PydanticCustomError("invalid_amount", "amount_minor must not be zero",
                                  {"code": "amount_zero"})
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:  # Postgres text cannot hold NUL: a 422, not a 500
        raise PydanticCustomError("invalid_text", "reason must not contain NUL characters",
                                  {"code": "invalid_reason"})
    return value


# Signed: positive credits the merchant, negative debits it; an int or a digit string, never 0.
NonZeroMinor = Annotated[int, BeforeValidator(_minor), AfterValidator(_nonzero),
                         minor_input_schema("-?[1-9][0-9]{0,37}"),
                         PlainSerializer(str, return_type=str)]


class AdjustmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: NonZeroMinor
    currency: CurrencyCode
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
                      AfterValidator(_no_nul)]


class AdjustmentOut(BaseModel):
    id: str
    object: Literal["settlement_adjustment"] = "settlement_adjustment"
    merchant_id: str
    amount_minor: str
    currency: str
    reason: str
    created_by: str
    effective_at: str
    created_at: str


class AdjustmentList(BaseModel):
    data: list[AdjustmentOut]
    has_more: bool


@router.post("/merchants/{merchant_id}/adjustments", status_code=201,
             response_model=AdjustmentOut,
             responses={422: {"description": "currency_not_settlement_currency"},
                        409: {"description": "idempotency_key_reused"}})
async def create_adjustment(merchant_id: str, body: AdjustmentCreate,
                            principal: WriterDep, engine: EngineDep, now: NowDep,
                            idempotency_key: IdempotencyKeyHeader = None):
    """A manual credit (positive) or debit (negative) on the merchant's statement, in its
    settlement currency, with the reason; counts at the request's business time."""
    key = check_key(idempotency_key)
    path = f"/api/v1/merchants/{merchant_id}/adjustments"
    result = await call_idempotent(
        engine, scope=principal.user_id or principal.actor, key=key, path=path, params=body,
        work=lambda s: service.create(s, principal, merchant_id, amount_minor=body.amount_minor,
                                      currency=body.currency, reason=body.reason, now=now))
    return idempotent_response(result)


@router.get("/merchants/{merchant_id}/adjustments", response_model=AdjustmentList)
def list_adjustments(merchant_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep,
                     limit: Limit = 20, starting_after: StartingAfter = None):
    if session.get(Merchant, merchant_id) is None or not tenancy.can_see_merchant(
            session, principal, merchant_id, now):
        raise not_found("merchant", merchant_id)  # 404, not 403: existence must not leak
    query = select(SettlementAdjustment).where(SettlementAdjustment.merchant_id == merchant_id)
    return JSONResponse(page(session, query, SettlementAdjustment.id, limit=limit,
                             starting_after=starting_after, out=service.adjustment_out))
