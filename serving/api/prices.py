"""/api/v1/prices: effective-dated prices (commission.md).

POST: platform_admin. A new price closes the open one for the same subject and currency at its
valid_from (valid_to = valid_from), so prices never overlap; valid_from must be after the open
price's valid_from. GET: operators every price; an agent the prices of its subtree's agents and
merchants; a merchant key its own MDR.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import and_, false, or_, select, true

from serving import tenancy
from serving.api.common import Limit, StartingAfter, page
from serving.auth import Principal
from serving.deps import AdminDep, NowDep, PrincipalDep, SessionDep, WriteSessionDep
from serving.errors import not_found
from serving.schemas import BasisPoints, CurrencyCode, MinorOut, NonNegativeMinor, Timestamp
from serving.services.prices import set_price
from warehouse.models import Merchant, Price

router = APIRouter(tags=["prices"])
SubjectType = Literal["merchant", "agent", "channel"]


class PriceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: SubjectType
    subject_id: str = Field(min_length=1, max_length=40)
    currency: CurrencyCode
    rate_bps: BasisPoints
    fixed_minor: NonNegativeMinor | None = Field(
        default=None, description="left out: recorded as missing - counted as 0 with a "
        "data-quality warning (commission.md)")
    valid_from: AwareDatetime | None = Field(default=None, description="default: now")


class PriceOut(BaseModel):
    id: str
    object: Literal["price"] = "price"
    subject_type: str
    subject_id: str
    currency: str
    rate_bps: int
    fixed_minor: MinorOut | None
    valid_from: Timestamp
    valid_to: Timestamp | None
    created_at: Timestamp


class PriceList(BaseModel):
    data: list[PriceOut]
    has_more: bool


def price_out(price: Price) -> dict:
    return PriceOut(id=price.id, subject_type=price.subject_type, subject_id=price.subject_id,
                    currency=price.currency, rate_bps=price.rate_bps,
                    fixed_minor=price.fixed_minor, valid_from=price.valid_from,
                    valid_to=price.valid_to, created_at=price.created_at).model_dump(mode="json")


def _visible(session, principal: Principal, now):
    if principal.is_operator:
        return true()
    if principal.merchant_id is not None:
        return and_(Price.subject_type == "merchant", Price.subject_id == principal.merchant_id)
    if principal.agent_id is not None:
        agents = tenancy.agent_subtree(session, principal.agent_id, now)
        merchants = select(Merchant.id).where(Merchant.agent_id.in_(agents))
        return or_(and_(Price.subject_type == "agent", Price.subject_id.in_(agents)),
                   and_(Price.subject_type == "merchant", Price.subject_id.in_(merchants)))
    return false()


@router.post("/prices", status_code=201, response_model=PriceOut)
def create_price(body: PriceCreate, admin: AdminDep, session: WriteSessionDep, now: NowDep):
    price = set_price(session, subject_type=body.subject_type, subject_id=body.subject_id,
                      currency=body.currency, rate_bps=body.rate_bps,
                      fixed_minor=body.fixed_minor, valid_from=body.valid_from or now,
                      actor=admin.actor)
    session.commit()
    return JSONResponse(price_out(price), status_code=201)


@router.get("/prices", response_model=PriceList)
def list_prices(principal: PrincipalDep, session: SessionDep, now: NowDep,
                limit: Limit = 20, starting_after: StartingAfter = None,
                subject_id: str | None = None,
                subject_type: Annotated[SubjectType | None, Query()] = None,
                currency: str | None = None,
                at: Annotated[AwareDatetime | None,
                              Query(description="only prices in force at this instant")] = None):
    query = select(Price).where(_visible(session, principal, now))
    if subject_id is not None:
        query = query.where(Price.subject_id == subject_id)
    if subject_type is not None:
        query = query.where(Price.subject_type == subject_type)
    if currency is not None:
        query = query.where(Price.currency == currency.upper())
    if at is not None:
        query = query.where(Price.valid_from <= at,
                            or_(Price.valid_to.is_(None), Price.valid_to > at))
    return JSONResponse(page(session, query, Price.id, limit=limit,
                             starting_after=starting_after, out=price_out))


@router.get("/prices/{price_id}", response_model=PriceOut)
def get_price(price_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    price = session.scalars(select(Price).where(Price.id == price_id,
                                                _visible(session, principal, now))).first()
    if price is None:
        raise not_found("price", price_id)
    return JSONResponse(price_out(price))
