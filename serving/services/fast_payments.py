"""The Postgres fast path for POST /api/v1/payments: the same payment, in four round trips.

Round trips, not Python, set the ceiling of a payments API (see docs/architecture.md section 9).
The general path (services/payments.py through the ORM) takes a dozen: claim the key, read the
risk facts one query at a time, flush each table, update the key, commit. This path runs the
very same domain code - `payments._create_payment`, the state machine, risk.decide, routing,
the ledger writer - but:

1. one statement claims the Idempotency-Key (INSERT ... ON CONFLICT DO NOTHING, so a concurrent
   twin waits for us and then replays) *and* reads every risk and routing fact
   (block/allow lists, the merchant's volume today, velocities, the customer's last geo, the
   channels' captured volume today);
2. the domain code runs against a collector instead of a session: the rows it would add
   (payment, its events, ledger legs, outbox event, the simulated channel's memory) are gathered;
3. one statement writes them all, with the key's stored response, as data-modifying CTEs;
4. COMMIT (the ledger's balance trigger fires there, as on the general path).

With the app's lifespan running (uvicorn), `create_async` does this on the event loop over the
async pool of serving/pg_async.py: no thread hop. `create` is the same on a pooled connection in
FastAPI's thread pool. Configuration the domain code reads (merchant, prices, channels) comes
from the per-process cache; on a miss it is read through a short synchronous session.

With a fraud model promoted (serving/fraud.py's live scorer) the scorer's summary of the
payment's history is read on the same connection right after the claim, one more round trip,
and handed to the risk check with the other facts.

Anything the fast path does not take (SQLite, a payment created unconfirmed, a wallet payment,
an ML score hook that cannot read ahead, a key already used) returns None and the general path
handles the request from the start; nothing was written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from serving import channels, jsonfast, risk
from serving.errors import ApiError, error_body
from serving.routing import channels_with_daily_limit
from serving.schemas import PaymentCreate
from serving.services import payments
from serving.services.idempotency import IdempotentResult
from serving.services.row_writer import Collector, insert_ctes


class _Ident(TypedDict):
    """What names one payment request, passed on to each step."""
    merchant_id: str
    key: str
    body: PaymentCreate
    now: datetime


class FastRequest(_Ident):
    """The keyword arguments of `create` and `create_async`."""
    path: str
    fingerprint: str

_CLAIM_AND_FACTS = """
WITH claim AS (
    INSERT INTO idempotency_keys (merchant_id, key, request_path, request_hash,
                                  response_status, response_body, created_at)
    VALUES (%(merchant_id)s, %(key)s, %(path)s, %(fingerprint)s, 0, '', %(claimed_at)s)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
-- The facts the limits and velocity rules read, under the locks of the payment's keys
-- (serving.risk.RISK_FACTS_PG): a volatile function's queries see what was committed before its
-- locks were granted, not this statement's snapshot. A CTE with a volatile function runs once.
facts AS (""" + risk.RISK_FACTS_PG + """)
SELECT
    (SELECT count(*) FROM claim) AS claimed,
    (SELECT string_agg(list_type || ':' || kind, ',') FROM risk_list_entries
      WHERE ((kind = 'customer' AND value = CAST(%(customer_id)s AS text))
          OR (kind = 'email' AND value = CAST(%(email)s AS text))
          OR (kind = 'card' AND value = CAST(%(card)s AS text))
          OR (kind = 'ip' AND value = CAST(%(ip)s AS text))
          OR (kind = 'device' AND value = CAST(%(device)s AS text)))
        AND (merchant_id IS NULL OR merchant_id = %(merchant_id)s)) AS lists,
    facts.*
FROM facts
"""

def eligible(engine: Engine, body: PaymentCreate) -> bool:
    """An ML scorer that cannot take its reads ahead (a test's hook) sends payments to the
    general path; the live scorer's summary is read on this path's connection."""
    return (engine.dialect.name == "postgresql" and body.confirm
            and body.payment_method.type != "wallet"
            and (not risk.score_hook_installed() or risk.score_prefetcher() is not None))


def _scoring_event(merchant_id: str, risk_keys: dict, now: datetime) -> dict:
    """What the ML scorer's summary reads for this payment (serving.fraud.Prefetched checks it
    against the payment the risk check scores)."""
    return {"merchant_id": merchant_id, "created_at": now, "payment_id": "", **risk_keys}


def _facts(row, risk_keys: dict) -> tuple[risk.RiskFacts, dict[str, int]]:
    lists = [item.split(":", 1) for item in (row.lists or "").split(",") if item]
    facts = risk.facts_from(row, risk_keys)
    facts.allowed = {kind for list_type, kind in lists if list_type == "allow"}
    facts.blocked = {kind for list_type, kind in lists if list_type == "block"}
    return facts, risk.volume_pairs(row.captured_today)


def _write_statement(rows: list, *, merchant_id: str, key: str, status: int,
                     body: dict) -> tuple[str, list]:
    """One statement of data-modifying CTEs (serving/services/row_writer.py) that stores the
    key's response and inserts every row."""
    inserts, insert_params = insert_ctes(rows)
    sql = ("WITH stored_key AS (UPDATE idempotency_keys SET response_status = %s, "
           "response_body = %s WHERE merchant_id = %s AND key = %s)" + inserts + " SELECT 1")
    return sql, [status, jsonfast.dumps(body), merchant_id, key, *insert_params]


def _claim_params(lookups: Session, *, merchant_id: str, key: str, path: str,
                  fingerprint: str, body: PaymentCreate, now: datetime) -> tuple[dict, dict]:
    """The claim statement's parameters, and the risk keys the payment carries."""
    method = body.payment_method.model_dump(exclude_none=True)
    customer = body.customer
    risk_keys = {"customer_id": customer.id if customer else None,
                 "card_fingerprint": channels.card_fingerprint(method),
                 "device_id": customer.device_id if customer else None,
                 "customer_ip": customer.ip if customer else None}
    limited = channels_with_daily_limit(lookups, body.payment_method.type, body.currency)
    # The key is dated by the wall clock, as the general path dates it (idempotency.claim):
    # its 24 h before pruning run in real time, also under a test clock's business time.
    params = {"key": key, "path": path, "fingerprint": fingerprint,
              "claimed_at": datetime.now(UTC),
              "email": customer.email if customer else None,
              **risk.risk_facts_params(merchant_id, body.currency, limited, risk_keys, now)}
    return params, risk_keys


def _work(lookups: Session, row, risk_keys: dict, *, merchant_id: str, key: str,
          body: PaymentCreate, now: datetime,
          prefetched=None) -> tuple[int, dict, str, list]:
    """Run the domain code over the facts the claim read (and the ML scorer's summary, when it
    scores): the response, and the statement that writes it with every row."""
    facts, captured = _facts(row, risk_keys)
    facts.ml_prefetched = prefetched
    collector = Collector(lookups)
    try:
        # the Collector serves the part of a Session the domain code uses (add, reads)
        status, out = payments.create_payment(cast(Session, collector), merchant_id=merchant_id,
                                              body=body, now=now, facts=facts,
                                              captured_today=captured)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        status, out = exc.status, error_body(exc.code, exc.message, exc.details)
        collector.rows = []  # nothing the work added survives; the key keeps the error
    sql, params = _write_statement(collector.rows, merchant_id=merchant_id, key=key,
                                   status=status, body=out)
    return status, out, sql, params


def create(engine: Engine, *, merchant_id: str, key: str, path: str, fingerprint: str,
           body: PaymentCreate, now: datetime) -> IdempotentResult | None:
    """The fast path on a connection of the engine's pool (run it in a worker thread). Its
    lookups read on the same connection: a payment waiting on another's lock (the claim takes
    the locks of its merchant, customer, card, device, IP) holds one connection, and the one
    holding the lock never needs a second from a pool the waiters may have emptied."""
    ident: _Ident = {"merchant_id": merchant_id, "key": key, "body": body, "now": now}
    with engine.connect() as conn, Session(bind=conn, expire_on_commit=False) as lookups:
        params, risk_keys = _claim_params(lookups, path=path, fingerprint=fingerprint, **ident)
        row = conn.exec_driver_sql(_CLAIM_AND_FACTS, params).one()
        if not row.claimed:
            conn.rollback()
            return None  # the key exists: the general path replays it or answers 409
        scorer = risk.score_prefetcher()
        prefetched = (scorer.prefetch(conn, _scoring_event(merchant_id, risk_keys, now))
                      if scorer is not None else None)
        status, out, sql, write_params = _work(lookups, row, risk_keys, prefetched=prefetched,
                                               **ident)
        conn.exec_driver_sql(sql, tuple(write_params))
        conn.commit()
    return IdempotentResult(status, out, False)


async def create_async(pool, engine: Engine, *, merchant_id: str, key: str, path: str,
                       fingerprint: str, body: PaymentCreate,
                       now: datetime) -> IdempotentResult | None:
    """The fast path on the event loop, over serving/pg_async.py's pool."""
    from psycopg.rows import namedtuple_row

    ident: _Ident = {"merchant_id": merchant_id, "key": key, "body": body, "now": now}
    with Session(engine, expire_on_commit=False) as lookups:
        params, risk_keys = _claim_params(lookups, path=path, fingerprint=fingerprint, **ident)
        # Give the lookups' connection back before the claim, which may wait on another
        # payment's lock: waiting payments hold no connection of the pool the lock's holder
        # may still need for a lookup (reads are cached, so it seldom does).
        lookups.rollback()
        async with pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=namedtuple_row)
            await cursor.execute(_CLAIM_AND_FACTS, params)
            row = await cursor.fetchone()
            if not row.claimed:
                return None  # the key exists: the general path replays it or answers 409
            scorer = risk.score_prefetcher()
            prefetched = (await scorer.prefetch_async(
                conn, _scoring_event(merchant_id, risk_keys, now)) if scorer is not None else None)
            status, out, sql, write_params = _work(lookups, row, risk_keys,
                                                   prefetched=prefetched, **ident)
            await conn.execute(sql, tuple(write_params))
    return IdempotentResult(status, out, False)
