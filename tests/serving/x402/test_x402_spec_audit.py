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


# --- api.md on the pricing-rule and token endpoints ---------------------------------------------


def test_pricing_rules_follow_the_api_conventions(shop):
    other_id, other_key = shop.api.merchant("Other Seller")
    rules = "/api/v1/x402/pricing-rules"
    body = {"path_pattern": "/reports/*", "amount_minor": 50000, "pay_to": PAY_TO,
            "network": "eip155:8453", "description": "reports"}
    for bad in (0.5, 50000.0, "0.05", "5e4", "1,000", True, -1, 0):
        response = shop.client.post(rules, json={**body, "amount_minor": bad},
                                    headers=shop.headers)
        assert response.status_code == 422, (bad, response.text)
        error = response.json()["error"]
        assert error["code"] and error["message"] and "amount_minor" in str(error["details"]), bad
    created = shop.client.post(rules, json=body, headers=shop.headers)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["id"].startswith("xpr_") and rule["amount_minor"] == "50000"
    assert (rule["currency"], rule["network"], rule["asset_address"], rule["billing_mode"]) == (
        "USDC", "eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "per_request")
    assert Z_TIMESTAMP.fullmatch(rule["created_at"])
    # the offer on Base: its asset and EIP-712 domain; v1 names the network "base"
    offered = shop.get("/reports/q3")
    [exact, _token] = required(offered)["accepts"]
    assert (exact["network"], exact["asset"], exact["extra"], exact["amount"]) == (
        "eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        {"name": "USD Coin", "version": "2"}, "50000")
    [v1] = offered.json()["accepts"]
    assert (v1["network"], v1["maxAmountRequired"], v1["payTo"]) == ("base", "50000", PAY_TO)

    assert shop.client.get(rules).status_code == 401
    assert shop.client.post(rules, json=body).status_code == 401
    assert shop.client.get(f"{rules}/{rule['id']}", headers=auth_headers("sk_test_nope")
                           ).status_code == 401
    for method in ("get", "delete"):
        foreign = getattr(shop.client, method)(f"{rules}/{rule['id']}",
                                               headers=auth_headers(other_key))
        assert foreign.status_code == 404, (method, foreign.text)
        assert foreign.json()["error"]["code"] == "resource_missing"
    page = shop.client.get(f"{rules}?limit=1", headers=shop.headers).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    rest = shop.client.get(f"{rules}?limit=1&starting_after={page['data'][0]['id']}",
                           headers=shop.headers).json()
    assert rest["data"][0]["id"] != page["data"][0]["id"]
    assert shop.client.get(f"{rules}?limit=101", headers=shop.headers).status_code == 422
    assert shop.client.get(rules, headers=auth_headers(other_key)).json() == {
        "data": [], "has_more": False}


def test_payment_tokens_follow_the_api_conventions(shop):
    buyer_id, buyer_key = shop.api.merchant("Buyer")
    other_id, other_key = shop.api.merchant("Other Buyer")
    for bad in (0.5, 30000.0, "0.03", "3e4", -1, 0):
        response = issue(shop, buyer_key, amount_minor=bad)
        assert response.status_code == 422, (bad, response.text)
        assert "amount_minor" in str(response.json()["error"]["details"]), bad
    assert issue(shop, buyer_key, per_call_cap_minor=1.5).status_code == 422
    assert issue(shop, "sk_test_nope").status_code == 401
    assert shop.client.post("/api/v1/payment-tokens",
                            json={"agent_name": "a", "amount_minor": 1}).status_code == 401
    operator = issue(shop, shop.api.admin_token)
    assert operator.status_code == 403 and operator.json()["error"]["code"] == "forbidden"

    expires = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    created = issue(shop, buyer_key, amount_minor=30000, per_call_cap_minor=PRICE,
                    expires_at=expires.isoformat().replace("+00:00", "Z"))
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["id"].startswith("apt_") and token["token"].startswith("cpt_")
    assert (token["amount_minor"], token["spent_minor"], token["remaining_minor"],
            token["per_call_cap_minor"], token["currency"]) == (
        "30000", "0", "30000", str(PRICE), "USDC")
    assert Z_TIMESTAMP.fullmatch(token["expires_at"]) and Z_TIMESTAMP.fullmatch(
        token["created_at"])
    assert datetime.fromisoformat(token["expires_at"]) == expires

    url = f"/api/v1/payment-tokens/{token['id']}"
    for method in ("get", "delete"):
        foreign = getattr(shop.client, method)(url, headers=auth_headers(other_key))
        assert foreign.status_code == 404, (method, foreign.text)
        assert foreign.json()["error"]["code"] == "resource_missing"
    assert shop.client.get(url).status_code == 401
    assert shop.client.get("/api/v1/payment-tokens", headers=auth_headers(other_key)).json() == {
        "data": [], "has_more": False}
    issue(shop, buyer_key)
    page = shop.client.get("/api/v1/payment-tokens?limit=1", headers=auth_headers(buyer_key))
    assert page.json()["has_more"] is True and len(page.json()["data"]) == 1
    assert "token" not in page.json()["data"][0]
    assert shop.client.get("/api/v1/payment-tokens?limit=0",
                           headers=auth_headers(buyer_key)).status_code == 422
    # stored hashed: the secret is nowhere in the database
    from tests.serving.x402.helpers import token_row
    row = token_row(shop.api, token["id"])
    assert token["token"] not in str(vars(row)) and len(row.token_hash) == 64


def test_issuing_a_token_takes_an_idempotency_key(shop):
    """api.md: a POST that creates or moves money accepts Idempotency-Key. A token is a budget
    the issuing merchant's money pays: a retried issue must not make a second budget."""
    buyer_id, buyer_key = shop.api.merchant("Buyer")
    key = uuid.uuid4().hex
    first = issue(shop, buyer_key, idem=key, amount_minor="30000")
    assert first.status_code == 201, first.text
    again = issue(shop, buyer_key, idem=key, amount_minor="30000")
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()  # the same token, its secret included
    listed = shop.client.get("/api/v1/payment-tokens", headers=auth_headers(buyer_key)).json()
    assert [t["id"] for t in listed["data"]] == [first.json()["id"]]
    other = issue(shop, buyer_key, idem=key, amount_minor="40000")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # the replayed secret pays
    paid = shop.get(headers={"PAYMENT-SIGNATURE": token_header(
        again.json()["token"], token_offer(shop.get()))})
    assert paid.status_code == 200, paid.text
    # without a key, each POST is a new token
    assert issue(shop, buyer_key).json()["id"] != issue(shop, buyer_key).json()["id"]


def test_a_token_in_a_currency_no_priced_resource_takes_is_refused_when_issued(shop):
    """402-priced resources are priced in USDC: a budget in USD could never be spent (every call
    would answer token_currency_mismatch), so the issue itself is a 422 naming the field."""
    buyer_id, buyer_key = shop.api.merchant("Buyer")
    refused = issue(shop, buyer_key, currency="USD")
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["details"]["field"] == "currency" and "USDC" in error["message"]
    listed = shop.client.get("/api/v1/payment-tokens", headers=auth_headers(buyer_key)).json()
    assert listed["data"] == []  # nothing was issued
    assert issue(shop, buyer_key, currency="USDC").status_code == 201


# --- 6. every paid call: a usage record and a payment on the payments API's ledger ---------------


def test_a_paid_call_shows_in_usage_and_in_the_payments_api(shop):
    paid = shop.pay(sign_authorization(shop.payer))
    assert paid.status_code == 200, paid.text
    tx = unb64(paid.headers["PAYMENT-RESPONSE"])["transaction"]
    [usage] = shop.client.get("/api/v1/x402/usage", headers=shop.headers).json()["data"]
    assert usage["id"].startswith("xpu_") and Z_TIMESTAMP.fullmatch(usage["created_at"])
    assert {k: usage[k] for k in ("merchant_id", "rule_id", "path", "amount_minor", "currency",
                                  "payer", "tx_hash", "status", "scheme", "network")} == {
        "merchant_id": shop.seller_id, "rule_id": shop.rule_id, "path": "/company/detail",
        "amount_minor": str(PRICE), "currency": "USDC", "payer": shop.payer.address.lower(),
        "tx_hash": tx, "status": "settled", "scheme": "exact", "network": "eip155:84532"}
    payment = shop.client.get(f"/api/v1/payments/{usage['payment_id']}", headers=shop.headers)
    assert payment.status_code == 200, payment.text
    assert {k: payment.json()[k] for k in ("status", "channel", "channel_reference",
                                           "amount_minor", "currency")} == {
        "status": "success", "channel": "ch_x402_sim", "channel_reference": tx,
        "amount_minor": str(PRICE), "currency": "USDC"}


def test_a_v2_only_402_still_has_a_json_body_with_the_offers(shop):
    shop.add_rule("/company/filings", protocol_versions=[2])
    unpaid = shop.get("/company/filings")
    assert unpaid.status_code == 402
    header = required(unpaid)
    assert header["x402Version"] == 2 and "error" not in header or header["error"]
    body = unpaid.json()
    assert body["x402Version"] == 2 and body["error"]


# --- 5. once ever: an authorization the gateway claimed is spent for the facilitator too --------


def test_an_authorization_the_gateway_claimed_never_settles_through_the_facilitator(shop):
    from tests.serving.x402.helpers import facilitator_request

    undelivered = sign_authorization(shop.payer)  # claimed, the upstream failed: not charged
    assert shop.pay(undelivered, name="unknown corp").status_code == 404
    delivered = sign_authorization(shop.payer)
    assert shop.pay(delivered).status_code == 200
    before = shop.balances()
    for payload in (undelivered, delivered):
        body = facilitator_request(payload)
        verified = shop.client.post("/facilitator/verify", json=body).json()
        assert (verified["isValid"], verified["invalidReason"]) == (
            False, "invalid_exact_evm_nonce_already_used")
        settled = shop.client.post("/facilitator/settle", json=body).json()
        assert (settled["success"], settled["errorReason"]) == (
            False, "invalid_exact_evm_nonce_already_used")
    assert shop.balances() == before and len(shop.transfers()) == 1


# --- 8. the token scheme: a v2 payload in either payment header; a v1 one is refused, not a 500 --


def test_a_token_payload_in_v1_shape_is_refused_and_in_x_payment_pays(shop):
    from tests.serving.x402.helpers import b64

    _, buyer_key = shop.api.merchant("Buyer")
    secret = issue(shop, buyer_key, amount_minor=str(10 * PRICE)).json()["token"]
    offer = token_offer(shop.get())
    v1_token = b64({"x402Version": 1, "scheme": "token", "network": "clearhouse",
                    "payload": {"token": secret}})
    for header in ("PAYMENT-SIGNATURE", "X-PAYMENT"):
        response = shop.get(headers={header: v1_token})
        assert refusal_reason(response) == "invalid_x402_version", header
    other_network = {**offer, "network": "eip155:84532"}
    assert refusal_reason(shop.get(headers={"PAYMENT-SIGNATURE": token_header(
        secret, other_network)})) == "invalid_payment_requirements"
    assert shop.usages() == []
    paid = shop.get(headers={"X-PAYMENT": token_header(secret, offer)})
    assert paid.status_code == 200, paid.text
    assert unb64(paid.headers["PAYMENT-RESPONSE"])["success"] is True
