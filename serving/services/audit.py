"""The audit log as services use it: warehouse.audit.record, with a chain conflict as a clean 409."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from serving.errors import ApiError
from warehouse import audit
from warehouse.models import AuditLogEntry


def record(session: Session, *, actor: str, action: str, resource_type: str, resource_id: str,
           details: dict | None = None, at: datetime | None = None) -> AuditLogEntry:
    try:
        return audit.record(session, actor=actor, action=action, resource_type=resource_type,
                            resource_id=resource_id, details=details, at=at)
    except audit.AuditConflict:
        raise ApiError(409, "concurrent_update",
                       "another change was recorded at the same moment; retry the request") from None
