"""/api/v1/channels: payment channels, the currencies each takes and its cost price.

POST and PATCH: platform_admin; GET: platform_admin and finance. A channel's cost price is
written as effective-dated prices rows (subject 'channel'); `price` applies one rate_bps and a
fixed amount per currency to every currency the channel takes. The callback secret is returned
once, at creation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from serving.api.common import Limit, StartingAfter, page
from serving.deps import AdminDep, NowDep, OperatorDep, SessionDep, WriteSessionDep
from serving.errors import ApiError, not_found
from serving.schemas import (
    PAYMENT_METHOD_TYPES,
    BasisPoints,
    CurrencyCode,
    MinorOut,
    Name,
    NonNegativeMinor,
    PositiveMinor,
    Timestamp,
)
from serving.services import channels as service
from warehouse.models import Channel, ChannelCurrency, Price

router = APIRouter(tags=["channels"])
ChannelType = Literal["card", "wechat_pay", "alipay", "bank_transfer", "e_cny", "apple_pay",
                      "crypto", "wallet"]
assert set(get_args(ChannelType)) == set(PAYMENT_METHOD_TYPES)  # keep the two lists in step


class CurrencyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: CurrencyCode
    min_amount_minor: PositiveMinor = 1
    max_amount_minor: PositiveMinor | None = None
    daily_limit_minor: PositiveMinor | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_amount_minor is not None and self.max_amount_minor < self.min_amount_minor:
            raise PydanticCustomError("invalid_bounds",
                                      "max_amount_minor must not be below min_amount_minor",
                                      {"code": "invalid_bounds"})
        return self


class ChannelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate_bps: BasisPoints
    fixed_minor: dict[CurrencyCode, NonNegativeMinor] = Field(
        default_factory=dict, description="per currency; a currency left out has none: "
        "counted as 0 with a data-quality warning (commission.md)")
    valid_from: AwareDatetime | None = Field(default=None, description="default: now")


def _unique_currencies(value: list[CurrencyLimits] | None):
    if value is not None and len({c.currency for c in value}) != len(value):
        raise PydanticCustomError("duplicate_currency", "each currency once",
                                  {"code": "duplicate_currency"})
    return value


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(min_length=1, max_length=100)
    type: ChannelType
    status: Literal["active", "disabled"] = "active"
    priority: int = Field(default=100, ge=0, le=1_000_000, description="lower wins a tie")
    settlement_window_days: int = Field(default=1, ge=0, le=60)
    currencies: list[CurrencyLimits] = Field(default_factory=list)
    price: ChannelPrice | None = None

    _currencies = field_validator("currencies")(_unique_currencies)


class ChannelUpdate(BaseModel):
    """Fields sent change; `currencies` replaces the whole set; `price` adds new price rows."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = Field(default=None, min_length=1, max_length=100)
    status: Literal["active", "disabled"] | None = None
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    settlement_window_days: int | None = Field(default=None, ge=0, le=60)
    currencies: list[CurrencyLimits] | None = None
    price: ChannelPrice | None = None

    _currencies = field_validator("currencies")(_unique_currencies)


class PriceNow(BaseModel):
    price_id: str
    rate_bps: int
    fixed_minor: MinorOut | None
    currency: str
    valid_from: Timestamp


class CurrencyOut(BaseModel):
    currency: str
    min_amount_minor: MinorOut
    max_amount_minor: MinorOut | None
    daily_limit_minor: MinorOut | None
    price: PriceNow | None = Field(description="the cost price in force now")


class ChannelOut(BaseModel):
    id: str
    object: Literal["channel"] = "channel"
    name: str
    type: str
    status: str
    priority: int
    settlement_window_days: int
    currencies: list[CurrencyOut]
    created_at: Timestamp
    updated_at: Timestamp


class ChannelCreated(ChannelOut):
    callback_secret: str = Field(description="shown once: the channel signs its callbacks with it")


class ChannelList(BaseModel):
    data: list[ChannelOut]
    has_more: bool


def channel_out(session, channel: Channel, now: datetime) -> dict:
    rows = session.scalars(select(ChannelCurrency).where(ChannelCurrency.channel_id == channel.id)
                           .order_by(ChannelCurrency.currency)).all()
    prices = {p.currency: p for p in session.scalars(
        select(Price).where(Price.subject_type == "channel", Price.subject_id == channel.id,
                            Price.valid_from <= now,
                            (Price.valid_to.is_(None)) | (Price.valid_to > now)))}
    currencies = []
    for row in rows:
        price = prices.get(row.currency)
        currencies.append(CurrencyOut(
            currency=row.currency, min_amount_minor=row.min_amount_minor,
            max_amount_minor=row.max_amount_minor, daily_limit_minor=row.daily_limit_minor,
            price=None if price is None else PriceNow(price_id=price.id, rate_bps=price.rate_bps,
                                                      fixed_minor=price.fixed_minor,
                                                      currency=price.currency,
                                                      valid_from=price.valid_from)))
    return ChannelOut(id=channel.id, name=channel.name, type=channel.channel_type,
                      status=channel.status, priority=channel.priority,
                      settlement_window_days=channel.settlement_window_days,
                      currencies=currencies, created_at=channel.created_at,
                      updated_at=channel.updated_at).model_dump(mode="json")


def _currencies(items: list[CurrencyLimits]) -> list[dict]:
    return [dict(c) for c in items]  # the ints themselves: model_dump would give strings


def _price(price: ChannelPrice | None) -> dict | None:
    return None if price is None else dict(price)


def _after_change() -> None:
    from serving import routing

    routing.clear_config_cache()  # this process routes on the new settings at once


@router.post("/channels", status_code=201, response_model=ChannelCreated)
def create_channel(body: ChannelCreate, admin: AdminDep, session: WriteSessionDep, now: NowDep):
    valid_from = (body.price.valid_from if body.price else None) or now
    channel, secret = service.create_channel(
        session, name=body.name, channel_type=body.type, status=body.status,
        priority=body.priority, settlement_window_days=body.settlement_window_days,
        currencies=_currencies(body.currencies),
        price=_price(body.price), valid_from=valid_from,
        actor=admin.actor)
    session.commit()
    _after_change()
    return JSONResponse({**channel_out(session, channel, now), "callback_secret": secret},
                        status_code=201)


@router.get("/channels", response_model=ChannelList)
def list_channels(_reader: OperatorDep, session: SessionDep, now: NowDep,
                  limit: Limit = 20, starting_after: StartingAfter = None,
                  type: Annotated[ChannelType | None, Query()] = None):
    query = select(Channel)
    if type is not None:
        query = query.where(Channel.channel_type == type)
    return JSONResponse(page(session, query, Channel.id, limit=limit,
                             starting_after=starting_after,
                             out=lambda c: channel_out(session, c, now)))


@router.get("/channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: str, _reader: OperatorDep, session: SessionDep, now: NowDep):
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise not_found("channel", channel_id)
    return JSONResponse(channel_out(session, channel, now))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def update_channel(channel_id: str, body: ChannelUpdate, admin: AdminDep,
                   session: WriteSessionDep, now: NowDep):
    channel = session.get(Channel, channel_id, with_for_update=True)
    if channel is None:
        raise not_found("channel", channel_id)
    fields = body.model_fields_set - {"currencies", "price"}
    changes = {name: getattr(body, name) for name in fields}
    for name, value in changes.items():
        if value is None:
            raise ApiError(422, "validation_error", f"{name}: must not be null", {"field": name})
    service.update_channel(
        session, channel=channel, changes=changes,
        currencies=None if body.currencies is None else _currencies(body.currencies),
        price=_price(body.price),
        valid_from=(body.price.valid_from if body.price else None) or now, actor=admin.actor)
    session.commit()
    _after_change()
    return JSONResponse(channel_out(session, channel, now))
