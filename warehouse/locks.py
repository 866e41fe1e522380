"""Transaction-scoped advisory locks: serialize a class of writes on Postgres.

SQLite needs none: writing transactions open with BEGIN IMMEDIATE (warehouse.connections), so
writers are serialized already. On Postgres `pg_advisory_xact_lock` is held until the
transaction commits or rolls back.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def advisory_xact_lock(session: Session, name: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
