"""The gateway with the real `x402` client: v2 (httpx, async), v1 (X-PAYMENT) and the sync
requests client over real HTTP. Each paid call must deliver the upstream's body with a receipt,
settle once on the simulated chain, and book one successful payment with balanced ledger legs."""

from __future__ import annotations

import asyncio
import re

import httpx
from x402 import x402Client, x402ClientSync
from x402.http.clients.httpx import x402_httpx_transport
from x402.http.clients.requests import x402_requests
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner

from tests.serving.helpers import LiveServer
from tests.serving.x402.helpers import (
    DETAIL,
    PAY_TO,
    PRICE,
    SEPOLIA,
    USDC,
    event_trail,
    ledger_balances,
    legs_of,
    required,
    unb64,
)


class RecordingTransport(httpx.ASGITransport):
    """The app in-process, remembering the headers of every request the client sent."""

    def __init__(self, app):
        super().__init__(app=app)
        self.sent: list[httpx.Headers] = []

    async def handle_async_request(self, request):
        self.sent.append(request.headers)
        return await super().handle_async_request(request)


def pay_with_async_client(app, account, url: str) -> tuple[httpx.Response, RecordingTransport]:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(account))
    inner = RecordingTransport(app)

    async def run():
        async with httpx.AsyncClient(transport=x402_httpx_transport(client, inner),
                                     base_url="http://testserver") as http:
            return await http.get(url)

    return asyncio.run(run()), inner


def assert_paid_once(shop, receipt: dict, before: tuple[int, int], *, network: str,
                     version: int, path: str = DETAIL) -> None:
    """One settlement of PRICE from the shop's payer to PAY_TO, everywhere it must show."""
    payer = shop.payer.address.lower()
    tx = receipt["transaction"]
    assert receipt["success"] is True
    assert re.fullmatch(r"0x[0-9a-f]{64}", tx), tx
    assert (receipt["payer"], receipt["amount"], receipt["network"]) == (payer, str(PRICE),
                                                                          network)
    [log] = shop.transfers()
    assert (log.tx_hash, log.from_address, log.to_address, log.value, log.removed) == (
        tx, payer, PAY_TO, PRICE, False)
    assert (log.network, log.asset) == (SEPOLIA.caip2, USDC.address.lower())
    [usage] = shop.usages()
    assert (usage.status, usage.tx_hash, usage.payer, usage.amount_atomic, usage.path,
            usage.x402_version, usage.upstream_status) == (
        "settled", tx, payer, PRICE, path, version, 200)
    [payment] = shop.payments()
    assert payment.id == usage.payment_id
    assert (payment.merchant_id, payment.status, payment.channel_id, payment.channel_reference,
            payment.amount_minor, payment.currency) == (
        shop.seller_id, "success", "ch_x402_sim", tx, PRICE, "USDC")
    assert event_trail(shop.api, payment.id) == [
        "initiated", "processing", "risk_checking", "channel_calling", "success"]
    assert legs_of(shop.api, payment.id) == {
        "channel_receivable:ch_x402_sim": PRICE, f"merchant_payable:{shop.seller_id}": -PRICE}
    assert ledger_balances(shop.api)
    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)


def test_unpriced_paths_are_proxied_free_and_priced_ones_answer_402(shop):
    free = shop.get("/company/basic")
    assert free.status_code == 200 and free.json()["name"] == "Acme"
    assert "PAYMENT-REQUIRED" not in free.headers

    unpaid = shop.get()
    assert unpaid.status_code == 402
    v2 = required(unpaid)
    assert v2["x402Version"] == 2 and v2["resource"]["url"].endswith(shop.url())
    exact, token = v2["accepts"]
    assert exact == {"scheme": "exact", "network": "eip155:84532", "asset": USDC.address,
                     "amount": str(PRICE), "payTo": PAY_TO, "maxTimeoutSeconds": 60,
                     "extra": {"name": "USDC", "version": "2"}}
    assert (token["scheme"], token["network"], token["payTo"], token["amount"]) == (
        "token", "clearhouse", shop.seller_id, str(PRICE))
    # The rule offers v1 too, so the body is the v1 document.
    [v1] = unpaid.json()["accepts"]
    assert (unpaid.json()["x402Version"], v1["network"], v1["maxAmountRequired"]) == (
        1, "base-sepolia", str(PRICE))
    assert shop.usages() == [] and shop.transfers() == []

    missing = shop.client.get("/x402/mer_nobody/company/detail?name=Acme")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "gateway_not_found"


def test_v2_client_pays_and_gets_the_body_with_a_receipt(shop):
    before = shop.balances()
    response, transport = pay_with_async_client(shop.client.app, shop.payer, shop.url())

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme" and "credit_rating" in response.json()
    assert [("PAYMENT-SIGNATURE" in h, "X-PAYMENT" in h) for h in transport.sent] == [
        (False, False), (True, False)]
    assert "X-PAYMENT-RESPONSE" not in response.headers
    assert_paid_once(shop, unb64(response.headers["PAYMENT-RESPONSE"]), before,
                     network="eip155:84532", version=2)


def test_v1_client_pays_with_x_payment(shop):
    rule = shop.add_rule("/company/officers", protocol_versions=[1])
    assert rule["protocol_versions"] == [1]
    unpaid = shop.get("/company/officers")
    assert unpaid.status_code == 402 and "PAYMENT-REQUIRED" not in unpaid.headers
    assert unpaid.json()["x402Version"] == 1
    before = shop.balances()

    response, transport = pay_with_async_client(shop.client.app, shop.payer,
                                                shop.url("/company/officers"))

    assert response.status_code == 200, response.text
    assert [o["role"] for o in response.json()["officers"]] == ["CEO", "CFO", "COO"]
    assert [("PAYMENT-SIGNATURE" in h, "X-PAYMENT" in h) for h in transport.sent] == [
        (False, False), (False, True)]
    assert "PAYMENT-RESPONSE" not in response.headers
    assert_paid_once(shop, unb64(response.headers["X-PAYMENT-RESPONSE"]), before,
                     network="base-sepolia", version=1, path="/company/officers")
    [usage] = shop.usages()
    assert usage.rule_id == rule["id"]


def test_sync_requests_client_pays_over_real_http(shop):
    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(shop.payer))
    before = shop.balances()

    with LiveServer(shop.client.app) as server:
        session = x402_requests(client)
        response = session.get(server.url + shop.url(name="Globex"))

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Globex"
    assert response.request.headers.get("PAYMENT-SIGNATURE")
    assert_paid_once(shop, unb64(response.headers["PAYMENT-RESPONSE"]), before,
                     network="eip155:84532", version=2)
