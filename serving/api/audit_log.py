"""/api/v1/audit-log: the hash-chained record of administrative changes (platform_admin,
finance). Newest first; `GET /audit-log/verify` walks the whole chain."""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from serving.api.common import Limit, StartingAfter, after_cursor
from serving.deps import OperatorDep, SessionDep
from serving.errors import ApiError
from serving.schemas import Timestamp
from warehouse import audit
from warehouse.models import AuditLogEntry

router = APIRouter(tags=["audit log"])
ID_PREFIX = "aud_"


class AuditEntryOut(BaseModel):
    id: str = Field(description="aud_<sequence>")
    object: Literal["audit_entry"] = "audit_entry"
    at: Timestamp
    actor: str
    action: str
    resource_type: str
    resource_id: str
    details: dict
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    data: list[AuditEntryOut]
    has_more: bool


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    first_bad_id: str | None
    reason: str | None
    head: str


def entry_out(entry: AuditLogEntry) -> dict:
    return AuditEntryOut(id=f"{ID_PREFIX}{entry.id}", at=entry.at, actor=entry.actor,
                         action=entry.action, resource_type=entry.resource_type,
                         resource_id=entry.resource_id, details=json.loads(entry.details),
                         prev_hash=entry.prev_hash, hash=entry.hash).model_dump(mode="json")


def _sequence(value: str) -> int:
    digits = value.removeprefix(ID_PREFIX)
    if not digits.isdigit() or len(digits) > 18:  # ids are BIGINTs
        # like every list's cursor that names nothing in it (serving.api.common.after_cursor)
        raise ApiError(404, "resource_missing",
                       f"starting_after: no object with id {value!r} in this list",
                       {"field": "starting_after", "id": value})
    return int(digits)


@router.get("/audit-log", response_model=AuditList)
def list_audit_log(_reader: OperatorDep, session: SessionDep, limit: Limit = 20,
                   starting_after: StartingAfter = None, resource_type: str | None = None,
                   resource_id: str | None = None, action: str | None = None,
                   actor: str | None = None):
    query = select(AuditLogEntry).order_by(AuditLogEntry.id.desc()).limit(limit + 1)
    for column, value in ((AuditLogEntry.resource_type, resource_type),
                          (AuditLogEntry.resource_id, resource_id),
                          (AuditLogEntry.action, action), (AuditLogEntry.actor, actor)):
        if value is not None:
            query = query.where(column == value)
    if starting_after is not None:
        query = after_cursor(session, query, AuditLogEntry.id, _sequence(starting_after),
                             shown=starting_after)
    rows = session.scalars(query).all()
    return JSONResponse({"data": [entry_out(e) for e in rows[:limit]],
                         "has_more": len(rows) > limit})


@router.get("/audit-log/verify", response_model=AuditVerifyOut)
def verify_audit_log(_reader: OperatorDep, session: SessionDep):
    result = audit.verify(session)
    return JSONResponse(AuditVerifyOut(
        ok=result.ok, entries=result.entries, reason=result.reason, head=result.head,
        first_bad_id=None if result.first_bad_id is None else f"{ID_PREFIX}{result.first_bad_id}",
    ).model_dump(mode="json"))
