"""The Postgres fast path of a paid call: claim in one round trip, settle in one.

The general path (gateway._claim_exact / _settle_exact through the ORM) takes about twenty
round trips per paid call; round trips set the ceiling (docs/architecture.md section 9). Here
the same checks and the same rows - built by the same domain code, booking.record_paid,
against a row collector - go to the server as two autocommit statements of data-modifying CTEs:

claim:  the chain's facts (nonce unused, received - sent >= value), the sender's account row and
        the usage row (unique (payer, nonce)), one statement;
settle: debit the sender (only if the balance still covers it and the usage is still
        `verified`), flag the usage settled, insert the Transfer log, the payment, its events,
        ledger legs and outbox event, one statement. The log's unique authorization makes a
        concurrent second settle of the same authorization fail as a whole.

When a statement cannot decide (no sender row, not enough funds, a conflict) it writes nothing
and returns None; the general path then runs and gives the precise reason.

The claim commits without waiting for its WAL flush (synchronous_commit off for that one
transaction): it only reserves, and nothing is charged or released before the settlement, which
commits synchronously. Postgres flushes WAL in order, so a durable settlement implies a durable
claim; a claim lost in a crash leaves nothing charged and the authorization presentable again.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from serving import jsonfast
from serving.services.row_writer import Collector, insert_ctes, row_values
from serving.x402 import booking, chain
from serving.x402.protocol import InvalidPayment
from serving.x402.verify import Verified
from warehouse.ids import new_id
from warehouse.models import X402Usage

_SUM_RECEIVED = ("(SELECT coalesce(sum(value), 0) FROM sim_chain_logs WHERE network = %s "
                 "AND asset = %s AND to_address = %s AND NOT removed)")


def eligible(engine: Engine, settings) -> bool:
    return engine.dialect.name == "postgresql" and settings.payments_fast_path


def _autocommit(engine: Engine):
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _claim_statement(verified: Verified, call: booking.Call,
                     now: datetime) -> tuple[str, tuple, str]:
    """The claim's SQL, its parameters and the id of the usage row it inserts."""
    auth, offer = verified.authorization, verified.offer
    net, asset = offer.network.caip2, offer.asset.address.lower()
    usage = X402Usage(id=new_id("x402_usage"), status="verified", created_at=now, updated_at=now,
                      **booking.usage_fields(call))
    sql = (
        "WITH facts AS (SELECT EXISTS (SELECT 1 FROM sim_chain_logs WHERE network = %s AND "
        "asset = %s AND from_address = %s AND nonce = %s) AS used, " + _SUM_RECEIVED +
        " - coalesce((SELECT sent FROM sim_chain_accounts WHERE network = %s AND asset = %s "
        "AND address = %s), 0) AS balance), "
        "account AS (INSERT INTO sim_chain_accounts (network, asset, address, sent) "
        "SELECT %s, %s, %s, 0 WHERE (SELECT NOT used AND balance >= %s FROM facts) "
        "ON CONFLICT DO NOTHING), "
        "claimed AS (INSERT INTO x402_usage SELECT * FROM json_populate_recordset("
        "NULL::x402_usage, %s) WHERE (SELECT NOT used AND balance >= %s FROM facts) "
        "ON CONFLICT (payer, nonce) DO NOTHING RETURNING 1), "
        # The claim's commit need not wait for the WAL flush (see the module docstring).
        "lazy_commit AS (SELECT set_config('synchronous_commit', 'off', true)) "
        "SELECT used, balance, (SELECT count(*) FROM claimed) FROM facts, lazy_commit")
    params = (net, asset, auth.payer, auth.nonce, net, asset, auth.payer, net, asset, auth.payer,
              net, asset, auth.payer, auth.value, jsonfast.dumps([row_values(usage)]),
              auth.value)
    return sql, params, usage.id


def _claimed(verified: Verified, row, usage_id: str) -> str:
    auth, offer = verified.authorization, verified.offer
    used, balance, claimed = row
    if used:
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization's nonce was already used", payer=auth.payer)
    if balance < auth.value:
        raise InvalidPayment("insufficient_funds",
                             f"{auth.payer} cannot pay {auth.value} atomic units of "
                             f"{offer.asset.symbol}", payer=auth.payer)
    if not claimed:
        raise InvalidPayment("invalid_exact_evm_nonce_already_used",
                             "this authorization was already presented", payer=auth.payer)
    return usage_id


def claim(engine: Engine, verified: Verified, call: booking.Call, now: datetime) -> str:
    """The usage id, or InvalidPayment (nothing was written)."""
    sql, params, usage_id = _claim_statement(verified, call, now)
    with _autocommit(engine) as conn:
        row = conn.exec_driver_sql(sql, params).one()
    return _claimed(verified, row, usage_id)


async def claim_async(pool, verified: Verified, call: booking.Call, now: datetime) -> str:
    """`claim` on the event loop, over serving/pg_async.py's (autocommit) pool."""
    sql, params, usage_id = _claim_statement(verified, call, now)
    async with pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    return _claimed(verified, row, usage_id)


def _settle_statement(engine: Engine, usage_id: str, verified: Verified, call: booking.Call,
                      upstream_status: int, now: datetime) -> tuple[str, tuple, str]:
    """The settlement's SQL, its parameters and the transaction hash it books."""
    auth, offer = verified.authorization, verified.offer
    net, asset = offer.network.caip2, offer.asset.address.lower()
    log = chain.authorization_log(offer.network, offer.asset.address, payer=auth.payer,
                                  to=auth.to, value=auth.value, nonce=auth.nonce, now=now)
    usage = X402Usage(id=usage_id, status="verified", **booking.usage_fields(call))
    with Collector(engine) as collector:
        # the Collector serves the part of a Session the booking uses (add, reads)
        payment = booking.record_paid(cast(Session, collector), usage, tx_hash=log.tx_hash,
                                      upstream_status=upstream_status, buyer_merchant_id=None,
                                      now=now)
    inserts, insert_params = insert_ctes(collector.rows, when="EXISTS (SELECT 1 FROM settled)")
    chain_insert, chain_params = insert_ctes([log], when="EXISTS (SELECT 1 FROM debit)",
                                            name="chain_log")
    sql = (
        "WITH debit AS (UPDATE sim_chain_accounts SET sent = sent + %s WHERE network = %s AND "
        "asset = %s AND address = %s AND " + _SUM_RECEIVED + " - sent >= %s AND EXISTS ("
        "SELECT 1 FROM x402_usage WHERE id = %s AND status = 'verified') RETURNING 1), "
        "settled AS (UPDATE x402_usage SET status = 'settled', tx_hash = %s, payment_id = %s, "
        "upstream_status = %s, settled_at = %s, updated_at = %s WHERE id = %s AND "
        "status = 'verified' AND EXISTS (SELECT 1 FROM debit) RETURNING 1)"
        + chain_insert + inserts +
        " SELECT (SELECT count(*) FROM settled)")
    params = (auth.value, net, asset, auth.payer, net, asset, auth.payer, auth.value, usage_id,
              log.tx_hash, payment.id, upstream_status, now, now, usage_id, *chain_params,
              *insert_params)
    return sql, params, log.tx_hash


def settle(engine: Engine, usage_id: str, verified: Verified, call: booking.Call,
           upstream_status: int, now: datetime) -> str | None:
    """The transaction hash, or None when the general path must settle (nothing was written)."""
    sql, params, tx_hash = _settle_statement(engine, usage_id, verified, call, upstream_status,
                                             now)
    with _autocommit(engine) as conn:
        settled = conn.exec_driver_sql(sql, params).scalar()
    return tx_hash if settled else None


async def settle_async(pool, engine: Engine, usage_id: str, verified: Verified,
                       call: booking.Call, upstream_status: int, now: datetime) -> str | None:
    """`settle` on the event loop, over serving/pg_async.py's (autocommit) pool."""
    sql, params, tx_hash = _settle_statement(engine, usage_id, verified, call, upstream_status,
                                             now)
    async with pool.connection() as conn:
        (settled,) = await (await conn.execute(sql, params)).fetchone()
    return tx_hash if settled else None
