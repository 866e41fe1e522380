"""The x402 admin API: tenant isolation, who may write, validation, archiving a rule, and the
gateway's abuse limits (per payer and per merchant)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from serving.auth import issue_api_key
from tests.serving.x402.helpers import (
    DETAIL,
    PAY_TO,
    PRICE,
    auth_headers,
    sign_authorization,
)


def test_merchants_see_only_their_own_rules_and_usage(shop):
    assert shop.pay(sign_authorization(shop.payer)).status_code == 200
    _, other_key = shop.api.merchant("Other GmbH")
    other = auth_headers(other_key)
    rule_url = f"/api/v1/x402/pricing-rules/{shop.rule_id}"

    assert shop.client.get(rule_url, headers=shop.headers).status_code == 200
    for response in (shop.client.get(rule_url, headers=other),
                     shop.client.delete(rule_url, headers=other)):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "resource_missing"
    assert shop.client.get("/api/v1/x402/pricing-rules", headers=other).json()["data"] == []
    assert shop.client.get("/api/v1/x402/usage", headers=other).json()["data"] == []
    assert shop.client.get("/api/v1/x402/gateway", headers=other).status_code == 404

    [usage] = shop.client.get("/api/v1/x402/usage", headers=shop.headers).json()["data"]
    assert (usage["status"], usage["amount_minor"], usage["path"]) == (
        "settled", str(PRICE), DETAIL)
    assert shop.client.get(rule_url, headers=shop.headers).json()["status"] == "active"
    # Operators read every merchant's rules.
    operator = auth_headers(shop.api.admin_token)
    assert shop.client.get(rule_url, headers=operator).status_code == 200


def test_only_merchant_admins_write(shop):
    with Session(shop.api.engine) as session:
        developer = auth_headers(issue_api_key(session, shop.seller_id,
                                               role="merchant_developer"))
        session.commit()
    rule = {"path_pattern": "/company/filings", "amount_minor": "5", "pay_to": PAY_TO}
    writes = [
        shop.client.put("/api/v1/x402/gateway", headers=developer,
                        json={"upstream_url": "http://elsewhere.example"}),
        shop.client.post("/api/v1/x402/pricing-rules", headers=developer, json=rule),
        shop.client.delete(f"/api/v1/x402/pricing-rules/{shop.rule_id}", headers=developer),
        shop.client.post("/api/v1/payment-tokens", headers=developer,
                         json={"agent_name": "a", "amount_minor": "100"}),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in writes] == [
        (403, "forbidden")] * 4
    # Reading is fine, and nothing changed.
    rules = shop.client.get("/api/v1/x402/pricing-rules", headers=developer).json()["data"]
    assert [(r["id"], r["status"]) for r in rules] == [(shop.rule_id, "active")]
    gateway = shop.client.get("/api/v1/x402/gateway", headers=developer).json()
    assert gateway["upstream_url"] == "http://company-info.sim"


def test_invalid_configuration_is_refused(shop):
    def rule(**fields):
        body = {"path_pattern": "/company/filings", "amount_minor": str(PRICE), "pay_to": PAY_TO,
                **fields}
        return shop.client.post("/api/v1/x402/pricing-rules", headers=shop.headers, json=body)

    invalid = {
        "short pay_to": rule(pay_to="0x1234"),
        "pay_to not hex": rule(pay_to="0x" + "zz" * 20),
        "float amount": rule(amount_minor=10.5),
        "decimal string amount": rule(amount_minor="0.01"),
        "zero amount": rule(amount_minor="0"),
        "negative amount": rule(amount_minor="-5"),
        "unknown network": rule(network="eip155:1"),
        "unknown asset": rule(asset="DAI"),
        "pattern without slash": rule(path_pattern="company/filings"),
        "protocol version 3": rule(protocol_versions=[3]),
        "no protocol version": rule(protocol_versions=[]),
        "unknown field": rule(fee="1"),
        "upstream not http": shop.client.put("/api/v1/x402/gateway", headers=shop.headers,
                                             json={"upstream_url": "ftp://files.example"}),
    }
    assert {name: r.status_code for name, r in invalid.items()} == {n: 422 for n in invalid}
    assert invalid["short pay_to"].json()["error"]["details"]["field"] == "pay_to"
    assert invalid["float amount"].json()["error"]["details"]["field"] == "amount_minor"

    duplicate = rule(path_pattern=DETAIL)
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "rule_exists")
    _, newcomer_key = shop.api.merchant("Newcomer")
    no_gateway = shop.client.post("/api/v1/x402/pricing-rules", headers=auth_headers(newcomer_key),
                                  json={"path_pattern": "/x", "amount_minor": "1",
                                        "pay_to": PAY_TO})
    assert (no_gateway.status_code, no_gateway.json()["error"]["code"]) == (
        409, "gateway_not_configured")
    assert shop.get("/company/filings").status_code == 200  # still free: nothing was created


def test_an_archived_rule_stops_pricing_its_path(shop):
    assert shop.get().status_code == 402
    response = shop.client.delete(f"/api/v1/x402/pricing-rules/{shop.rule_id}",
                                  headers=shop.headers)
    assert response.status_code == 200 and response.json()["status"] == "archived"

    free = shop.get()
    assert free.status_code == 200 and "credit_rating" in free.json()
    assert "PAYMENT-RESPONSE" not in free.headers
    assert shop.usages() == [] and shop.payments() == []
    archived = shop.client.get("/api/v1/x402/pricing-rules?status=archived",
                               headers=shop.headers).json()["data"]
    assert [r["id"] for r in archived] == [shop.rule_id]
    # The path can be priced again.
    shop.add_rule(DETAIL, amount_minor=str(2 * PRICE))
    assert shop.get().status_code == 402


def test_over_the_rate_limits_calls_get_429_and_nothing_is_charged(shop):
    response = shop.client.put("/api/v1/x402/gateway", headers=shop.headers, json={
        "upstream_url": "http://company-info.sim", "payer_requests_per_minute": 2})
    assert response.status_code == 200
    before = shop.balances()

    statuses = [shop.pay(sign_authorization(shop.payer)).status_code for _ in range(2)]
    limited = shop.pay(sign_authorization(shop.payer))

    assert statuses == [200, 200]
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert shop.balances() == (before[0] - 2 * PRICE, before[1] + 2 * PRICE)
    assert len(shop.usages()) == 2
    # The limit is per payer: another payer still gets through.
    assert shop.pay(sign_authorization(shop.new_payer())).status_code == 200

    # The gateway's limit for all callers: 1 request per second.
    response = shop.client.put("/api/v1/x402/gateway", headers=shop.headers, json={
        "upstream_url": "http://company-info.sim", "requests_per_second": 1})
    assert response.status_code == 200
    responses = [shop.get("/company/basic") for _ in range(5)]
    assert responses[0].status_code == 200
    limited = [r for r in responses if r.status_code == 429]
    assert limited and all("Retry-After" in r.headers for r in limited)
