"""Agent payment tokens under concurrency (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from serving import cache
from serving.x402 import booking, gateway
from tests.serving.helpers import make_api
from tests.serving.x402.helpers import (
    PRICE,
    auth_headers,
    build_shop,
    ledger_balances,
    token_header,
    token_offer,
    token_row,
)
from tests.serving.x402.test_concurrency import fire


@pytest.fixture
def shop(oltp_url, make_settings):
    cache.clear()
    api = make_api(make_settings(database_url=oltp_url))
    yield build_shop(api)
    cache.clear()


def issue(shop, budget, **extra):
    _, buyer_key = shop.api.merchant("Buyer Co")
    issued = shop.client.post("/api/v1/payment-tokens", headers=auth_headers(buyer_key),
                              json={"agent_name": "a", "amount_minor": str(budget), **extra})
    assert issued.status_code == 201, issued.text
    return issued.json()


def flaky_upstream(monkeypatch, every=3, seconds=0.02):
    """Every `every`-th upstream call answers 500 (nothing may be charged for it)."""
    real = gateway._proxy
    counter = itertools.count()

    async def proxy(*args, **kwargs):
        n = next(counter)
        await asyncio.sleep(seconds)
        if n % every == 0:
            return httpx.Response(500, content=b"boom")
        return await real(*args, **kwargs)

    monkeypatch.setattr(gateway, "_proxy", proxy)


def test_budget_holds_with_failing_upstream_calls(shop, monkeypatch):
    flaky_upstream(monkeypatch)
    token = issue(shop, 5 * PRICE)
    header = token_header(token["token"], token_offer(shop.get()))
    responses = fire(shop.client.app, shop.url(), 24, headers={"PAYMENT-SIGNATURE": header})
    codes = Counter(r.status_code for r in responses)
    row = token_row(shop.api, token["id"])
    paid = shop.payments()
    assert codes[200] == len(paid) <= 5, codes
    assert row.spent_minor == len(paid) * PRICE <= row.budget_minor, (row.spent_minor, codes)
    assert row.calls == len(paid)
    assert ledger_balances(shop.api)


def test_write_off_racing_settlements_never_charges_past_budget(shop, monkeypatch):
    """The worker writes off calls in flight (as if they were old) while they settle."""
    token = issue(shop, 4 * PRICE)
    header = token_header(token["token"], token_offer(shop.get()))
    real = gateway._proxy

    async def proxy(*args, **kwargs):
        await asyncio.sleep(0.05)
        engine = shop.api.engine

        def write_off():
            with Session(engine) as s, s.begin():
                booking.write_off_abandoned(s, datetime.now(UTC) + timedelta(hours=1))

        await asyncio.to_thread(write_off)
        return await real(*args, **kwargs)

    monkeypatch.setattr(gateway, "_proxy", proxy)
    responses = fire(shop.client.app, shop.url(), 8, headers={"PAYMENT-SIGNATURE": header})
    row = token_row(shop.api, token["id"])
    paid = shop.payments()
    assert 0 <= row.spent_minor == len(paid) * PRICE <= row.budget_minor, (
        row.spent_minor, len(paid), Counter(r.status_code for r in responses))
    assert row.calls == len(paid)
