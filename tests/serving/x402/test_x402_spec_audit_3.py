"""The third audit of the x402 gateway and facilitator (x402-notes: the facilitator answers 200
with isValid / success, a used authorization is refused): numbers that only look like digits
("²", full-width digits) or overflow uint256 are refused as invalid payloads instead of a 500
or a charge; a transfer a facilitator /settle executed while the gateway's call was upstream is
not taken as the gateway's own (one authorization, one delivery); a rule served to v1 clients
only refuses v2 and token payments. SQLite and Postgres (the `shop` fixture's engine)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from serving.x402 import facilitator, gateway
from serving.x402.protocol import offer_from_requirements, parse_payload
from serving.x402.verify import verify_exact
from tests.serving.x402.helpers import (
    auth_headers,
    exact_offer,
    facilitator_request,
    refusal_reason,
    settlement_paths,
    sign_authorization,
    token_header,
    v2_header,
)

FULL_WIDTH_PRICE = "１００００"  # 10000 in full-width digits: str.isdigit() is True


def _lenient_client(shop) -> TestClient:
    """The app with server errors answered (a 500), not raised into the test."""
    return TestClient(shop.client.app, raise_server_exceptions=False)


@pytest.mark.parametrize("field, value", [("value", "²"), ("value", FULL_WIDTH_PRICE),
                                          ("validBefore", "9" * 78)])
def test_numbers_that_only_look_like_digits_are_invalid_payloads(shop, field, value):
    client = _lenient_client(shop)
    payload = sign_authorization(shop.payer)
    payload["authorization"][field] = value

    paid = client.get(shop.url(), headers={"PAYMENT-SIGNATURE": v2_header(payload)})
    assert refusal_reason(paid) == "invalid_payload"
    for endpoint, flag, reason in (("verify", "isValid", "invalidReason"),
                                   ("settle", "success", "errorReason")):
        answer = client.post(f"/facilitator/{endpoint}", json=facilitator_request(payload))
        assert answer.status_code == 200, answer.text
        assert (answer.json()[flag], answer.json()[reason]) == (False, "invalid_payload")
    assert shop.transfers() == [] and shop.payments() == []


@pytest.mark.parametrize("field, value", [("amount", "²"), ("amount", "9" * 78),
                                          ("maxTimeoutSeconds", "²")])
def test_requirements_with_such_numbers_are_answered_not_a_500(shop, field, value):
    requirements = {**exact_offer(), field: value}
    answer = _lenient_client(shop).post("/facilitator/verify", json=facilitator_request(
        sign_authorization(shop.payer), requirements))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["isValid"], answer.json()["invalidReason"]) == (
        False, "invalid_payment_requirements")


def test_a_transfer_settled_by_the_facilitator_meanwhile_is_not_the_gateways(shop, monkeypatch):
    """The gateway claims the authorization, calls upstream, then settles. A facilitator /settle
    that passed its checks before the claim committed (Postgres, read committed) executes the
    same authorization while the call is upstream: the gateway must refuse it, not book a
    payment on that transfer and deliver a second time."""
    for path in settlement_paths(shop):
        payload = sign_authorization(shop.payer)
        body = facilitator_request(payload)
        upstream = gateway._proxy

        async def settle_meanwhile(*args, _body=body, _upstream=upstream, **kwargs):
            offer = offer_from_requirements(_body["paymentRequirements"])
            verified = verify_exact(parse_payload(_body["paymentPayload"]), [offer],
                                    int(datetime.now(UTC).timestamp()))
            with Session(shop.api.engine) as session, session.begin():
                facilitator.settle(session, verified, datetime.now(UTC))
            return await _upstream(*args, **kwargs)

        monkeypatch.setattr(gateway, "_proxy", settle_meanwhile)
        paid = shop.pay(payload)
        monkeypatch.setattr(gateway, "_proxy", upstream)

        assert paid.status_code == 402, (path, paid.text)
        assert paid.json()["error"] == "invalid_exact_evm_nonce_already_used", path
        nonce = payload["authorization"]["nonce"].lower()
        assert len(shop.transfers(nonce=nonce)) == 1, path  # the facilitator's, once
        assert shop.payments() == [], path  # nothing booked on it


def test_a_rule_for_v1_clients_only_refuses_v2_and_token_payments(shop):
    shop.add_rule("/company/officers", protocol_versions=[1])
    path = "/company/officers"
    exact = shop.get(path, headers={"PAYMENT-SIGNATURE": v2_header(
        sign_authorization(shop.payer), exact_offer())})
    assert exact.status_code == 402 and exact.json()["error"] == "invalid_x402_version"

    buyer_id, buyer_key = shop.api.merchant("Research Agent Co")
    token = shop.client.post("/api/v1/payment-tokens", headers=auth_headers(buyer_key), json={
        "agent_name": "bot", "amount_minor": "30000"}).json()
    offer = {"scheme": "token", "network": "clearhouse", "asset": "USDC", "amount": "10000",
             "payTo": shop.seller_id, "maxTimeoutSeconds": 60, "extra": {}}
    spent = shop.get(path, headers={"PAYMENT-SIGNATURE": token_header(token["token"], offer)})
    assert spent.status_code == 402 and spent.json()["error"] == "invalid_x402_version"
    assert shop.transfers() == [] and shop.payments() == []
