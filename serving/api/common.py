"""Bits the routers share: list pages (api.md), money and time inputs, idempotent POSTs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from serving.errors import ApiError
from serving.jsonfast import FastJSONResponse
from serving.services.idempotency import IdempotentResult, request_fingerprint, run_idempotent

_PLAIN_NUMBER = re.compile(r"[1-9][0-9]{0,2}")


def _plain_number(value: Any) -> Any:
    """A page size is written plainly: "20", not "20.0", "+20", "020" or " 20" (lax integer
    parsing took those; api.md's lists take 1-100 and anything else is a 422 naming limit)."""
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(value):
        raise ValueError("limit must be a whole number from 1 to 100, digits only")
    return value


Limit = Annotated[int, BeforeValidator(_plain_number),
                  Query(ge=1, le=100, description="page size (default 20, at most 100)")]
StartingAfter = Annotated[str | None, Query(description="cursor: the last id of the previous page")]


def after_cursor(session: Session, query: Select, id_column, starting_after: Any, *,
                 descending: bool = True, shown: str | None = None) -> Select:
    """`query` continued after the object `starting_after` names (api.md lists). The cursor
    must name an object of this very list - the caller's own, under the same filters: an id that
    names nothing, or another tenant's object, is a 404 (not a page chosen by comparing id
    strings, which answered the whole list or nothing and paged from another tenant's object)."""
    if starting_after is None or starting_after == "":
        return query
    listed = query.where(id_column == starting_after).order_by(None).limit(None)
    if not session.scalar(select(listed.exists())):
        raise ApiError(404, "resource_missing",
                       f"starting_after: no object with id {shown or starting_after!r} in this list",
                       {"field": "starting_after", "id": shown or starting_after})
    return query.where(id_column < starting_after if descending else id_column > starting_after)


def page(session: Session, query: Select, id_column, *, limit: int, starting_after: Any,
         out: Callable[[Any], dict]) -> dict:
    """Newest first (ids sort by creation time); `starting_after` continues after that id."""
    query = after_cursor(session, query, id_column, starting_after)
    query = query.order_by(id_column.desc()).limit(limit + 1)
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
