"""Bits the routers share: list pages (api.md), money and time inputs, idempotent POSTs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from serving.jsonfast import FastJSONResponse
from serving.services.idempotency import IdempotentResult, request_fingerprint, run_idempotent

Limit = Annotated[int, Query(ge=1, le=100, description="page size (default 20, at most 100)")]
StartingAfter = Annotated[str | None, Query(description="cursor: the last id of the previous page")]


def page(session: Session, query: Select, id_column, *, limit: int, starting_after: Any,
         out: Callable[[Any], dict]) -> dict:
    """Newest first (ids sort by creation time); `starting_after` continues after that id."""
    query = query.order_by(id_column.desc()).limit(limit + 1)
    if starting_after is not None:
        query = query.where(id_column < starting_after)
    rows = session.scalars(query).all()
    return {"data": [out(row) for row in rows[:limit]], "has_more": len(rows) > limit}


IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="optional: the same key and body replay the first response; without a key a "
                "retry is a new request")]


def caller_scope(principal) -> str:
    """Whose Idempotency-Keys these are: a merchant's, an agent's or an operator user's."""
    return principal.merchant_id or principal.agent_id or principal.user_id or principal.role


async def call_idempotent(engine, *, scope: str, key: str, path: str, params: BaseModel | dict,
                          work: Callable[[Session], tuple[int, dict]]) -> IdempotentResult:
    """Run a money-moving POST's work under its (already checked) Idempotency-Key, off the event
    loop; `scope` is whose keys these are (a merchant, an agent, an operator), `params` the
    validated request body the key is bound to."""
    return await run_in_threadpool(run_idempotent, engine, merchant_id=scope, key=key, path=path,
                                   fingerprint=request_fingerprint(path, params), work=work)


def idempotent_response(result: IdempotentResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return FastJSONResponse(result.body, status_code=result.status, headers=headers)
