"""API keys for merchants and agents: create, rotate (with an optional grace period), revoke.

The key itself is returned once; only its SHA-256 and a short prefix are stored. Rotation
issues a new key with the same owner, role and name, and ends the old one at once (revoked_at)
or after grace_seconds (expires_at). Key lifetimes use the wall clock, never the test clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from serving.auth import new_api_key
from serving.errors import ApiError
from serving.services import audit
from warehouse.models import ApiKey

MAX_GRACE_SECONDS = 7 * 24 * 3600


KeyStatus = Literal["active", "expiring", "expired", "revoked"]


def key_status(key: ApiKey, now: datetime | None = None) -> KeyStatus:
    now = now or datetime.now(UTC)
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None:
        return "expired" if key.expires_at <= now else "expiring"
    return "active"


def _owner(key: ApiKey) -> dict:
    if key.merchant_id is not None:
        return {"owner_type": "merchant", "owner_id": key.merchant_id}
    return {"owner_type": "agent", "owner_id": key.agent_id}


def create_key(session: Session, *, merchant_id: str | None, agent_id: str | None, role: str,
               name: str | None, expires_at: datetime | None, actor: str) -> tuple[ApiKey, str]:
    row, secret = new_api_key(session, merchant_id=merchant_id, agent_id=agent_id, role=role,
                              name=name, expires_at=expires_at)
    audit.record(session, actor=actor, action="api_key.created", resource_type="api_key",
                 resource_id=row.id,
                 details={**_owner(row), "role": role, "name": name,
                          "key_prefix": row.key_prefix, "expires_at": expires_at})
    return row, secret


def rotate_key(session: Session, *, key: ApiKey, grace_seconds: int, actor: str
               ) -> tuple[ApiKey, str]:
    now = datetime.now(UTC)
    if key_status(key, now) in ("revoked", "expired"):
        raise ApiError(409, "api_key_inactive", f"key {key.id} is {key_status(key, now)}; "
                       "create a new key instead")
    row, secret = new_api_key(session, merchant_id=key.merchant_id, agent_id=key.agent_id,
                              role=key.role, name=key.name)
    if grace_seconds == 0:
        key.revoked_at = now
    else:
        end = now + timedelta(seconds=grace_seconds)
        key.expires_at = min(key.expires_at, end) if key.expires_at else end
    session.flush()
    audit.record(session, actor=actor, action="api_key.rotated", resource_type="api_key",
                 resource_id=key.id,
                 details={**_owner(key), "new_key_id": row.id, "new_key_prefix": row.key_prefix,
                          "grace_seconds": grace_seconds, "old_key_ends_at": key.revoked_at
                          or key.expires_at})
    return row, secret


def revoke_key(session: Session, *, key: ApiKey, actor: str) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        audit.record(session, actor=actor, action="api_key.revoked", resource_type="api_key",
                     resource_id=key.id, details={**_owner(key), "key_prefix": key.key_prefix})
    return key
