"""Stripe-style idempotency for POSTs that create or move money (api.md).

The key is claimed by inserting its row first (INSERT ... ON CONFLICT DO NOTHING), inside the
same transaction as the work, so:
- a retry after success finds the row and replays the stored status and body;
- a concurrent duplicate blocks on the primary key (Postgres) or on the write lock (SQLite, BEGIN
  IMMEDIATE) until the first commits, then replays its response;
- the same key with another body or path is refused with 409 idempotency_key_reused;
- a business error (4xx ApiError) inside the work rolls back everything the work wrote, then
  the key is stored with the error response, which later retries replay: nothing is
  half-written;
- a key is kept CLEARHOUSE_IDEMPOTENCY_TTL_HOURS (24 by default, as Stripe) and then pruned by
  the background worker (`prune_expired`); after that the same key starts a new request;
- the header is optional, as api.md says ("accepts") and as Stripe has it: a request without
  one runs once under a fresh key of its own (`check_key`), through the same path, so a retry
  of it is a new request. Clients that retry send a key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from pydantic import BaseModel
from sqlalchemy import CursorResult, Engine, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from serving.errors import ApiError, error_body
from warehouse.connections import read_only
from warehouse.models import IdempotencyKey

MAX_KEY_LENGTH = 255
UNKEYED_PREFIX = "unkeyed\n"  # no client key can hold a newline (HTTP header values cannot)


@dataclass(frozen=True)
class IdempotentResult:
    status: int
    body: dict
    replayed: bool


def request_fingerprint(path: str, body: BaseModel | dict) -> str:
    """What "the same request" means: the path and the parameters as validated, not the bytes
    sent, so `1000` and `"1000"`, or a default left out and the default sent, are one request."""
    params = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    canonical = json.dumps({"path": path, "body": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> str:
    """The request's Idempotency-Key; without one (or a blank one), a fresh key that no client
    can send (it holds a newline, which a header value cannot)."""
    if key is None or not key.strip():
        return f"{UNKEYED_PREFIX}{uuid.uuid4().hex}"
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(422, "idempotency_key_invalid",
                       f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters",
                       {"field": "Idempotency-Key", "max_length": MAX_KEY_LENGTH})
    return key


def _replay(row: IdempotencyKey, path: str, fingerprint: str) -> IdempotentResult:
    if row.request_hash != fingerprint or row.request_path != path:
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was already used with a different request",
                       {"first_request_path": row.request_path})
    return IdempotentResult(row.response_status, json.loads(row.response_body), True)


def _claim(session: Session, *, merchant_id: str, key: str, path: str, fingerprint: str,
           status: int = 0, body: dict | None = None) -> bool:
    """INSERT the key unless it exists (one round trip). On Postgres a concurrent twin's
    uncommitted claim makes this wait for it to commit, then report the conflict."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(IdempotencyKey)
    values = {"merchant_id": merchant_id, "key": key, "request_path": path,
              "request_hash": fingerprint, "response_status": status,
              "response_body": json.dumps(body) if body is not None else "",
              "created_at": datetime.now(UTC)}
    claimed = session.execute(insert.values(**values).on_conflict_do_nothing()
                              .returning(IdempotencyKey.key)).first()
    return claimed is not None


def run_idempotent(engine: Engine, *, merchant_id: str, key: str, path: str, fingerprint: str,
                   work: Callable[[Session], tuple[int, dict]]) -> IdempotentResult:
    for _attempt in range(5):
        with Session(engine, expire_on_commit=False) as session:
            if not _claim(session, merchant_id=merchant_id, key=key, path=path,
                          fingerprint=fingerprint):
                session.rollback()
                existing = session.get(IdempotencyKey, (merchant_id, key))
                if existing is None:
                    continue  # the twin rolled back: claim again
                return _replay(existing, path, fingerprint)
            try:
                status, body = work(session)
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                # Nothing the work wrote survives; the key keeps the error, to replay it.
                session.rollback()
                status, body = exc.status, error_body(exc.code, exc.message, exc.details)
                if not _claim(session, merchant_id=merchant_id, key=key, path=path,
                              fingerprint=fingerprint, status=status, body=body):
                    session.rollback()
                    continue
                session.commit()
                return IdempotentResult(status, body, False)
            session.execute(update(IdempotencyKey)
                            .where(IdempotencyKey.merchant_id == merchant_id,
                                   IdempotencyKey.key == key)
                            .values(response_status=status, response_body=json.dumps(body)))
            session.commit()
            return IdempotentResult(status, body, False)
    raise ApiError(409, "idempotency_conflict", "the request could not claim its Idempotency-Key; retry")


def already_answered(engine: Engine, merchant_id: str, key: str) -> bool:
    """Whether the key holds a stored answer: a retry with it replays and does no new work, so
    a rate limit on new work (the per-customer bucket) must not refuse it."""
    with Session(read_only(engine)) as session:
        row = session.get(IdempotencyKey, (merchant_id, key))
        return row is not None and row.response_status != 0


def prune_expired(session: Session, now: datetime, ttl_hours: int, *, limit: int = 5000) -> int:
    """Delete up to `limit` keys older than the TTL (oldest first); the number deleted. Every
    stored key holds its final response (the claim and the response commit together)."""
    cutoff = now - timedelta(hours=ttl_hours)
    expired = (select(IdempotencyKey.merchant_id, IdempotencyKey.key)
               .where(IdempotencyKey.created_at < cutoff)
               .order_by(IdempotencyKey.created_at).limit(limit))
    result = session.execute(delete(IdempotencyKey).where(
        tuple_(IdempotencyKey.merchant_id, IdempotencyKey.key).in_(expired)))
    return cast(CursorResult, result).rowcount  # a DELETE gives a CursorResult
