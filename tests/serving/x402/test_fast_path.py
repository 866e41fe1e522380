"""On Postgres the gateway claims and settles in one statement each (serving/x402/fast_path.py);
it must write exactly what the general (ORM) path writes, and refuse with the same reasons."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import cache
from serving.x402 import fast_path
from tests.serving.helpers import make_api
from tests.serving.x402.helpers import PRICE, build_shop, refusal_reason, sign_authorization
from warehouse.models import (
    LedgerEntry,
    OutboxEvent,
    Payment,
    PaymentEvent,
    SimChainAccount,
    SimChainLog,
    X402Usage,
)

VOLATILE = {"id", "created_at", "updated_at", "captured_at", "settled_at", "at", "effective_at",
            "transaction_id", "payment_id", "merchant_reference", "merchant_id", "rule_id",
            "aggregate_id", "block_number", "block_timestamp", "tx_hash", "channel_reference",
            "payer", "customer_id", "nonce", "from_address", "to_address", "address", "routing",
            "payload"}


def _plain(row) -> dict:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in VOLATILE}


def _scenario(oltp_url, make_settings, *, fast: bool, lifespan: bool = False) -> tuple[list, dict]:
    cache.clear()
    api = make_api(make_settings(database_url=oltp_url, payments_fast_path=fast))
    # Inside `with`, the app's lifespan opens the async pool: the fast path runs on the loop.
    with api.client if lifespan else contextlib.nullcontext():
        return _play(api)


def _play(api) -> tuple[list, dict]:
    shop = build_shop(api)
    outcomes = []
    ok = sign_authorization(shop.payer)
    outcomes.append(shop.pay(ok).status_code)
    outcomes.append(refusal_reason(shop.pay(ok)))  # replay
    poor = shop.new_payer(amount=PRICE - 1)
    outcomes.append(refusal_reason(shop.pay(sign_authorization(poor))))
    outcomes.append(shop.pay(sign_authorization(shop.payer), name="unknown corp").status_code)
    second = sign_authorization(shop.payer)
    outcomes.append(shop.pay(second).status_code)
    with Session(api.engine) as s:
        written = {
            "usage": sorted((_plain(u) for u in s.scalars(select(X402Usage))), key=str),
            "payments": sorted((_plain(p) for p in s.scalars(select(Payment))), key=str),
            "events": sorted((e.from_status or "", e.to_status)
                             for e in s.scalars(select(PaymentEvent))),
            "legs": sorted((leg.account.split(":")[0], leg.amount_minor, leg.kind)
                           for leg in s.scalars(select(LedgerEntry))),
            "outbox": sorted(e.event_type for e in s.scalars(select(OutboxEvent))),
            "chain": sorted((_plain(log) for log in s.scalars(select(SimChainLog))), key=str),
            "sent": sorted(a.sent for a in s.scalars(select(SimChainAccount))),
            "payer_balance": shop.balance(shop.payer.address),
        }
    cache.clear()
    return outcomes, written


@pytest.mark.parametrize("lifespan", [True, False], ids=["event_loop", "thread_pool"])
def test_fast_path_writes_what_the_orm_path_writes(pg_url, make_settings, monkeypatch, lifespan):
    from tests.conftest import create_pg_database, drop_pg_database
    from warehouse.migrate import upgrade

    used = []
    for name in ("claim", "settle"):
        real, real_async = getattr(fast_path, name), getattr(fast_path, name + "_async")

        def spy(*args, _real=real, _name=name, **kwargs):
            result = _real(*args, **kwargs)
            used.append((_name, result is not None))
            return result

        async def spy_async(*args, _real=real_async, _name=name + "_async", **kwargs):
            result = await _real(*args, **kwargs)
            used.append((_name, result is not None))
            return result

        monkeypatch.setattr(fast_path, name, spy)
        monkeypatch.setattr(fast_path, name + "_async", spy_async)
    upgrade(pg_url)
    fast_outcomes, fast_rows = _scenario(pg_url, make_settings, fast=True, lifespan=lifespan)
    suffix = "_async" if lifespan else ""
    assert ("claim" + suffix, True) in used and ("settle" + suffix, True) in used
    used.clear()
    orm_url = create_pg_database()
    try:
        upgrade(orm_url)
        orm_outcomes, orm_rows = _scenario(orm_url, make_settings, fast=False)
    finally:
        drop_pg_database(orm_url)
    assert used == []  # the general path really ran
    assert fast_outcomes == orm_outcomes == [200, "invalid_exact_evm_nonce_already_used",
                                             "insufficient_funds", 404, 200]
    for table in fast_rows:
        assert fast_rows[table] == orm_rows[table], table
    assert fast_rows["payer_balance"] == 1_000_000 - 2 * PRICE


@pytest.mark.parametrize("lifespan", [True, False], ids=["event_loop", "thread_pool"])
def test_fast_settle_leaves_nothing_when_funds_went_away(pg_url, make_settings, monkeypatch,
                                                         lifespan):
    """Funds spent elsewhere between claim and settle: the one statement writes nothing and the
    general path names the reason; the upstream's body is withheld."""
    from serving.x402 import gateway
    from warehouse.migrate import upgrade

    upgrade(pg_url)
    cache.clear()
    api = make_api(make_settings(database_url=pg_url))
    shop = build_shop(api)
    other = shop.new_payer(amount=0)
    real_proxy = gateway._proxy

    async def spend_first(*args, **kwargs):
        # The payer empties its balance with another authorization while the upstream works.
        with Session(api.engine) as s, s.begin():
            from serving.x402 import chain
            from tests.serving.x402.helpers import SEPOLIA, USDC

            chain.transfer_with_authorization(
                s, SEPOLIA, USDC.address, payer=shop.payer.address, to=other.address,
                value=shop.balance(shop.payer.address), nonce="0x" + "11" * 32,
                now=__import__("datetime").datetime.now(__import__("datetime").UTC))
        return await real_proxy(*args, **kwargs)

    monkeypatch.setattr(gateway, "_proxy", spend_first)
    with api.client if lifespan else contextlib.nullcontext():
        response = shop.pay(sign_authorization(shop.payer))
    assert refusal_reason(response) == "insufficient_funds"
    assert "employees" not in response.text
    [usage] = shop.usages()
    assert usage.status == "settle_failed" and usage.tx_hash is None
    assert shop.payments() == []
    cache.clear()
