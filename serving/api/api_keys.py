"""/api/v1/api-keys: merchants' and agents' API keys. Never returns a key after its creation.

- platform_admin: every key; creates keys for any merchant or agent;
- merchant_admin: its merchant's keys (roles merchant_admin, merchant_developer);
- agent: its own keys (role agent);
- finance: reads every key, writes nothing;
- merchant_developer: nothing (403).
Another tenant's key is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import false, select, true

from serving.api.common import Limit, StartingAfter, page
from serving.auth import Principal
from serving.deps import SessionDep, WriteSessionDep, require_roles
from serving.errors import ApiError, not_found
from serving.schemas import Timestamp
from serving.services import api_keys as service
from warehouse.models import Agent, ApiKey, Merchant

router = APIRouter(tags=["api keys"])
ManagerDep = Annotated[Principal, Depends(require_roles("platform_admin", "merchant_admin",
                                                        "agent"))]
ReaderDep = Annotated[Principal, Depends(require_roles("platform_admin", "finance",
                                                       "merchant_admin", "agent"))]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merchant_id: str | None = Field(default=None, description="default: the caller's merchant")
    agent_id: str | None = Field(default=None, description="platform_admin: an agent's key")
    role: Literal["merchant_admin", "merchant_developer", "agent"] | None = Field(
        default=None, description="default: merchant_admin for a merchant, agent for an agent")
    name: str | None = Field(default=None, max_length=100)
    expires_at: AwareDatetime | None = None


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: int = Field(default=0, ge=0, le=service.MAX_GRACE_SECONDS,
                               description="0: the old key stops now; else it works this long")


class ApiKeyOut(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    merchant_id: str | None
    agent_id: str | None
    role: str
    name: str | None
    prefix: str = Field(description="the key's first characters, to recognise it")
    status: service.KeyStatus
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    created_at: Timestamp


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="sk_test_...; shown once, only its hash is stored")


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]
    has_more: bool


def key_out(key: ApiKey) -> dict:
    return ApiKeyOut(id=key.id, merchant_id=key.merchant_id, agent_id=key.agent_id,
                     role=key.role, name=key.name, prefix=key.key_prefix,
                     status=service.key_status(key), expires_at=key.expires_at,
                     revoked_at=key.revoked_at, created_at=key.created_at
                     ).model_dump(mode="json")


def _mine(principal: Principal):
    if principal.is_operator:
        return true()
    if principal.role == "merchant_admin":
        return ApiKey.merchant_id == principal.merchant_id
    if principal.role == "agent":
        return ApiKey.agent_id == principal.agent_id
    return false()


def _load(session, principal: Principal, key_id: str, *, lock: bool = False) -> ApiKey:
    query = select(ApiKey).where(ApiKey.id == key_id, _mine(principal))
    key = session.scalars(query.with_for_update() if lock else query).first()
    if key is None:
        raise not_found("api_key", key_id)
    return key


def _owner_for(session, principal: Principal, body: ApiKeyCreate) -> tuple[str | None, str | None]:
    if principal.role == "platform_admin":
        if (body.merchant_id is None) == (body.agent_id is None):
            raise ApiError(422, "validation_error", "give exactly one of merchant_id, agent_id",
                           {"field": "merchant_id"})
        if body.merchant_id is not None and session.get(Merchant, body.merchant_id) is None:
            raise ApiError(422, "unknown_merchant", f"no merchant {body.merchant_id!r}",
                           {"field": "merchant_id"})
        if body.agent_id is not None and session.get(Agent, body.agent_id) is None:
            raise ApiError(422, "unknown_agent", f"no agent {body.agent_id!r}",
                           {"field": "agent_id"})
        return body.merchant_id, body.agent_id
    # merchant_admin and agent: only for themselves; anyone else's id is another tenant's (404)
    if principal.role == "merchant_admin":
        if body.agent_id is not None:
            raise not_found("agent", body.agent_id)
        if body.merchant_id is not None and body.merchant_id != principal.merchant_id:
            raise not_found("merchant", body.merchant_id)
        return principal.merchant_id, None
    if body.merchant_id is not None:
        raise not_found("merchant", body.merchant_id)
    if body.agent_id is not None and body.agent_id != principal.agent_id:
        raise not_found("agent", body.agent_id)
    return None, principal.agent_id


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_key(principal: ManagerDep, session: WriteSessionDep, body: ApiKeyCreate | None = None):
    body = body or ApiKeyCreate()
    merchant_id, agent_id = _owner_for(session, principal, body)
    allowed = ("merchant_admin", "merchant_developer") if merchant_id else ("agent",)
    role = body.role or allowed[0]
    if role not in allowed:
        raise ApiError(422, "invalid_role", f"a {'merchant' if merchant_id else 'agent'}'s key "
                       f"takes role {' or '.join(allowed)}", {"field": "role"})
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise ApiError(422, "validation_error", "expires_at must be in the future",
                       {"field": "expires_at"})
    row, secret = service.create_key(session, merchant_id=merchant_id, agent_id=agent_id,
                                     role=role, name=body.name, expires_at=body.expires_at,
                                     actor=principal.actor)
    session.commit()
    return JSONResponse({**key_out(row), "key": secret}, status_code=201)


@router.get("/api-keys", response_model=ApiKeyList)
def list_keys(principal: ReaderDep, session: SessionDep, limit: Limit = 20,
              starting_after: StartingAfter = None, merchant_id: str | None = None,
              agent_id: str | None = None):
    query = select(ApiKey).where(_mine(principal))
    if merchant_id is not None:
        query = query.where(ApiKey.merchant_id == merchant_id)
    if agent_id is not None:
        query = query.where(ApiKey.agent_id == agent_id)
    return JSONResponse(page(session, query, ApiKey.id, limit=limit,
                             starting_after=starting_after, out=key_out))


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut)
def get_key(key_id: str, principal: ReaderDep, session: SessionDep):
    return JSONResponse(key_out(_load(session, principal, key_id)))


@router.post("/api-keys/{key_id}/rotate", status_code=201, response_model=ApiKeyCreated)
def rotate_key(key_id: str, principal: ManagerDep, session: WriteSessionDep,
               body: ApiKeyRotate | None = None):
    key = _load(session, principal, key_id, lock=True)
    row, secret = service.rotate_key(session, key=key, grace_seconds=(body or ApiKeyRotate())
                                     .grace_seconds, actor=principal.actor)
    session.commit()
    return JSONResponse({**key_out(row), "key": secret}, status_code=201)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: str, principal: ManagerDep, session: WriteSessionDep):
    key = _load(session, principal, key_id, lock=True)
    service.revoke_key(session, key=key, actor=principal.actor)
    session.commit()
    return JSONResponse(key_out(key))

