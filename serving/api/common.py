"""Bits the admin routers share: list pages (api.md), money and time inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError
from sqlalchemy import Select
from sqlalchemy.orm import Session

from serving.schemas import _minor

Limit = Annotated[int, Query(ge=1, le=100, description="page size (default 20, at most 100)")]
StartingAfter = Annotated[str | None, Query(description="cursor: the last id of the previous page")]


def _not_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError("invalid_amount", "must not be negative",
                                  {"code": "amount_negative"})
    return value


# Input: an int or a digit string (floats and decimal strings are 422); output: a string.
NonNegativeMinor = Annotated[int, BeforeValidator(_minor), AfterValidator(_not_negative),
                             PlainSerializer(str, return_type=str)]


def page(session: Session, query: Select, id_column, *, limit: int, starting_after: Any,
         out: Callable[[Any], dict]) -> dict:
    """Newest first (ids sort by creation time); `starting_after` continues after that id."""
    query = query.order_by(id_column.desc()).limit(limit + 1)
    if starting_after is not None:
        query = query.where(id_column < starting_after)
    rows = session.scalars(query).all()
    return {"data": [out(row) for row in rows[:limit]], "has_more": len(rows) > limit}
