"""The audit log: an append-only, hash-chained record of every administrative change.

Each entry's hash = sha256(prev_hash + canonical JSON of (at, actor, action, resource_type,
resource_id, details)); the first entry's prev_hash is 64 zeros. `prev_hash` is UNIQUE, so two
appends that read the same head cannot both commit (the chain cannot fork). On Postgres the
writer takes a transaction-scoped advisory lock before reading the head, so concurrent appends
queue instead of failing; SQLite writers are serialized by BEGIN IMMEDIATE.

An entry is written in the same transaction as the change it records. Secrets (API keys, webhook
and callback secrets, tokens) never go into `details`: `record` refuses such keys.

`verify` walks the chain in id order and reports the first entry whose link or hash is wrong:
an edited field, a deleted entry and a reordered chain all break it. Deleting the newest entries
(truncating the tail) leaves a valid shorter chain; pass the head hash you anchored elsewhere as
`expected_head` to detect that too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warehouse.locks import advisory_xact_lock
from warehouse.models import AuditLogEntry

GENESIS_HASH = "0" * 64
LOCK_NAME = "clearhouse.audit_log"
SECRET_KEYS = frozenset({"api_key", "key", "key_hash", "secret", "webhook_secret",
                         "callback_secret", "token", "password"})


class AuditConflict(Exception):
    """Another append took the same head concurrently (only possible without the lock)."""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"audit details must be JSON values, got {type(value).__name__}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def entry_hash(prev_hash: str, *, at: datetime, actor: str, action: str, resource_type: str,
               resource_id: str, details: Any) -> str:
    body = canonical_json({"at": _iso(at), "actor": actor, "action": action,
                           "resource_type": resource_type, "resource_id": resource_id,
                           "details": details})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _check_no_secrets(value: Any, path: str = "details") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower() in SECRET_KEYS:
                raise ValueError(f"{path}.{key}: secrets must never be written to the audit log")
            _check_no_secrets(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_no_secrets(item, f"{path}[{i}]")


def head(session: Session) -> str:
    last = session.scalar(select(AuditLogEntry.hash).order_by(AuditLogEntry.id.desc()).limit(1))
    return last or GENESIS_HASH


def record(session: Session, *, actor: str, action: str, resource_type: str, resource_id: str,
           details: dict | None = None, at: datetime | None = None) -> AuditLogEntry:
    """Append an entry in the caller's transaction (the caller commits with its change)."""
    details = json.loads(canonical_json(details or {}))  # normalise (datetimes -> ISO strings)
    _check_no_secrets(details)
    at = (at or datetime.now(UTC)).astimezone(UTC)
    session.flush()  # the change itself first: its own integrity errors are not ours
    advisory_xact_lock(session, LOCK_NAME)
    prev = head(session)
    entry = AuditLogEntry(at=at, actor=actor, action=action, resource_type=resource_type,
                          resource_id=resource_id, details=canonical_json(details),
                          prev_hash=prev,
                          hash=entry_hash(prev, at=at, actor=actor, action=action,
                                          resource_type=resource_type, resource_id=resource_id,
                                          details=details))
    session.add(entry)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AuditConflict("the audit chain moved under this append; retry") from exc
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    reason: str | None = None
    head: str = GENESIS_HASH


def verify(session: Session, *, expected_head: str | None = None) -> VerifyResult:
    """Walk the chain from the genesis hash. `expected_head` is a head kept elsewhere earlier
    (e.g. printed by a previous verify): the chain must still pass through it - entries
    appended since are fine, a tail cut back to before it is not."""
    prev, count = GENESIS_HASH, 0
    head_seen = expected_head in (None, GENESIS_HASH)
    rows = session.execute(select(AuditLogEntry).order_by(AuditLogEntry.id)
                           .execution_options(yield_per=1000)).scalars()
    for entry in rows:
        count += 1
        if entry.prev_hash != prev:
            return VerifyResult(False, count, entry.id,
                                "prev_hash does not link to the previous entry (an entry was "
                                "deleted, inserted or reordered)", prev)
        try:
            details = json.loads(entry.details)
        except ValueError:
            return VerifyResult(False, count, entry.id, "details are not valid JSON", prev)
        if canonical_json(details) != entry.details:
            return VerifyResult(False, count, entry.id, "details are not in canonical form",
                                prev)
        expected = entry_hash(prev, at=entry.at, actor=entry.actor, action=entry.action,
                              resource_type=entry.resource_type,
                              resource_id=entry.resource_id, details=details)
        if entry.hash != expected:
            return VerifyResult(False, count, entry.id,
                                "hash does not match the entry's content (the entry was edited)",
                                prev)
        prev = entry.hash
        head_seen = head_seen or prev == expected_head
    if not head_seen:
        return VerifyResult(False, count, None,
                            f"the anchored head {expected_head} is not in the chain, which ends "
                            f"at {prev} (entries were truncated or the chain was rewritten)", prev)
    return VerifyResult(True, count, None, None, prev)
