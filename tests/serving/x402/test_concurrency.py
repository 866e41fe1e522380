"""Races: one authorization sent many times at once settles once (through the gateway and
through the facilitator's /settle); a token budget for N calls pays exactly N of 3N concurrent
calls. Concurrent requests run through one ASGI client, so the gateway's database work
overlaps in its thread pool (on Postgres: separate connections)."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from serving.x402 import gateway
from tests.serving.x402.helpers import (
    FUNDS,
    PAY_TO,
    PRICE,
    auth_headers,
    facilitator_request,
    refusal_reason,
    settlement_paths,
    sign_authorization,
    token_header,
    token_offer,
    token_row,
    v2_header,
)


def fire(app, url: str, times: int, *, headers: dict[str, str] | None = None,
         json: dict | None = None) -> list[httpx.Response]:
    """`times` concurrent requests: GET, or POST when a JSON body is given."""
    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            return await asyncio.gather(*(
                client.post(url, json=json) if json is not None
                else client.get(url, headers=headers) for _ in range(times)))

    return asyncio.run(run())


def slow_upstream(monkeypatch, seconds: float = 0.05) -> None:
    """The upstream takes a while, so later requests arrive while the first is in flight."""
    real = gateway._proxy

    async def proxy(*args, **kwargs):
        await asyncio.sleep(seconds)
        return await real(*args, **kwargs)

    monkeypatch.setattr(gateway, "_proxy", proxy)


def test_the_same_authorization_sent_concurrently_settles_once(shop, monkeypatch):
    slow_upstream(monkeypatch)
    for path in settlement_paths(shop):
        payer = shop.new_payer()
        header = v2_header(sign_authorization(payer))

        responses = fire(shop.client.app, shop.url(), 8, headers={"PAYMENT-SIGNATURE": header})

        assert Counter(r.status_code for r in responses) == {200: 1, 402: 7}, path
        assert {refusal_reason(r) for r in responses if r.status_code == 402} == {
            "invalid_exact_evm_nonce_already_used"}, path
        assert all("credit_rating" not in r.text for r in responses if r.status_code == 402)
        address = payer.address.lower()
        assert [u.status for u in shop.usages(payer=address)] == ["settled"], path
        [transfer] = shop.transfers(from_address=address)
        assert len(shop.payments(channel_reference=transfer.tx_hash)) == 1
        assert shop.balance(payer.address) == FUNDS - PRICE, path
    assert shop.balance(PAY_TO) == 2 * PRICE


def test_a_token_never_spends_past_its_budget_under_concurrency(shop, monkeypatch):
    slow_upstream(monkeypatch, 0.02)
    calls = 3
    _, buyer_key = shop.api.merchant("Research Agent Co")
    issued = shop.client.post("/api/v1/payment-tokens", headers=auth_headers(buyer_key), json={
        "agent_name": "parallel-agent", "amount_minor": str(calls * PRICE)})
    assert issued.status_code == 201, issued.text
    token = issued.json()
    header = token_header(token["token"], token_offer(shop.get()))

    responses = fire(shop.client.app, shop.url(), 3 * calls,
                     headers={"PAYMENT-SIGNATURE": header})

    assert Counter(r.status_code for r in responses) == {200: calls, 402: 2 * calls}
    assert {refusal_reason(r) for r in responses if r.status_code == 402} == {
        "token_budget_exhausted"}
    row = token_row(shop.api, token["id"])
    assert (row.spent_minor, row.calls) == (calls * PRICE, calls)
    assert len(shop.payments()) == calls
    assert [u.status for u in shop.usages()] == ["settled"] * calls


def test_concurrent_facilitator_settles_of_one_authorization_succeed_once(shop):
    before = shop.balances()
    for _ in range(3):
        body = facilitator_request(sign_authorization(shop.payer))

        responses = fire(shop.client.app, "/facilitator/settle", 8, json=body)

        outcomes = Counter((r.status_code, r.json()["success"], r.json().get("errorReason"))
                           for r in responses)
        assert outcomes == {(200, True, None): 1,
                            (200, False, "invalid_exact_evm_nonce_already_used"): 7}, outcomes
    assert len(shop.transfers()) == 3
    assert shop.balances() == (before[0] - 3 * PRICE, before[1] + 3 * PRICE)
