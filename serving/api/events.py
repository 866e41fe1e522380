"""/api/v1/events and /api/v1/webhook-deliveries: a merchant's events, their webhook deliveries,
and redelivery on demand. Another merchant's event is a 404 (api.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import webhooks
from serving.api.common import Limit, after_cursor
from serving.auth import Principal
from serving.deps import PrincipalDep, SessionDep, WriteSessionDep
from serving.errors import ApiError, not_found
from warehouse.models import OutboxEvent, WebhookDelivery

router = APIRouter(tags=["events"])
REDELIVER_ROLES = ("merchant_admin", "platform_admin")


class EventOut(BaseModel):
    id: str
    type: str
    created_at: str
    data: dict[str, Any]


class EventList(BaseModel):
    data: list[EventOut]
    has_more: bool


class WebhookDeliveryOut(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str
    merchant_id: str
    url: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryOut]
    has_more: bool


def _visible_event(session: Session, principal: Principal, event_id: str
                   ) -> tuple[OutboxEvent, str | None]:
    row = session.execute(webhooks.select_events().where(OutboxEvent.id == event_id)).first()
    if row is None:
        raise not_found("event", event_id)
    event, merchant_id = row
    if not principal.is_operator and (merchant_id is None
                                      or not principal.can_see_merchant(merchant_id)):
        raise not_found("event", event_id)  # 404, not 403: existence must not leak
    return event, merchant_id


@router.get("/events", response_model=EventList)
def list_events(principal: PrincipalDep, session: SessionDep, limit: Limit = 20,
                starting_after: str | None = None,
                type: Annotated[str | None, Query(description="e.g. payment.succeeded")] = None):
    query = webhooks.select_events().order_by(OutboxEvent.id.desc()).limit(limit + 1)
    if not principal.is_operator:
        if principal.merchant_id is None:
            return JSONResponse({"data": [], "has_more": False})
        query = query.where(webhooks.event_merchant_id() == principal.merchant_id)
    if type:
        query = query.where(OutboxEvent.event_type == type)
    query = after_cursor(session, query, OutboxEvent.id, starting_after)
    rows = session.execute(query).all()
    return JSONResponse({"data": [webhooks.event_out(event) for event, _ in rows[:limit]],
                         "has_more": len(rows) > limit})


@router.get("/events/{event_id}", response_model=EventOut)
def get_event(event_id: str, principal: PrincipalDep, session: SessionDep):
    event, _ = _visible_event(session, principal, event_id)
    return JSONResponse(webhooks.event_out(event))


@router.post("/events/{event_id}/redeliver", status_code=202, response_model=WebhookDeliveryOut,
             responses={409: {"description": "no_callback_url: the merchant has no webhook URL"}})
def redeliver_event(event_id: str, principal: PrincipalDep, session: WriteSessionDep):
    """Schedule a new delivery of the event to the merchant's current callback_url, due now."""
    if principal.role not in REDELIVER_ROLES:  # first: a 403 never says whether it exists
        raise ApiError(403, "forbidden", "redelivery needs a merchant_admin key or a "
                                         "platform_admin token")
    event, merchant_id = _visible_event(session, principal, event_id)
    if merchant_id is None:
        raise ApiError(409, "event_has_no_merchant", f"event {event_id} belongs to no merchant")
    delivery = webhooks.redeliver(session, event=event, merchant_id=merchant_id,
                                  now=datetime.now(UTC))  # scheduling runs on the wall clock
    if delivery is None:
        raise ApiError(409, "no_callback_url", f"merchant {merchant_id} has no callback_url",
                       {"merchant_id": merchant_id})
    session.commit()
    return JSONResponse(webhooks.delivery_out(delivery), status_code=202)


@router.get("/webhook-deliveries", response_model=WebhookDeliveryList)
def list_webhook_deliveries(principal: PrincipalDep, session: SessionDep, limit: Limit = 20,
                            starting_after: str | None = None, event_id: str | None = None):
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if event_id is not None:
        _visible_event(session, principal, event_id)
        query = query.where(WebhookDelivery.event_id == event_id)
    if not principal.is_operator:
        if principal.merchant_id is None:
            return JSONResponse({"data": [], "has_more": False})
        query = query.where(WebhookDelivery.merchant_id == principal.merchant_id)
    query = after_cursor(session, query, WebhookDelivery.id, starting_after)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [webhooks.delivery_out(d) for d in rows[:limit]],
                         "has_more": len(rows) > limit})
