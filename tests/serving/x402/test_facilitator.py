"""The local facilitator over HTTP (/facilitator/supported|verify|settle), as other resource
servers call it: always 200, with isValid / success and x402's reason codes."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.x402.helpers import (
    PAY_TO,
    PRICE,
    exact_offer,
    facilitator_request,
    sign_authorization,
)


def post(shop, action: str, body: dict) -> dict:
    response = shop.client.post(f"/facilitator/{action}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_supported_lists_base_and_base_sepolia(make_settings):
    client = TestClient(create_app(make_settings()))
    kinds = client.get("/facilitator/supported").json()["kinds"]
    assert {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"} in kinds
    assert {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"} in kinds
    assert {"x402Version": 1, "scheme": "exact", "network": "base-sepolia"} in kinds
    assert {k["scheme"] for k in kinds} == {"exact"}


def test_verify_then_settle_then_the_nonce_is_spent(shop):
    payer = shop.payer.address.lower()
    body = facilitator_request(sign_authorization(shop.payer))
    before = shop.balances()

    assert post(shop, "verify", body) == {"isValid": True, "payer": payer}
    assert shop.balances() == before  # verifying moves nothing

    settled = post(shop, "settle", body)
    assert settled["success"] is True
    assert (settled["payer"], settled["network"], settled["amount"]) == (
        payer, "eip155:84532", str(PRICE))
    assert re.fullmatch(r"0x[0-9a-f]{64}", settled["transaction"])
    [transfer] = shop.transfers()
    assert (transfer.tx_hash, transfer.to_address, transfer.value) == (
        settled["transaction"], PAY_TO, PRICE)
    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)

    again = post(shop, "verify", body)
    assert (again["isValid"], again["invalidReason"]) == (
        False, "invalid_exact_evm_nonce_already_used")
    twice = post(shop, "settle", body)
    assert (twice["success"], twice["errorReason"], twice["transaction"]) == (
        False, "invalid_exact_evm_nonce_already_used", "")
    assert len(shop.transfers()) == 1
    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)
    # The facilitator books no payments: that is the resource server's business.
    assert shop.payments() == [] and shop.usages() == []


def test_invalid_payments_get_reasons_not_errors(shop):
    other, body = shop.new_payer(amount=0), facilitator_request
    cases = {
        "forged signature": (body(sign_authorization(shop.payer, signer=other)),
                             "invalid_exact_evm_payload_signature"),
        "insufficient funds": (body(sign_authorization(other)), "insufficient_funds"),
        "wrong amount": (body(sign_authorization(shop.payer, value=PRICE + 1)),
                         "invalid_exact_evm_payload_authorization_value_mismatch"),
        "unsupported network": (body(sign_authorization(shop.payer),
                                     {**exact_offer(), "network": "eip155:1"}),
                                "invalid_network"),
        "no payload": ({"x402Version": 2}, "invalid_payload"),
    }
    for name, (request, reason) in cases.items():
        verdict = post(shop, "verify", request)
        assert (verdict["isValid"], verdict["invalidReason"]) == (False, reason), name
        outcome = post(shop, "settle", request)
        assert (outcome["success"], outcome["errorReason"]) == (False, reason), name
    assert shop.transfers() == []

    # A v1 payment against v1 requirements (maxAmountRequired, a v1 network name) verifies.
    v1_requirements = {"scheme": "exact", "network": "base-sepolia",
                       "maxAmountRequired": str(PRICE), "payTo": PAY_TO,
                       "asset": exact_offer()["asset"], "maxTimeoutSeconds": 60,
                       "extra": {"name": "USDC", "version": "2"}}
    v1 = facilitator_request(sign_authorization(shop.payer), v1_requirements, version=1)
    assert post(shop, "verify", v1)["isValid"] is True
