"""Channel administration: the channel, the currencies it takes (per-payment bounds, daily
limit) and its cost price (prices rows with subject 'channel', effective-dated)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.services import audit
from serving.services.prices import set_price
from warehouse.ids import new_id
from warehouse.models import Channel, ChannelCurrency

CALLBACK_SECRET_PREFIX = "chsec_"
LIMIT_FIELDS = ("min_amount_minor", "max_amount_minor", "daily_limit_minor")


def _limits(row: ChannelCurrency) -> dict[str, str | None]:
    """The limits as the audit log keeps them: amounts with their currency (api.md)."""
    return {"currency": row.currency,
            **{f: None if getattr(row, f) is None else str(getattr(row, f)) for f in LIMIT_FIELDS}}


def _check_name(session: Session, name: str, channel_id: str | None = None) -> None:
    other = session.scalars(select(Channel.id).where(Channel.name == name)).first()
    if other is not None and other != channel_id:
        raise ApiError(409, "channel_name_taken", f"channel {other} is already called {name!r}",
                       {"field": "name"})


def set_currencies(session: Session, channel: Channel, currencies: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """Make the channel take exactly these currencies (upsert, and drop the others)."""
    existing = {row.currency: row for row in session.scalars(
        select(ChannelCurrency).where(ChannelCurrency.channel_id == channel.id))}
    wanted = {c["currency"]: c for c in currencies}
    diff: dict[str, Any] = {}
    for code, old in existing.items():
        if code not in wanted:
            diff[code] = {"from": _limits(old), "to": None}
            session.delete(old)
    for code, spec in wanted.items():
        row = existing.get(code)
        before = _limits(row) if row is not None else None
        if row is None:
            row = ChannelCurrency(channel_id=channel.id, currency=code)
            session.add(row)
        for field in LIMIT_FIELDS:
            setattr(row, field, spec.get(field))
        if before != _limits(row):
            diff[code] = {"from": before, "to": _limits(row)}
    return diff


def _write_price(session: Session, channel: Channel, codes: list[str], price: dict[str, Any],
                 valid_from: datetime, actor: str) -> None:
    fixed = price.get("fixed_minor") or {}
    unknown = sorted(set(fixed) - set(codes))
    if unknown:
        raise ApiError(422, "currency_not_taken",
                       f"fixed_minor given for currencies the channel does not take: {unknown}",
                       {"field": "price.fixed_minor"})
    for code in codes:
        set_price(session, subject_type="channel", subject_id=channel.id, currency=code,
                  rate_bps=price["rate_bps"], fixed_minor=fixed.get(code),
                  valid_from=valid_from, actor=actor)


def create_channel(session: Session, *, name: str, channel_type: str, status: str,
                   priority: int, settlement_window_days: int, currencies: list[dict[str, Any]],
                   price: dict[str, Any] | None, valid_from: datetime, actor: str
                   ) -> tuple[Channel, str]:
    """Returns the channel and its callback secret (shown once; the channel signs with it)."""
    _check_name(session, name)
    secret = CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(24)
    channel = Channel(id=new_id("channel"), name=name, channel_type=channel_type, status=status,
                      priority=priority, settlement_window_days=settlement_window_days,
                      callback_secret=secret)
    session.add(channel)
    session.flush()
    set_currencies(session, channel, currencies)
    audit.record(session, actor=actor, action="channel.created", resource_type="channel",
                 resource_id=channel.id,
                 details={"name": name, "type": channel_type, "status": status,
                          "priority": priority, "settlement_window_days": settlement_window_days,
                          "currencies": sorted(c["currency"] for c in currencies)})
    if price is not None:
        _write_price(session, channel, [c["currency"] for c in currencies], price, valid_from,
                     actor)
    return channel, secret


def update_channel(session: Session, *, channel: Channel, changes: dict[str, Any],
                   currencies: list[dict[str, Any]] | None, price: dict[str, Any] | None,
                   valid_from: datetime, actor: str) -> dict[str, Any]:
    if "name" in changes:
        _check_name(session, changes["name"], channel.id)
    diff: dict[str, Any] = {}
    for field, value in changes.items():
        old = getattr(channel, field)
        if old != value:
            setattr(channel, field, value)
            diff[field] = {"from": old, "to": value}
    if currencies is not None:
        currency_diff = set_currencies(session, channel, currencies)
        if currency_diff:
            diff["currencies"] = currency_diff
    if diff:
        audit.record(session, actor=actor, action="channel.updated", resource_type="channel",
                     resource_id=channel.id, details={"changes": diff})
    if price is not None:
        session.flush()
        codes = sorted(session.scalars(select(ChannelCurrency.currency)
                                       .where(ChannelCurrency.channel_id == channel.id)))
        _write_price(session, channel, codes, price, valid_from, actor)
    return diff
