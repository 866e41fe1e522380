"""/api/v1/merchants: register (platform_admin), list and read (by tenant), update settings,
rotate the webhook signing secret.

Who may do what:
- list / get: operators every merchant, an agent its subtree's merchants, a merchant key itself;
- PATCH: platform_admin any field; a merchant_admin only its own callback_url;
- POST /merchants/{id}/webhook-secret: platform_admin, or the merchant's merchant_admin.
Another tenant's merchant is a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlparse

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from serving import tenancy
from serving.api.common import Limit, StartingAfter, page
from serving.auth import Principal
from serving.deps import AdminDep, NowDep, PrincipalDep, SessionDep, WriteSessionDep
from serving.errors import ApiError, not_found
from serving.schemas import CurrencyCode, MerchantCreate, MerchantOut, Timestamp
from serving.services.admin import audit_merchant_created, create_merchant
from serving.services.merchants import rotate_webhook_secret, update_merchant
from warehouse.models import Merchant

router = APIRouter(tags=["merchants"])


class MerchantDetail(MerchantOut):
    settlement_delay_days: int
    kyc_tier: int
    callback_url: str | None
    webhook_secret_set: bool = Field(description="the secret itself is shown only on rotation")
    updated_at: Timestamp


class MerchantDetailCreated(MerchantDetail):
    api_key: str = Field(description="shown once; only its hash is stored")


class MerchantList(BaseModel):
    data: list[MerchantDetail]
    has_more: bool


def _callback_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlparse(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PydanticCustomError("invalid_url", "callback_url must be an http(s) URL",
                                  {"code": "invalid_callback_url"})
    return value


class MerchantUpdate(BaseModel):
    """Only the fields sent change; callback_url: null removes the endpoint."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "suspended", "closed"] | None = None
    kyc_tier: int | None = Field(default=None, ge=0, le=3)
    settlement_currency: CurrencyCode | None = None
    settlement_cycle: Literal["daily", "weekly", "monthly"] | None = None
    settlement_delay_days: int | None = Field(default=None, ge=0, le=30)
    callback_url: Annotated[str | None, AfterValidator(_callback_url)] = Field(
        default=None, max_length=500)


class WebhookSecretOut(BaseModel):
    merchant_id: str
    object: Literal["webhook_secret"] = "webhook_secret"
    webhook_secret: str = Field(description="whsec_...; shown once")


def merchant_out(merchant: Merchant) -> dict:
    return MerchantDetail(
        id=merchant.id, name=merchant.name, status=merchant.status, agent_id=merchant.agent_id,
        settlement_currency=merchant.settlement_currency,
        settlement_cycle=merchant.settlement_cycle,
        settlement_delay_days=merchant.settlement_delay_days, kyc_tier=merchant.kyc_tier,
        callback_url=merchant.callback_url,
        webhook_secret_set=merchant.webhook_secret is not None,
        created_at=merchant.created_at, updated_at=merchant.updated_at,
    ).model_dump(mode="json")


def _visible(session, principal: Principal, merchant_id: str, now, *, lock: bool = False
             ) -> Merchant:
    if not tenancy.can_see_merchant(session, principal, merchant_id, now):
        raise not_found("merchant", merchant_id)
    merchant = session.get(Merchant, merchant_id, with_for_update=lock or None)
    if merchant is None:
        raise not_found("merchant", merchant_id)
    return merchant


@router.post("/merchants", status_code=201, response_model=MerchantDetailCreated)
def register_merchant(body: MerchantCreate, admin: AdminDep, session: WriteSessionDep):
    merchant, api_key = create_merchant(session, body)
    audit_merchant_created(session, merchant, actor=admin.actor)
    session.commit()
    return JSONResponse({**merchant_out(merchant), "api_key": api_key}, status_code=201)


@router.get("/merchants", response_model=MerchantList)
def list_merchants(principal: PrincipalDep, session: SessionDep, now: NowDep,
                   limit: Limit = 20, starting_after: StartingAfter = None,
                   agent_id: Annotated[str | None, Query(description="direct agent")] = None,
                   status: Annotated[Literal["active", "suspended", "closed"] | None,
                                     Query()] = None):
    query = select(Merchant).where(tenancy.merchant_filter(session, principal, Merchant.id, now))
    if agent_id is not None:
        query = query.where(Merchant.agent_id == agent_id)
    if status is not None:
        query = query.where(Merchant.status == status)
    return JSONResponse(page(session, query, Merchant.id, limit=limit,
                             starting_after=starting_after, out=merchant_out))


@router.get("/merchants/{merchant_id}", response_model=MerchantDetail)
def get_merchant(merchant_id: str, principal: PrincipalDep, session: SessionDep, now: NowDep):
    return JSONResponse(merchant_out(_visible(session, principal, merchant_id, now)))


@router.patch("/merchants/{merchant_id}", response_model=MerchantDetail)
def patch_merchant(merchant_id: str, body: MerchantUpdate, principal: PrincipalDep,
                   session: WriteSessionDep, now: NowDep):
    if principal.role not in ("platform_admin", "merchant_admin"):
        raise ApiError(403, "forbidden", "merchant settings need platform_admin or merchant_admin",
                       {"role": principal.role})
    merchant = _visible(session, principal, merchant_id, now, lock=True)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name, value in changes.items():
        if value is None and name != "callback_url":
            raise ApiError(422, "validation_error", f"{name}: must not be null", {"field": name})
    if principal.role == "merchant_admin" and set(changes) - {"callback_url"}:
        raise ApiError(403, "forbidden", "a merchant_admin may change only callback_url",
                       {"fields": sorted(set(changes) - {"callback_url"})})
    update_merchant(session, merchant=merchant, changes=changes, actor=principal.actor)
    session.commit()
    return JSONResponse(merchant_out(merchant))


@router.post("/merchants/{merchant_id}/webhook-secret", response_model=WebhookSecretOut)
def new_webhook_secret(merchant_id: str, principal: PrincipalDep, session: WriteSessionDep,
                       now: NowDep):
    if principal.role not in ("platform_admin", "merchant_admin"):
        raise ApiError(403, "forbidden", "rotating the webhook secret needs platform_admin or "
                       "merchant_admin", {"role": principal.role})
    merchant = _visible(session, principal, merchant_id, now, lock=True)
    secret = rotate_webhook_secret(session, merchant=merchant, actor=principal.actor)
    session.commit()
    return JSONResponse(WebhookSecretOut(merchant_id=merchant.id, webhook_secret=secret)
                        .model_dump(mode="json"))
