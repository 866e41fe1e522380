"""/api/v1/withdrawals (payout requests by merchants and agents) and /api/v1/balances."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select

from serving.api.common import (
    IdempotencyKeyHeader,
    Limit,
    StartingAfter,
    call_idempotent,
    caller_scope,
    idempotent_response,
    page,
)
from serving.auth import Principal
from serving.deps import EngineDep, NowDep, OperatorDep, SessionDep, SettingsDep, require_roles
from serving.errors import ApiError, not_found
from serving.schemas import CurrencyCode, PositiveMinor
from serving.services import withdrawals as service
from serving.services.idempotency import check_key
from warehouse.models import Agent, Merchant, Withdrawal

router = APIRouter(tags=["withdrawals"])

# merchant_developer only takes payments and refunds; finance decides but never requests.
RequesterDep = Annotated[Principal, Depends(require_roles("merchant_admin", "agent"))]
ReaderDep = Annotated[Principal, Depends(require_roles("merchant_admin", "agent",
                                                       "platform_admin", "finance"))]
PlatformAdminDep = Annotated[Principal, Depends(require_roles("platform_admin"))]


class WithdrawalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: PositiveMinor
    currency: CurrencyCode
    destination: str = Field(min_length=1, max_length=200,
                             description="where the money goes, e.g. a bank account reference")


class WithdrawalReject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200)


class WithdrawalOut(BaseModel):
    id: str
    object: Literal["withdrawal"] = "withdrawal"
    owner_type: Literal["merchant", "agent"]
    owner_id: str
    merchant_id: str | None
    agent_id: str | None
    amount_minor: str
    currency: str
    status: Literal["requested", "approved", "rejected", "paid"]
    destination: str | None
    decided_by: str | None
    decided_at: str | None
    paid_at: str | None
    reason: str | None
    created_at: str | None


class WithdrawalList(BaseModel):
    data: list[WithdrawalOut]
    has_more: bool


async def _run(engine, principal: Principal, key: str | None, path: str,
               params: BaseModel | dict, work):
    result = await call_idempotent(engine, scope=caller_scope(principal), key=check_key(key), path=path,
                                   params=params, work=work)
    return idempotent_response(result)


@router.post("/withdrawals", status_code=201, response_model=WithdrawalOut,
             responses={422: {"description": "insufficient_available_balance"}})
async def create_withdrawal(body: WithdrawalCreate, principal: RequesterDep,
                            engine: EngineDep, settings: SettingsDep, now: NowDep,
                            idempotency_key: IdempotencyKeyHeader = None):
    """Request a payout of part of the available balance (see GET /balances)."""
    return await _run(engine, principal, idempotency_key, "/api/v1/withdrawals", body,
                      lambda s: service.create(s, settings, principal,
                                               amount_minor=body.amount_minor,
                                               currency=body.currency,
                                               destination=body.destination, now=now))


@router.post("/withdrawals/{withdrawal_id}/approve", response_model=WithdrawalOut,
             responses={409: {"description": "illegal_transition"}})
async def approve_withdrawal(withdrawal_id: str, principal: OperatorDep, engine: EngineDep,
                             now: NowDep, idempotency_key: IdempotencyKeyHeader = None):
    """Approve: posts the payout to the ledger (payable -> payouts_in_transit)."""
    return await _run(engine, principal, idempotency_key,
                      f"/api/v1/withdrawals/{withdrawal_id}/approve", {},
                      lambda s: service.decide(s, principal, withdrawal_id, approve=True,
                                               reason=None, now=now))


@router.post("/withdrawals/{withdrawal_id}/reject", response_model=WithdrawalOut,
             responses={409: {"description": "illegal_transition"}})
async def reject_withdrawal(withdrawal_id: str, body: WithdrawalReject,
                            principal: OperatorDep, engine: EngineDep, now: NowDep,
                            idempotency_key: IdempotencyKeyHeader = None):
    """Reject (reason required): the amount becomes available again."""
    return await _run(engine, principal, idempotency_key,
                      f"/api/v1/withdrawals/{withdrawal_id}/reject", body,
                      lambda s: service.decide(s, principal, withdrawal_id, approve=False,
                                               reason=body.reason, now=now))


@router.post("/withdrawals/{withdrawal_id}/mark-paid", response_model=WithdrawalOut,
             responses={409: {"description": "illegal_transition"}})
async def mark_withdrawal_paid(withdrawal_id: str, principal: PlatformAdminDep,
                               engine: EngineDep, now: NowDep,
                               idempotency_key: IdempotencyKeyHeader = None):
    """The bank transfer went out: payouts_in_transit -> bank."""
    return await _run(engine, principal, idempotency_key,
                      f"/api/v1/withdrawals/{withdrawal_id}/mark-paid", {},
                      lambda s: service.mark_paid(s, principal, withdrawal_id, now=now))


def _visible(principal: Principal):
    if principal.is_operator:
        return None
    owner = service.owner_of(principal)
    return and_(Withdrawal.owner_type == owner.type, Withdrawal.owner_id == owner.id)


@router.get("/withdrawals", response_model=WithdrawalList)
def list_withdrawals(principal: ReaderDep, session: SessionDep, limit: Limit = 20,
                     starting_after: StartingAfter = None,
                     status: Literal["requested", "approved", "rejected", "paid"] | None = None):
    """Merchants and agents: their own; operators: all."""
    query = select(Withdrawal)
    if (where := _visible(principal)) is not None:
        query = query.where(where)
    if status:
        query = query.where(Withdrawal.status == status)
    return JSONResponse(page(session, query, Withdrawal.id, limit=limit,
                             starting_after=starting_after, out=service.withdrawal_out))


@router.get("/withdrawals/{withdrawal_id}", response_model=WithdrawalOut)
def get_withdrawal(withdrawal_id: str, principal: ReaderDep, session: SessionDep):
    w = session.get(Withdrawal, withdrawal_id)
    if w is None or not service.can_see(principal, w):
        raise not_found("withdrawal", withdrawal_id)  # 404, not 403: existence must not leak
    return JSONResponse(service.withdrawal_out(w))


@router.get("/balances")
def get_balances(principal: ReaderDep, session: SessionDep, settings: SettingsDep, now: NowDep,
                 currency: Annotated[CurrencyCode | None, Query()] = None,
                 merchant_id: Annotated[str | None, Query(description="operators only")] = None,
                 agent_id: Annotated[str | None, Query(description="operators only")] = None,
                 limit: Limit = 20,
                 starting_after: Annotated[str | None, Query(
                     description="cursor: the last currency of the previous page (a balance "
                                 "is one per currency and has no id of its own)")] = None):
    """Available balance per currency: the latest settled statement's closing balance minus
    withdrawals requested, approved or paid; with the statement it comes from. In currency
    order, paged like every list."""
    if principal.is_operator:
        if (merchant_id is None) == (agent_id is None):
            raise ApiError(422, "owner_required", "operators name one merchant_id or agent_id",
                           {"field": "merchant_id"})
        owner = (service.Owner("merchant", merchant_id) if merchant_id is not None
                 else service.Owner("agent", cast(str, agent_id)))  # exactly one is set
        if session.get(Merchant if owner.type == "merchant" else Agent, owner.id) is None:
            raise not_found(owner.type, owner.id)  # not an empty list: no such owner
    else:
        owner = service.owner_of(principal)
        if (merchant_id and merchant_id != owner.id) or (agent_id and agent_id != owner.id):
            raise not_found("merchant" if merchant_id else "agent", merchant_id or agent_id or "")
    rows = service.balances(session, settings, owner, now, currency)
    if starting_after is not None:
        # As the id lists (serving/api/common.py after_cursor): the cursor names a row of this
        # very list, else 404 - never an empty page that reads as the end of the list.
        if not any(b["currency"] == starting_after for b in rows):
            raise ApiError(404, "resource_missing",
                           f"starting_after: no balance in {starting_after!r} in this list",
                           {"field": "starting_after", "id": starting_after})
        rows = [b for b in rows if b["currency"] > starting_after]
    return JSONResponse({"data": rows[:limit], "has_more": len(rows) > limit})
