"""/api/v1/agents/{id}/commission-models: an agent's commission model per currency
(markup | percentage | fixed, commission.md), effective-dated like prices.

POST: platform_admin. GET: operators, and an agent for itself or an agent in its subtree
(another agent is a 404); merchant keys 403.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from serving import tenancy
from serving.api.common import Limit, StartingAfter, page
from serving.auth import Principal
from serving.deps import AdminDep, NowDep, SessionDep, WriteSessionDep, require_roles
from serving.errors import ApiError, not_found
from serving.schemas import BasisPoints, CurrencyCode, MinorOut, NonNegativeMinor, Timestamp
from serving.services.prices import set_commission_model
from warehouse.models import Agent, CommissionModel

router = APIRouter(tags=["commission models"])
ReaderDep = Annotated[Principal, Depends(require_roles("platform_admin", "finance", "agent"))]


class CommissionModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: CurrencyCode
    model: Literal["markup", "percentage", "fixed"]
    pct_bps: BasisPoints | None = Field(default=None, description="percentage only")
    fixed_minor: NonNegativeMinor | None = Field(default=None, description="fixed only")
    valid_from: AwareDatetime | None = Field(default=None, description="default: now")


class CommissionModelOut(BaseModel):
    id: str
    object: Literal["commission_model"] = "commission_model"
    agent_id: str
    currency: str
    model: str
    pct_bps: int | None
    fixed_minor: MinorOut | None
    valid_from: Timestamp
    valid_to: Timestamp | None
    created_at: Timestamp


class CommissionModelList(BaseModel):
    data: list[CommissionModelOut]
    has_more: bool


def model_out(row: CommissionModel) -> dict:
    return CommissionModelOut(id=row.id, agent_id=row.agent_id, currency=row.currency,
                              model=row.model, pct_bps=row.pct_bps, fixed_minor=row.fixed_minor,
                              valid_from=row.valid_from, valid_to=row.valid_to,
                              created_at=row.created_at).model_dump(mode="json")


def _check_parameters(body: CommissionModelCreate) -> None:
    needed = {"percentage": "pct_bps", "fixed": "fixed_minor"}.get(body.model)
    for field in ("pct_bps", "fixed_minor"):
        given = getattr(body, field) is not None
        if field == needed and not given:
            raise ApiError(422, "validation_error", f"{field}: required for model {body.model}",
                           {"field": field})
        if field != needed and given:
            raise ApiError(422, "validation_error",
                           f"{field}: not used by model {body.model}", {"field": field})


@router.post("/agents/{agent_id}/commission-models", status_code=201,
             response_model=CommissionModelOut)
def create_commission_model(agent_id: str, body: CommissionModelCreate, admin: AdminDep,
                            session: WriteSessionDep, now: NowDep):
    _check_parameters(body)
    row = set_commission_model(session, agent_id=agent_id, currency=body.currency,
                               model=body.model, pct_bps=body.pct_bps,
                               fixed_minor=body.fixed_minor, valid_from=body.valid_from or now,
                               actor=admin.actor)
    session.commit()
    return JSONResponse(model_out(row), status_code=201)


@router.get("/agents/{agent_id}/commission-models", response_model=CommissionModelList)
def list_commission_models(agent_id: str, principal: ReaderDep, session: SessionDep,
                           now: NowDep, limit: Limit = 20, starting_after: StartingAfter = None,
                           currency: str | None = None):
    if session.get(Agent, agent_id) is None or not tenancy.can_see_agent(
            session, principal, agent_id, now):
        raise not_found("agent", agent_id)
    query = select(CommissionModel).where(CommissionModel.agent_id == agent_id)
    if currency is not None:
        query = query.where(CommissionModel.currency == currency.upper())
    return JSONResponse(page(session, query, CommissionModel.id, limit=limit,
                             starting_after=starting_after, out=model_out))
