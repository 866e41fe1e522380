"""FastAPI dependencies: settings, database sessions, the caller, the business clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from serving.auth import Principal, authenticate, cached_principal
from serving.errors import ApiError
from warehouse.connections import read_only
from warehouse.settings import DEV_ENVIRONMENTS, Settings


# Cheap dependencies are async: FastAPI runs sync ones in the thread pool, a hop each.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """A session for reads (on SQLite it does not take the write lock)."""
    with Session(read_only(engine), expire_on_commit=False) as session:
        yield session


def get_write_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]


def _authenticate(settings: Settings, engine: Engine, authorization: str | None) -> Principal:
    # A short read-only session of its own: the auth lookup must not hold the write lock
    # that money-moving handlers take themselves.
    with Session(read_only(engine)) as session:
        return authenticate(session, settings, authorization)


async def get_principal(settings: SettingsDep, engine: EngineDep,
                        authorization: Annotated[str | None, Header()] = None) -> Principal:
    principal = cached_principal(engine, authorization)
    if principal is not None:
        return principal
    return await run_in_threadpool(_authenticate, settings, engine, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_merchant(principal: PrincipalDep) -> Principal:
    _ = principal.merchant  # a credential of no merchant: 403 merchant_credential_required
    return principal


async def require_operator(principal: PrincipalDep) -> Principal:
    if principal.role != "platform_admin":
        raise ApiError(403, "forbidden", "this endpoint needs a platform_admin token")
    return principal


MerchantDep = Annotated[Principal, Depends(require_merchant)]
AdminDep = Annotated[Principal, Depends(require_operator)]


def require_roles(*roles: str):
    """A dependency that admits only these roles: 403 for any other valid credential."""

    async def _check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, "forbidden", f"this needs the role {' or '.join(roles)}",
                           {"required_roles": list(roles), "role": principal.role})
        return principal

    return _check


OperatorDep = Annotated[Principal, Depends(require_roles("platform_admin", "finance"))]


async def business_time(settings: SettingsDep,
                  clearhouse_test_clock: Annotated[str | None, Header()] = None) -> datetime:
    """Now, or (development and test only) the time a Clearhouse-Test-Clock header sets.

    Like Stripe's test clocks, it lets the simulator replay a business day; updated_at (the
    extract cursor) always stays on the wall clock.
    """
    if clearhouse_test_clock is None:
        return datetime.now(UTC)
    if settings.environment not in DEV_ENVIRONMENTS:
        raise ApiError(400, "test_clock_not_allowed", "Clearhouse-Test-Clock works only in development")
    try:
        value = datetime.fromisoformat(clearhouse_test_clock.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_test_clock", "Clearhouse-Test-Clock must be ISO 8601",
                       {"field": "Clearhouse-Test-Clock"}) from None
    if value.tzinfo is None:
        raise ApiError(422, "invalid_test_clock", "Clearhouse-Test-Clock needs a UTC offset or Z",
                       {"field": "Clearhouse-Test-Clock"})
    return value.astimezone(UTC)


NowDep = Annotated[datetime, Depends(business_time)]
