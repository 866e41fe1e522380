"""Agent payment tokens: a buyer merchant gives an agent a budget; the agent pays priced paths
with the token offer of the 402. Spending is booked buyer -> seller inside the platform, and
every limit (budget, per-call cap, expiry, revocation, scopes, forgery) is enforced with nothing
spent or booked when it bites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from tests.serving.x402.helpers import (
    DETAIL,
    PRICE,
    auth_headers,
    event_trail,
    ledger_balances,
    legs_of,
    refusal_reason,
    token_header,
    token_offer,
    token_row,
    unb64,
)
from warehouse.models import AgentPaymentToken


def issue(shop, buyer_key: str, **fields) -> dict:
    body = {"agent_name": "research-agent", "amount_minor": str(3 * PRICE), **fields}
    response = shop.client.post("/api/v1/payment-tokens", json=body,
                                headers=auth_headers(buyer_key))
    assert response.status_code == 201, response.text
    return response.json()


def pay_with(shop, secret: str, path: str = DETAIL, name: str = "Acme", accepted=None):
    offer = accepted or token_offer(shop.get(path, name))
    return shop.get(path, name, {"PAYMENT-SIGNATURE": token_header(secret, offer)})


def spent(shop, buyer_key: str, token_id: str) -> tuple[str, int]:
    body = shop.client.get(f"/api/v1/payment-tokens/{token_id}",
                           headers=auth_headers(buyer_key)).json()
    return body["spent_minor"], body["calls"]


def test_a_token_pays_until_its_budget_is_spent(shop):
    buyer_id, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key, per_call_cap_minor=str(PRICE),
                  expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                  allowed_merchants=[shop.seller_id], allowed_paths=["/company/*"])
    assert token["token"].startswith("cpt_") and token["spent_minor"] == "0"
    assert "token" not in shop.client.get(f"/api/v1/payment-tokens/{token['id']}",
                                          headers=auth_headers(buyer_key)).json()

    response = pay_with(shop, token["token"])

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme" and "credit_rating" in response.json()
    receipt = unb64(response.headers["PAYMENT-RESPONSE"])
    [usage] = shop.usages()
    [payment] = shop.payments()
    assert receipt == {"success": True, "transaction": payment.id, "network": "clearhouse",
                       "payer": token["id"], "amount": str(PRICE)}
    assert (usage.status, usage.scheme, usage.token_id, usage.payment_id, usage.nonce) == (
        "settled", "token", token["id"], payment.id, None)
    assert (payment.merchant_id, payment.status, payment.channel_id, payment.channel_reference,
            payment.amount_minor, payment.currency) == (
        shop.seller_id, "success", "ch_agent_token", usage.id, PRICE, "USDC")
    assert event_trail(shop.api, payment.id)[-1] == "success"
    assert legs_of(shop.api, payment.id) == {f"merchant_payable:{buyer_id}": PRICE,
                                             f"merchant_payable:{shop.seller_id}": -PRICE}
    assert ledger_balances(shop.api)
    assert shop.transfers() == []  # nothing on chain
    assert spent(shop, buyer_key, token["id"]) == (str(PRICE), 1)

    # An upstream 404 gives the reservation back.
    missing = pay_with(shop, token["token"], name="unknown corp")
    assert missing.status_code == 404 and "PAYMENT-RESPONSE" not in missing.headers
    assert spent(shop, buyer_key, token["id"]) == (str(PRICE), 1)

    for name in ("Globex", "Initech"):
        assert pay_with(shop, token["token"], "/company/detail", name).status_code == 200
    assert spent(shop, buyer_key, token["id"]) == (str(3 * PRICE), 3)

    exhausted = pay_with(shop, token["token"], name="Umbrella")
    assert refusal_reason(exhausted) == "token_budget_exhausted"
    assert "credit_rating" not in exhausted.text
    assert spent(shop, buyer_key, token["id"]) == (str(3 * PRICE), 3)
    assert len(shop.payments()) == 3
    assert sorted(u.status for u in shop.usages()) == ["settled"] * 3 + ["upstream_failed"]


def test_token_limits_refuse_the_call_and_spend_nothing(shop):
    _, buyer_key = shop.api.merchant("Research Agent Co")
    offer = token_offer(shop.get())

    capped = issue(shop, buyer_key, amount_minor=str(10 * PRICE),
                   per_call_cap_minor=str(PRICE - 1))
    assert refusal_reason(pay_with(shop, capped["token"], accepted=offer)) == (
        "token_per_call_cap_exceeded")

    expired = issue(shop, buyer_key)
    with Session(shop.api.engine) as session, session.begin():
        session.get(AgentPaymentToken, expired["id"]).expires_at = (
            datetime.now(UTC) - timedelta(seconds=1))
    assert refusal_reason(pay_with(shop, expired["token"], accepted=offer)) == "token_expired"

    revoked = issue(shop, buyer_key)
    # Only the issuing merchant revokes its tokens (to anyone else they do not exist).
    response = shop.client.delete(f"/api/v1/payment-tokens/{revoked['id']}",
                                  headers=shop.headers)
    assert response.status_code == 404
    response = shop.client.delete(f"/api/v1/payment-tokens/{revoked['id']}",
                                  headers=auth_headers(buyer_key))
    assert response.status_code == 200 and response.json()["status"] == "revoked"

    other_merchant = issue(shop, buyer_key, allowed_merchants=["mer_someone_else"])
    other_path = issue(shop, buyer_key, allowed_paths=["/company/officers"])
    valid = issue(shop, buyer_key)
    body, _, mac = valid["token"].rpartition(".")
    forbidden = [
        ("token_revoked", revoked["token"]),
        ("token_scope_merchant", other_merchant["token"]),
        ("token_scope_path", other_path["token"]),
        ("token_invalid", f"{body}.{'0' * len(mac)}"),  # a forged MAC
        ("token_invalid", f"cpt_made_up.{mac}"),  # another token's MAC
        ("token_invalid", "not-a-token"),
    ]
    for reason, secret in forbidden:
        response = pay_with(shop, secret, accepted=offer)
        assert response.status_code == 403, (reason, response.text)
        assert response.json()["error"]["code"] == reason
        assert "credit_rating" not in response.text

    cheaper = {**offer, "amount": str(PRICE - 1)}
    assert refusal_reason(pay_with(shop, valid["token"], accepted=cheaper)) == (
        "invalid_payment_requirements")

    assert shop.usages() == [] and shop.payments() == []
    for token in (capped, expired, revoked, other_merchant, other_path, valid):
        row = token_row(shop.api, token["id"])
        assert (row.spent_minor, row.calls) == (0, 0), token["agent_name"]


def test_token_issue_validation(api):
    _, buyer_key = api.merchant("Research Agent Co")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    invalid = {
        "cap above budget": ({"amount_minor": "100", "per_call_cap_minor": "101"},
                             "cap_exceeds_budget"),
        "expired already": ({"amount_minor": "100", "expires_at": past}, "expires_in_past"),
        "no UTC offset": ({"amount_minor": "100", "expires_at": "2099-01-01T00:00:00"},
                          "invalid_timestamp"),
        "float budget": ({"amount_minor": 1.5}, None),
        "zero budget": ({"amount_minor": "0"}, None),
        "path scope without slash": ({"amount_minor": "100", "allowed_paths": ["company/*"]},
                                     None),
    }
    for name, (fields, code) in invalid.items():
        response = api.client.post("/api/v1/payment-tokens", headers=auth_headers(buyer_key),
                                    json={"agent_name": "a", **fields})
        assert response.status_code == 422, (name, response.text)
        if code:
            assert response.json()["error"]["code"] == code, name
    listed = api.client.get("/api/v1/payment-tokens", headers=auth_headers(buyer_key)).json()
    assert listed["data"] == []


def test_a_call_left_unsettled_is_written_off_and_its_reservation_given_back(shop, monkeypatch):
    """The worker dies between the upstream's answer and the settlement: the usage stays
    `verified` with the token's budget reserved. The background worker's write-off marks it
    `abandoned` and gives the reservation back - but only once it is older than any request
    could still be running - and a settlement arriving after that is refused."""
    from serving.x402 import booking, gateway

    _, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key)
    settle = gateway._settle_token

    def crash(*args, **kwargs):
        raise RuntimeError("the worker process died")

    monkeypatch.setattr(gateway, "_settle_token", crash)
    with pytest.raises(RuntimeError, match="died"):
        pay_with(shop, token["token"])
    [usage] = shop.usages()
    assert usage.status == "verified"
    assert spent(shop, buyer_key, token["id"]) == (str(PRICE), 1)

    now = datetime.now(UTC)
    with Session(shop.api.engine) as session, session.begin():
        assert booking.write_off_abandoned(session, now) == 0  # could still be in flight
    with Session(shop.api.engine) as session, session.begin():
        later = now + booking.ABANDONED_AFTER + timedelta(seconds=1)
        assert booking.write_off_abandoned(session, later) == 1
    [usage] = shop.usages()
    assert usage.status == "abandoned" and "nothing charged" in usage.error_reason
    assert spent(shop, buyer_key, token["id"]) == ("0", 0)
    with Session(shop.api.engine) as session, session.begin():
        assert booking.write_off_abandoned(session, later) == 0  # given back once

    # the late settlement of the written-off call charges nothing
    try:
        settle(shop.api.engine, usage.id, token["id"], 200)
    except Exception as exc:  # noqa: BLE001 - the reason is what matters
        assert getattr(exc, "reason", None) == "settlement_expired", exc
    else:
        raise AssertionError("a written-off call was settled")
    assert shop.payments() == [] and spent(shop, buyer_key, token["id"]) == ("0", 0)
    # ... and the budget pays the next call as usual
    monkeypatch.setattr(gateway, "_settle_token", settle)
    assert pay_with(shop, token["token"]).status_code == 200
    assert spent(shop, buyer_key, token["id"]) == (str(PRICE), 1)
