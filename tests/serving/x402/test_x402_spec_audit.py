"""A black-box audit of the x402 gateway and agent payment tokens against the issue text,
docs x402-notes.md and api.md (docs/audits/2026-12-05-x402-tokens.md): what the earlier tests
left out or covered weakly, probed through HTTP on SQLite and Postgres."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

from eth_account import Account

from tests.serving.x402.helpers import (
    BASE,
    DETAIL,
    PAY_TO,
    PRICE,
    auth_headers,
    exact_offer,
    refusal_reason,
    required,
    sign_authorization,
    token_header,
    token_offer,
    unb64,
    v1_header,
    v2_header,
)

Z_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def issue(shop, key: str, idem: str | None = None, **fields):
    body = {"agent_name": "research-agent", "amount_minor": str(3 * PRICE), **fields}
    headers = auth_headers(key)
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return shop.client.post("/api/v1/payment-tokens", json=body, headers=headers)


# --- 3. the verify order: with two faults, the earlier check names the reason --------------------


def test_the_first_failing_check_in_the_promised_order_is_the_reason(shop):
    payer, now = shop.payer, int(time.time())
    other = "0x" + "cd" * 20
    cases = {
        # scheme before network
        "scheme and network": (
            v2_header(sign_authorization(payer), {**exact_offer(network=BASE,
                                                                asset=BASE.asset("USDC")),
                                                  "scheme": "upto"}),
            "unsupported_scheme"),
        # accepted before to == payTo
        "accepted and recipient": (
            v2_header(sign_authorization(payer, to=other), exact_offer(pay_to=other)),
            "invalid_payment_requirements"),
        # to before value
        "recipient and value": (
            v2_header(sign_authorization(payer, to=other, value=PRICE + 1)),
            "invalid_exact_evm_payload_recipient_mismatch"),
        # value before the time window
        "value and expired": (
            v2_header(sign_authorization(payer, value=PRICE + 1, valid_before=now - 10)),
            "invalid_exact_evm_payload_authorization_value_mismatch"),
        # the time window before the signature
        "early and forged": (
            v2_header(sign_authorization(payer, valid_after=now + 120,
                                         signer=Account.create())),
            "invalid_exact_evm_payload_authorization_valid_after"),
        "expired and forged": (
            v2_header(sign_authorization(payer, valid_before=now - 10,
                                         signer=Account.create())),
            "invalid_exact_evm_payload_authorization_valid_before"),
        # the signature before the chain's balance check
        "forged and broke": (
            v2_header(sign_authorization(shop.new_payer(amount=0), signer=Account.create())),
            "invalid_exact_evm_payload_signature"),
    }
    for name, (header, reason) in cases.items():
        assert refusal_reason(shop.get(headers={"PAYMENT-SIGNATURE": header})) == reason, name
    assert shop.usages() == [] and shop.transfers() == []


def test_the_time_window_allows_a_little_skew_and_needs_six_seconds(shop):
    now = int(time.time())
    # validAfter a few seconds ahead of our clock (the payer's runs fast): accepted
    assert shop.pay(sign_authorization(shop.payer, valid_after=now + 2)).status_code == 200
    # validBefore with more than 6 s left: accepted; with less: refused
    assert shop.pay(sign_authorization(shop.payer, valid_before=now + 20)).status_code == 200
    assert refusal_reason(shop.pay(sign_authorization(shop.payer, valid_before=now + 4))) == (
        "invalid_exact_evm_payload_authorization_valid_before")


# --- 4. the facilitator over HTTP: always 200, whatever it is sent ------------------------------


def test_the_facilitator_answers_200_to_anything(shop):
    for action, flag in (("verify", "isValid"), ("settle", "success")):
        for content in (b"not json", b"[1, 2]", b"{}", b'{"paymentPayload": 1}', b"null"):
            response = shop.client.post(f"/facilitator/{action}", content=content,
                                        headers={"Content-Type": "application/json"})
            assert response.status_code == 200, (action, content, response.text)
            assert response.json()[flag] is False, (action, content)
            reason = response.json()["invalidReason" if flag == "isValid" else "errorReason"]
            assert reason == "invalid_payload", (action, content, reason)
    assert shop.transfers() == []


def test_the_facilitator_checks_the_requirements_and_never_fails_on_them(shop):
    signed = sign_authorization(shop.payer)
    cases = {
        "scheme upto": ({"scheme": "upto"}, "unsupported_scheme"),
        "no scheme": ({"scheme": None}, "unsupported_scheme"),
        "no requirements' scheme": ({"scheme": ""}, "unsupported_scheme"),
        "timeout not a number": ({"maxTimeoutSeconds": "soon"}, "invalid_payment_requirements"),
        "extra not an object": ({"extra": "USDC"}, "invalid_payment_requirements"),
        "unknown asset": ({"asset": "0x" + "ee" * 20}, "invalid_payment_requirements"),
        "unknown network": ({"network": "eip155:1"}, "invalid_network"),
        "Base's domain on Base Sepolia": ({"extra": {"name": "USD Coin", "version": "2"}},
                                          "invalid_payment_requirements"),
    }
    for name, (change, reason) in cases.items():
        requirements = {**exact_offer(), **change}
        # the client accepted the real offer; the resource server asks the facilitator otherwise
        body = {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
            "x402Version": 2, "accepted": exact_offer(), "payload": signed}}
        for action, flag, key in (("verify", "isValid", "invalidReason"),
                                  ("settle", "success", "errorReason")):
            response = shop.client.post(f"/facilitator/{action}", json=body)
            assert response.status_code == 200, (name, action, response.text)
            assert (response.json()[flag], response.json()[key]) == (False, reason), (
                name, action)
    assert shop.transfers() == []


def test_the_facilitator_takes_v1_requirements(shop):
    payload = sign_authorization(shop.payer)
    requirements = {"scheme": "exact", "network": "base-sepolia", "maxAmountRequired": str(PRICE),
                    "resource": "http://x/y", "description": "", "mimeType": "application/json",
                    "payTo": PAY_TO, "maxTimeoutSeconds": 60,
                    "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                    "extra": {"name": "USDC", "version": "2"}}
    body = {"x402Version": 1, "paymentPayload": {"x402Version": 1, "scheme": "exact",
                                                 "network": "base-sepolia", "payload": payload},
            "paymentRequirements": requirements}
    verified = shop.client.post("/facilitator/verify", json=body).json()
    assert verified == {"isValid": True, "payer": shop.payer.address.lower()}
    settled = shop.client.post("/facilitator/settle", json=body).json()
    assert settled["success"] is True and settled["network"] == "base-sepolia"
    assert len(shop.transfers()) == 1


def test_the_x402_sdk_middleware_settles_through_our_facilitator(shop):
    """Another resource server - the x402 package's own FastAPI middleware - verifies and
    settles through /facilitator over HTTP, and the real client pays it."""
    import asyncio

    import httpx
    from fastapi import FastAPI
    from x402 import x402Client, x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.clients.httpx import x402_httpx_transport
    from x402.http.middleware.fastapi import payment_middleware
    from x402.mechanisms.evm.exact.register import (
        register_exact_evm_client,
        register_exact_evm_server,
    )
    from x402.mechanisms.evm.signers import EthAccountSigner

    from tests.serving.helpers import LiveServer

    before = shop.balances()
    with LiveServer(shop.client.app) as facilitator_server:
        server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(
            url=facilitator_server.url + "/facilitator")))
        register_exact_evm_server(server)
        routes = {"GET /weather": {"accepts": {"scheme": "exact", "payTo": PAY_TO,
                                               "price": "$0.01", "network": "eip155:84532"}}}
        resource = FastAPI()
        middleware = payment_middleware(routes, server)

        @resource.middleware("http")
        async def x402_middleware(request, call_next):
            return await middleware(request, call_next)

        @resource.get("/weather")
        async def weather():
            return {"sunny": True}

        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(shop.payer))

        async def run():
            transport = x402_httpx_transport(client, httpx.ASGITransport(app=resource))
            async with httpx.AsyncClient(transport=transport, base_url="http://rs") as http:
                return await http.get("/weather")

        response = asyncio.run(run())

    assert response.status_code == 200, (response.status_code, response.headers, response.text)
    assert response.json() == {"sunny": True}
    receipt = unb64(response.headers["PAYMENT-RESPONSE"])
    assert receipt["success"] is True
    [transfer] = shop.transfers()
    assert transfer.tx_hash == receipt["transaction"] and transfer.value == PRICE
    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)


# --- 5. a settlement that fails after verify: 402 with the reason, PAYMENT-RESPONSE failed ---------


def test_a_failed_settlement_answers_402_with_a_failed_payment_response(shop, monkeypatch):
    """x402 v2's HTTP transport: a failed settlement is a 402 whose PAYMENT-RESPONSE says
    success false with the errorReason (v1: X-PAYMENT-RESPONSE); the body is withheld."""
    import secrets

    from fastapi.concurrency import run_in_threadpool
    from sqlalchemy.orm import Session

    from serving.x402 import chain, gateway
    from tests.serving.x402.helpers import SEPOLIA, USDC, settlement_paths

    real_proxy = gateway._proxy

    def drain(payer: str):
        with Session(shop.api.engine) as session, session.begin():
            balance = chain.balance_of(session, SEPOLIA, USDC.address, payer)
            chain.transfer_with_authorization(
                session, SEPOLIA, USDC.address, payer=payer, to="0x" + "99" * 20, value=balance,
                nonce="0x" + secrets.token_hex(32), now=datetime.now(UTC))

    for path in settlement_paths(shop):
        for version, send, answer, network in (
                (2, "PAYMENT-SIGNATURE", "PAYMENT-RESPONSE", "eip155:84532"),
                (1, "X-PAYMENT", "X-PAYMENT-RESPONSE", "base-sepolia")):
            payer = shop.new_payer()

            async def proxy_while_draining(*args, address=payer.address, **kwargs):
                await run_in_threadpool(drain, address)
                return await real_proxy(*args, **kwargs)

            monkeypatch.setattr(gateway, "_proxy", proxy_while_draining)
            payload = sign_authorization(payer)
            header = v2_header(payload) if version == 2 else v1_header(payload)
            response = shop.get(headers={send: header})

            assert response.status_code == 402, (path, version)
            assert "credit_rating" not in response.text
            failed = unb64(response.headers[answer])
            assert failed == {"success": False, "errorReason": "insufficient_funds",
                              "transaction": "", "network": network,
                              "payer": payer.address.lower()}, (path, version, failed)
            assert response.json()["error"] == "insufficient_funds"
    assert shop.payments() == []
