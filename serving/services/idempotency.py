"""Stripe-style idempotency for POSTs that create or move money (api.md).

The key is claimed by inserting its row first, inside the same transaction as the work, so:
- a retry after success finds the row and replays the stored status and body;
- a concurrent duplicate blocks on the primary key (Postgres) or on the write lock (SQLite, BEGIN
  IMMEDIATE) until the first commits, then replays its response;
- the same key with another body or path is refused with 409 idempotency_key_reused;
- a business error (4xx ApiError) inside the work is stored and replayed too, and everything
  the work wrote is rolled back (savepoint), so nothing is half-written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serving.errors import ApiError, error_body
from warehouse.models import IdempotencyKey

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotentResult:
    status: int
    body: dict
    replayed: bool


def request_fingerprint(path: str, body: dict) -> str:
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiError(400, "idempotency_key_missing",
                       "this request moves money: send an Idempotency-Key header (e.g. a UUID)")
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(400, "idempotency_key_invalid",
                       f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters")
    return key


def _replay(row: IdempotencyKey, path: str, fingerprint: str) -> IdempotentResult:
    if row.request_hash != fingerprint or row.request_path != path:
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was already used with a different request",
                       {"first_request_path": row.request_path})
    return IdempotentResult(row.response_status, json.loads(row.response_body), True)


def run_idempotent(engine: Engine, *, merchant_id: str, key: str, path: str, fingerprint: str,
                   work: Callable[[Session], tuple[int, dict]]) -> IdempotentResult:
    for _attempt in range(5):
        with Session(engine, expire_on_commit=False) as session:
            existing = session.get(IdempotencyKey, (merchant_id, key))
            if existing is not None:
                return _replay(existing, path, fingerprint)
            claim = IdempotencyKey(merchant_id=merchant_id, key=key, request_path=path,
                                   request_hash=fingerprint, response_status=0,
                                   response_body="", created_at=datetime.now(UTC))
            session.add(claim)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()  # a concurrent twin committed first: replay its answer
                continue
            savepoint = session.begin_nested()
            try:
                status, body = work(session)
                savepoint.commit()
            except ApiError as exc:
                savepoint.rollback()
                if exc.status >= 500:
                    raise
                status, body = exc.status, error_body(exc.code, exc.message, exc.details)
            claim.response_status = status
            claim.response_body = json.dumps(body)
            session.commit()
            return IdempotentResult(status, body, False)
    raise ApiError(409, "idempotency_conflict", "the request could not claim its Idempotency-Key; retry")
