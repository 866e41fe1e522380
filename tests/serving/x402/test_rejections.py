"""Payments the gateway must refuse, each with x402's reason code in the 402 (the v2
PAYMENT-REQUIRED header's `error` and the body's `error`), and with nothing claimed, settled or
moved on chain. Replays are refused whether the first use settled or not, also by a new process."""

from __future__ import annotations

import base64
import time

from eth_account import Account

from serving import cache
from tests.serving.helpers import make_api
from tests.serving.x402.helpers import (
    BASE,
    PRICE,
    b64,
    exact_offer,
    refusal_reason,
    sign_authorization,
    v1_header,
    v2_header,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def bad_payments(shop) -> dict[str, tuple[str, str]]:
    """name -> (PAYMENT-SIGNATURE value, the reason it must be refused with)."""
    payer, now = shop.payer, int(time.time())
    broke = shop.new_payer(amount=PRICE - 1)
    signed = sign_authorization(payer)
    cheaper = exact_offer(amount=PRICE - 1)
    return {
        "wrong recipient": (v2_header(sign_authorization(payer, to="0x" + "cd" * 20)),
                            "invalid_exact_evm_payload_recipient_mismatch"),
        "wrong amount": (v2_header(sign_authorization(payer, value=PRICE - 1)),
                         "invalid_exact_evm_payload_authorization_value_mismatch"),
        "expires too soon": (v2_header(sign_authorization(payer, valid_before=now + 3)),
                             "invalid_exact_evm_payload_authorization_valid_before"),
        "already expired": (v2_header(sign_authorization(payer, valid_before=now - 1)),
                            "invalid_exact_evm_payload_authorization_valid_before"),
        "not valid yet": (v2_header(sign_authorization(payer, valid_after=now + 60)),
                          "invalid_exact_evm_payload_authorization_valid_after"),
        "signed by another key": (v2_header(sign_authorization(payer, signer=Account.create())),
                                  "invalid_exact_evm_payload_signature"),
        "Base's domain name on Base Sepolia": (
            v2_header(sign_authorization(payer, domain_name="USD Coin")),
            "invalid_exact_evm_payload_signature"),
        "signature of another authorization": (
            v2_header({**sign_authorization(payer), "signature": signed["signature"]}),
            "invalid_exact_evm_payload_signature"),
        "insufficient funds": (v2_header(sign_authorization(broke)), "insufficient_funds"),
        "unknown asset": (v2_header(signed, {**exact_offer(), "asset": "0x" + "ee" * 20}),
                          "invalid_payment_requirements"),
        "accepted a price not offered": (
            v2_header(sign_authorization(payer, value=PRICE - 1), cheaper),
            "invalid_payment_requirements"),
        "accepted another payTo": (v2_header(signed, exact_offer(pay_to="0x" + "cd" * 20)),
                                   "invalid_payment_requirements"),
        "unsupported scheme": (v2_header(signed, {**exact_offer(), "scheme": "upto"}),
                               "unsupported_scheme"),
        "network not offered": (v2_header(signed, exact_offer(network=BASE,
                                                              asset=BASE.asset("USDC"))),
                                "invalid_network"),
        "not base64": ("%%% not base64 %%%", "invalid_payload"),
        "base64 of not JSON": (base64.b64encode(b"\x00\xffnope").decode(), "invalid_payload"),
        "JSON but not an object": (b64([1, 2]), "invalid_payload"),  # type: ignore[arg-type]
        "no authorization": (v2_header({"signature": signed["signature"]}), "invalid_payload"),
        "malformed nonce": (v2_header({**signed, "authorization": {
            **signed["authorization"], "nonce": "0x1234"}}), "invalid_payload"),
        "value not an integer": (v2_header({**signed, "authorization": {
            **signed["authorization"], "value": "1e4"}}), "invalid_payload"),
        "unknown x402 version": (b64({"x402Version": 3, "payload": signed}),
                                 "invalid_x402_version"),
    }


def test_bad_payments_are_refused_with_their_reason_and_nothing_moves(shop):
    cases = bad_payments(shop)
    before = shop.balances()

    reasons = {}
    for name, (header, _) in cases.items():
        response = shop.get(headers={"PAYMENT-SIGNATURE": header})
        reasons[name] = refusal_reason(response)
        assert "credit_rating" not in response.text, name

    assert reasons == {name: reason for name, (_, reason) in cases.items()}
    # A v1 payment (X-PAYMENT) for a rule that takes v2 only.
    shop.add_rule("/company/filings", protocol_versions=[2])
    v1_only = shop.get("/company/filings",
                       headers={"X-PAYMENT": v1_header(sign_authorization(shop.payer))})
    assert refusal_reason(v1_only) == "invalid_x402_version"

    assert shop.balances() == before
    assert shop.usages() == [] and shop.transfers() == [] and shop.payments() == []


def test_a_replayed_header_is_refused_and_charged_once(shop):
    payload = sign_authorization(shop.payer)
    before = shop.balances()
    first = shop.pay(payload)
    assert first.status_code == 200, first.text

    again = shop.pay(payload)
    assert refusal_reason(again) == "invalid_exact_evm_nonce_already_used"
    assert "credit_rating" not in again.text
    # The same authorization wrapped as v1 is the same nonce.
    as_v1 = shop.get(headers={"X-PAYMENT": v1_header(payload)})
    assert refusal_reason(as_v1) == "invalid_exact_evm_nonce_already_used"
    # Spelled differently (hex case): the same bytes32 nonce and signer, so the same signature.
    auth = payload["authorization"]
    respelled = {**payload, "authorization": {
        **auth, "nonce": "0x" + auth["nonce"][2:].upper(), "from": auth["from"].lower()}}
    assert refusal_reason(shop.pay(respelled)) == "invalid_exact_evm_nonce_already_used"
    # The malleated twin of the signature (s -> n - s, v flipped) pays nothing either.
    signature = bytes.fromhex(payload["signature"][2:])
    s_value = SECP256K1_N - int.from_bytes(signature[32:64], "big")
    twin = "0x" + (signature[:32] + s_value.to_bytes(32, "big")
                   + bytes([55 - signature[64]])).hex()
    assert refusal_reason(shop.pay({**payload, "signature": twin})) in (
        "invalid_exact_evm_payload_signature", "invalid_exact_evm_nonce_already_used")

    assert shop.balances() == (before[0] - PRICE, before[1] + PRICE)
    assert len(shop.transfers()) == 1 and len(shop.payments()) == 1
    assert [u.status for u in shop.usages()] == ["settled"]


def test_a_nonce_stays_used_after_a_restart(api, shop):
    settled = sign_authorization(shop.payer)
    assert shop.pay(settled).status_code == 200
    # Claimed but never settled (the upstream had no such company): used all the same.
    unsettled = sign_authorization(shop.payer)
    assert shop.pay(unsettled, name="unknown corp").status_code == 404
    before = shop.balances()

    cache.clear()
    restarted = make_api(api.settings)  # a new process on the same database
    assert restarted.client.app is not api.client.app
    for payload in (settled, unsettled):
        response = restarted.client.get(shop.url(), headers={
            "PAYMENT-SIGNATURE": v2_header(payload)})
        assert refusal_reason(response) == "invalid_exact_evm_nonce_already_used"

    assert shop.balances() == before and before[1] == PRICE  # pay_to got paid once
    [transfer] = shop.transfers()
    [payment] = shop.payments()
    assert payment.channel_reference == transfer.tx_hash
    assert sorted(u.status for u in shop.usages()) == ["settled", "upstream_failed"]
