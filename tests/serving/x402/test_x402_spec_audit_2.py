"""The second black-box audit of the x402 gateway and agent payment tokens
(docs/audits/2026-12-05-x402-tokens-2.md): the proxy (paths, methods, headers, upstream
answers), the pricing rules' path matching, token budgets to the atomic unit, expiry at the
boundary, revocation mid-research, and the wire documents checked with the `x402` package's own
models. Every test runs on SQLite and Postgres (the `oltp_url` fixture behind `shop`)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving import cache
from serving.x402 import gateway
from tests.serving.x402.helpers import (
    PAY_TO,
    PRICE,
    auth_headers,
    ledger_balances,
    legs_of,
    refusal_reason,
    required,
    sign_authorization,
    token_header,
    token_offer,
    token_row,
    unb64,
    v1_header,
    v2_header,
)

UPSTREAM = "http://merchant-api.test/base"


class Upstream:
    """A merchant API that records what reached it and answers as its query asks:
    `status=<code>` and two cookies, a custom header and a hop-by-hop one it names in
    Connection."""

    def __init__(self):
        self.seen: list[dict] = []
        self.on_call = None  # called (synchronously) while a request is being served
        self.app = Starlette(routes=[Route("/{rest:path}", self.serve,
                                           methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])

    async def serve(self, request: Request):
        self.seen.append({"method": request.method, "path": request.url.path,
                          "raw_path": request.scope["raw_path"].decode(),
                          "query": request.url.query, "headers": dict(request.headers),
                          "body": (await request.body()).decode()})
        if self.on_call is not None:
            self.on_call()
        status = int(request.query_params.get("status", "200"))
        response = JSONResponse({"served": request.url.path}, status_code=status)
        response.set_cookie("session", "s1")
        response.set_cookie("pref", "dark")
        response.headers["X-Merchant"] = "yes"
        response.headers["Connection"] = "keep-alive, X-Hop-Secret"
        response.headers["X-Hop-Secret"] = "for the next hop only"
        if 300 <= status < 400:
            response.headers["Location"] = "/base/moved"
        return response

    def paths(self) -> list[str]:
        return [seen["raw_path"] for seen in self.seen]


def use_upstream(shop, transport: httpx.AsyncBaseTransport | None = None) -> Upstream:
    """Point the seller's gateway at a recording upstream under a base path."""
    upstream = Upstream()
    response = shop.client.put("/api/v1/x402/gateway", headers=shop.headers,
                               json={"upstream_url": UPSTREAM})
    assert response.status_code == 200, response.text
    cache.clear()
    shop.client.app.state.x402_upstream = httpx.AsyncClient(
        transport=transport or httpx.ASGITransport(app=upstream.app))
    return upstream


def error_code(response) -> str:
    """api.md's envelope: {"error": {"code", "message", "details"}}."""
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]["code"]


def issue(shop, key: str, **fields) -> dict:
    body = {"agent_name": "research-agent", "amount_minor": str(3 * PRICE), **fields}
    response = shop.client.post("/api/v1/payment-tokens", json=body, headers=auth_headers(key))
    assert response.status_code == 201, response.text
    return response.json()


def pay_with_token(shop, secret: str, url: str, offer: dict | None = None):
    offer = offer or token_offer(shop.client.get(url))
    return shop.client.get(url, headers={"PAYMENT-SIGNATURE": token_header(secret, offer)})


def fire(app, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """The requests (url, headers) sent at once through one ASGI client."""
    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            return await asyncio.gather(*(client.get(url, headers=headers)
                                          for url, headers in requests))

    return asyncio.run(run())


# --- the path: what is priced is what the upstream serves ---------------------------------------


def test_an_encoded_path_never_reaches_a_priced_or_outside_path_for_free(shop):
    """A path is priced as the gateway reads it and must reach the upstream as that same path:
    encoded dot segments (`%2e%2e`, `..%2f`) would be resolved by the upstream's URL handling
    into a priced path (or out of the merchant's base URL), and an encoded `?` or `#` decoded
    and re-sent raw would cut the path short. Dot segments are a 400 `invalid_path`; `%3F` and
    `%23` stay encoded."""
    upstream = use_upstream(shop)
    shop.add_rule("/premium")
    sid = shop.seller_id

    for sneaky in ("/free/%2e%2e/premium", "/free/%2E%2E/premium", "/free%2f..%2fpremium",
                   "/free/.%2e/premium", "/free/%2e/premium", "/%2e%2e/secret",
                   "/%2e%2e/%2e%2e/admin", "/free/%2e%2e%5cpremium"):
        response = shop.client.get(f"/x402/{sid}{sneaky}?name=Acme")
        assert response.status_code == 400, (sneaky, response.status_code, response.text)
        assert error_code(response) == "invalid_path", sneaky
    assert upstream.seen == []

    for encoded in ("/premium%3Fx=1", "/premium%23top"):
        response = shop.client.get(f"/x402/{sid}{encoded}")
        assert response.status_code == 200, (encoded, response.text)
        assert upstream.seen[-1]["raw_path"] == "/base" + encoded, encoded
    assert all(path.startswith("/base/") and path != "/base/premium" for path in upstream.paths())
    assert shop.usages() == []


def test_pricing_rules_match_paths_as_the_x402_package_does(shop):
    """The x402 package's own route matching (x402HTTPServerBase: `_normalize_path`,
    `_parse_route_pattern`) collapses repeated slashes, ignores a trailing slash and case, and
    lets a trailing `/*` price the bare prefix too; `*` (and `**`) cross segments. A path an
    upstream serves as the priced resource (`/premium/`, `//premium`) must not be free here."""
    upstream = use_upstream(shop)
    shop.add_rule("/premium")
    shop.add_rule("/reports/*")
    shop.add_rule("/archive/**")
    sid = shop.seller_id
    priced = ["/premium", "/premium/", "//premium", "/Premium", "/PREMIUM/", "/reports",
              "/reports/", "/reports/2026", "/reports/2026/q4", "/archive", "/archive/a/b/c"]
    for path in priced:
        response = shop.client.get(f"/x402/{sid}{path}")
        assert response.status_code == 402, (path, response.status_code, response.text)
    assert upstream.seen == []
    for free in ("/premiums", "/premium-lite", "/reportsx", "/", "/free/premium"):
        assert shop.client.get(f"/x402/{sid}{free}").status_code == 200, free
    assert len(upstream.seen) == 5


# --- the proxy: method, query, body and headers -------------------------------------------------


def test_the_proxy_passes_the_request_through_but_not_hop_by_hop_or_payment_headers(shop):
    """RFC 9110 section 7.6.1: a proxy drops Connection, the headers Connection names,
    Keep-Alive, Proxy-Authorization/-Authenticate, TE, Trailer, Transfer-Encoding and Upgrade
    in both directions; the payment headers are for the gateway alone. Repeated response
    headers (two Set-Cookie) must stay two headers: folding Set-Cookie with commas breaks it
    (RFC 6265 section 3)."""
    upstream = use_upstream(shop)
    sid = shop.seller_id
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = shop.client.request(
            method, f"/x402/{sid}/orders/7?expand=lines&x=%20y", content=b'{"qty": 2}',
            headers={"Content-Type": "application/json", "Connection": "X-Drop-Me",
                     "X-Drop-Me": "1", "Proxy-Authorization": "Basic c2VjcmV0",
                     "TE": "trailers", "Trailer": "X-Checksum", "Keep-Alive": "timeout=5",
                     "Upgrade": "websocket", "X-PAYMENT": "abc", "PAYMENT-SIGNATURE": "abc",
                     "Authorization": "Bearer end-to-end", "X-Request-Tag": "t1"})
        assert response.status_code == 200, (method, response.text)
        seen = upstream.seen[-1]
        assert (seen["method"], seen["raw_path"], seen["query"], seen["body"]) == (
            method, "/base/orders/7", "expand=lines&x=%20y", '{"qty": 2}'), method
        headers = seen["headers"]
        for dropped in ("x-drop-me", "proxy-authorization", "te", "trailer", "keep-alive",
                        "upgrade", "x-payment", "payment-signature"):
            assert dropped not in headers, (method, dropped, headers)
        assert (headers["authorization"], headers["x-request-tag"]) == (
            "Bearer end-to-end", "t1")

        assert response.headers["X-Merchant"] == "yes"
        assert "x-hop-secret" not in response.headers
        cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
        assert len(cookies) == 2 and cookies[0].startswith("session=s1"), cookies


def test_upstream_redirects_and_errors_are_relayed_and_only_answers_below_400_charge(shop):
    """The issue: settle only after the upstream answered < 400 (the x402 SDK's middleware
    settles on < 400 too), so a 3xx is delivered and charged; a 4xx or 5xx is relayed as is and
    charges nothing. Redirects are relayed, never followed by the gateway."""
    upstream = use_upstream(shop)
    shop.add_rule("/premium")
    url = f"/x402/{shop.seller_id}/premium"
    before = shop.balances()
    for status in (404, 500, 503):
        response = shop.client.get(f"{url}?status={status}", headers={
            "PAYMENT-SIGNATURE": v2_header(sign_authorization(shop.payer))})
        assert response.status_code == status and "PAYMENT-RESPONSE" not in response.headers
    assert shop.balances() == before and shop.payments() == []

    moved = shop.client.get(f"{url}?status=302", follow_redirects=False, headers={
        "PAYMENT-SIGNATURE": v2_header(sign_authorization(shop.payer))})
    assert moved.status_code == 302 and moved.headers["Location"] == "/base/moved"
    assert unb64(moved.headers["PAYMENT-RESPONSE"])["success"] is True
    assert len(upstream.seen) == 4 and shop.balances() == (before[0] - PRICE, before[1] + PRICE)


class TimingOut(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request):
        raise httpx.ReadTimeout("the merchant's API did not answer in time", request=request)


def test_an_upstream_timeout_is_a_504_and_charges_nothing(shop):
    """A proxy whose upstream does not answer in time says 504 Gateway Timeout (RFC 9110
    section 15.6.5), not 502; the payer is charged nothing and a token gets its reservation
    back."""
    use_upstream(shop, TimingOut())
    shop.add_rule("/premium")
    url = f"/x402/{shop.seller_id}/premium"
    before = shop.balances()

    free = shop.client.get(f"/x402/{shop.seller_id}/free")
    paid = shop.client.get(url, headers={
        "PAYMENT-SIGNATURE": v2_header(sign_authorization(shop.payer))})
    _, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key)
    by_token = pay_with_token(shop, token["token"], url)

    for response in (free, paid, by_token):
        assert response.status_code == 504, response.text
        assert error_code(response) == "upstream_timeout"
    assert shop.balances() == before and shop.payments() == []
    assert [u.status for u in shop.usages()] == ["upstream_failed"] * 2
    assert token_row(shop.api, token["id"]).spent_minor == 0


# --- agent payment tokens -----------------------------------------------------------------------


def test_a_token_budget_holds_to_the_atomic_unit_under_parallel_calls(shop):
    """A budget one atomic unit short of four calls pays exactly three of twelve concurrent
    calls; the rest are 402 token_budget_exhausted; the remaining budget is the money string
    "9999"; every payment is booked buyer -> seller and the ledger balances."""
    buyer_id, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key, amount_minor=str(4 * PRICE - 1))
    offer = token_offer(shop.get())
    header = {"PAYMENT-SIGNATURE": token_header(token["token"], offer)}

    responses = fire(shop.client.app, [(shop.url(name=f"Co{i}"), header) for i in range(12)])

    assert Counter(r.status_code for r in responses) == {200: 3, 402: 9}
    assert {refusal_reason(r) for r in responses if r.status_code == 402} == {
        "token_budget_exhausted"}
    shown = shop.client.get(f"/api/v1/payment-tokens/{token['id']}",
                            headers=auth_headers(buyer_key)).json()
    assert (shown["spent_minor"], shown["remaining_minor"], shown["calls"]) == (
        str(3 * PRICE), str(PRICE - 1), 3)
    payments = shop.payments()
    assert len(payments) == 3 and {p.channel_id for p in payments} == {"ch_agent_token"}
    for payment in payments:
        assert legs_of(shop.api, payment.id) == {f"merchant_payable:{buyer_id}": PRICE,
                                                 f"merchant_payable:{shop.seller_id}": -PRICE}
    assert ledger_balances(shop.api)


@pytest.fixture
def frozen_gateway_clock(monkeypatch):
    """The gateway's wall clock, set by the test (datetime.now in serving/x402/gateway.py)."""
    instant = {"now": None}

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return instant["now"] or datetime.now(tz)

    monkeypatch.setattr(gateway, "datetime", Clock)
    return instant


def test_a_token_pays_until_the_instant_it_expires(shop, frozen_gateway_clock):
    """`expires_at` is the first instant the token no longer pays: a microsecond before, it
    pays; at and after it, 402 token_expired with nothing reserved."""
    _, buyer_key = shop.api.merchant("Research Agent Co")
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    token = issue(shop, buyer_key, expires_at=expires.isoformat().replace("+00:00", "Z"))
    offer = token_offer(shop.get())

    frozen_gateway_clock["now"] = expires - timedelta(microseconds=1)
    assert pay_with_token(shop, token["token"], shop.url(), offer).status_code == 200
    for instant in (expires, expires + timedelta(microseconds=1)):
        frozen_gateway_clock["now"] = instant
        assert refusal_reason(pay_with_token(shop, token["token"], shop.url(), offer)) == (
            "token_expired")
    row = token_row(shop.api, token["id"])
    assert (row.spent_minor, row.calls) == (PRICE, 1)


def test_a_token_revoked_mid_research_pays_the_call_in_flight_and_nothing_after(shop):
    """Revocation takes effect for every call not yet reserved; a call whose price was reserved
    before it is delivered and charged (like an authorization taken before a card is
    blocked). The agent's next call is 403 token_revoked."""
    upstream = use_upstream(shop)
    shop.add_rule("/premium")
    _, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key)
    url = f"/x402/{shop.seller_id}/premium"
    offer = token_offer(shop.client.get(url))

    def revoke():
        upstream.on_call = None
        revoked = shop.client.delete(f"/api/v1/payment-tokens/{token['id']}",
                                     headers=auth_headers(buyer_key))
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"

    upstream.on_call = revoke
    in_flight = asyncio.run(_get(shop, url, token_header(token["token"], offer)))
    after = pay_with_token(shop, token["token"], url, offer)

    assert in_flight.status_code == 200, in_flight.text
    assert after.status_code == 403 and error_code(after) == "token_revoked"
    row = token_row(shop.api, token["id"])
    assert (row.status, row.spent_minor, row.calls) == ("revoked", PRICE, 1)
    assert len(shop.payments()) == 1


async def _get(shop, url: str, payment: str) -> httpx.Response:
    """One request from a second client, so the upstream can call the API meanwhile."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shop.client.app),
                                 base_url="http://testserver") as client:
        return await client.get(url, headers={"PAYMENT-SIGNATURE": payment})


def test_a_token_scope_reads_the_path_the_upstream_serves(shop):
    """A token limited to one path pays that path however it is spelt (a trailing slash) and
    nothing else: not a sibling reached through encoded dot segments, not another merchant's
    endpoint (403 token_scope_merchant), not the offer of another merchant."""
    use_upstream(shop)
    shop.add_rule("/premium")
    shop.add_rule("/officers")
    other = shop.api.merchant("Another Seller")
    _, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key, allowed_paths=["/premium"],
                  allowed_merchants=[shop.seller_id])
    sid = shop.seller_id
    assert pay_with_token(shop, token["token"], f"/x402/{sid}/premium/").status_code == 200
    officers = pay_with_token(shop, token["token"], f"/x402/{sid}/officers")
    assert officers.status_code == 403 and error_code(officers) == "token_scope_path"
    sneaky = shop.client.get(f"/x402/{sid}/premium/%2e%2e/officers", headers={
        "PAYMENT-SIGNATURE": token_header(token["token"], token_offer(
            shop.client.get(f"/x402/{sid}/premium")))})
    assert sneaky.status_code == 400 and error_code(sneaky) == "invalid_path"

    # Another merchant selling the same path: the token may not pay it.
    response = shop.client.put("/api/v1/x402/gateway", headers=auth_headers(other[1]),
                               json={"upstream_url": UPSTREAM})
    assert response.status_code == 200
    response = shop.client.post("/api/v1/x402/pricing-rules", headers=auth_headers(other[1]),
                                json={"path_pattern": "/premium", "amount_minor": PRICE,
                                      "pay_to": PAY_TO})
    assert response.status_code == 201
    foreign = pay_with_token(shop, token["token"], f"/x402/{other[0]}/premium")
    assert foreign.status_code == 403 and error_code(foreign) == "token_scope_merchant"
    # ... nor with the first merchant's offer (the offer names its merchant).
    mine = token_offer(shop.client.get(f"/x402/{sid}/premium"))
    crossed = pay_with_token(shop, token["token"], f"/x402/{other[0]}/premium", mine)
    assert refusal_reason(crossed) == "invalid_payment_requirements"
    assert token_row(shop.api, token["id"]).spent_minor == PRICE


def test_the_agent_holding_a_token_sees_nothing_of_the_api(shop):
    """The token is a payment credential, not an API key: as a bearer on /api/v1 it is a 401
    (the agent sees only what its calls buy); the issuing merchant sees the token, another
    merchant (the seller included) gets 404."""
    _, buyer_key = shop.api.merchant("Research Agent Co")
    token = issue(shop, buyer_key)
    for url in ("/api/v1/payment-tokens", f"/api/v1/payment-tokens/{token['id']}",
                "/api/v1/x402/usage", "/api/v1/payments"):
        response = shop.client.get(url, headers=auth_headers(token["token"]))
        assert response.status_code == 401, (url, response.text)
        assert error_code(response) == "invalid_token", url
    seller_view = shop.client.get(f"/api/v1/payment-tokens/{token['id']}", headers=shop.headers)
    assert seller_view.status_code == 404


# --- rate limits --------------------------------------------------------------------------------


def test_a_rate_limited_payment_is_not_claimed_and_pays_later(shop):
    """A 429 (api.md's envelope, Retry-After) comes before the authorization is claimed: the
    same signed header pays once the payer's bucket refills, and nothing was charged for the
    429. The merchant's limit counts every call, unpriced ones included."""
    response = shop.client.put("/api/v1/x402/gateway", headers=shop.headers, json={
        "upstream_url": "http://company-info.sim", "payer_requests_per_minute": 1})
    assert response.status_code == 200
    cache.clear()
    assert shop.pay(sign_authorization(shop.payer)).status_code == 200
    header = {"PAYMENT-SIGNATURE": v2_header(sign_authorization(shop.payer))}
    limited = shop.get(headers=header)
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert len(shop.usages()) == 1

    shop.client.app.state.x402_limits = None  # the bucket refilled
    assert shop.get(headers=header).status_code == 200
    assert len(shop.usages()) == 2 and len(shop.payments()) == 2


# --- the wire documents, read back with the x402 package's models -------------------------------


def test_the_402_and_the_receipts_parse_with_the_x402_package(shop):
    from x402.schemas import PaymentRequired, SettleResponse, SupportedResponse
    from x402.schemas.v1 import PaymentRequiredV1

    unpaid = shop.get()
    v2 = PaymentRequired.model_validate(required(unpaid))
    assert v2.x402_version == 2 and v2.resource.url.endswith(shop.url())
    exact = v2.accepts[0]
    assert (exact.scheme, exact.network, exact.amount, exact.pay_to, exact.max_timeout_seconds,
            exact.extra) == ("exact", "eip155:84532", str(PRICE), PAY_TO, 60,
                             {"name": "USDC", "version": "2"})
    assert re.fullmatch(r"eip155:\d+", exact.network)
    v1 = PaymentRequiredV1.model_validate(unpaid.json())
    assert (v1.accepts[0].max_amount_required, v1.accepts[0].network) == (str(PRICE),
                                                                          "base-sepolia")
    # The header is base64 of JSON (standard alphabet, padded).
    raw = unpaid.headers["PAYMENT-REQUIRED"]
    assert base64.b64encode(base64.b64decode(raw, validate=True)).decode() == raw

    paid_v2 = shop.pay(sign_authorization(shop.payer))
    paid_v1 = shop.get(headers={"X-PAYMENT": v1_header(sign_authorization(shop.payer))})
    for response, header, network in ((paid_v2, "PAYMENT-RESPONSE", "eip155:84532"),
                                      (paid_v1, "X-PAYMENT-RESPONSE", "base-sepolia")):
        assert response.status_code == 200, response.text
        settled = SettleResponse.model_validate(unb64(response.headers[header]))
        # the payer as an address (the gateway writes it lowercase; addresses are
        # case-insensitive, the SDK's facilitator echoes `from` as signed)
        assert (settled.success, settled.network, settled.payer.lower()) == (
            True, network, shop.payer.address.lower())
        assert re.fullmatch(r"0x[0-9a-f]{64}", settled.transaction)
        [transfer] = shop.transfers(tx_hash=settled.transaction)
        assert transfer.value == PRICE

    supported = SupportedResponse.model_validate(shop.client.get("/facilitator/supported").json())
    kinds = {(k.x402_version, k.scheme, k.network) for k in supported.kinds}
    assert {(2, "exact", "eip155:84532"), (2, "exact", "eip155:8453"),
            (1, "exact", "base-sepolia"), (1, "exact", "base")} <= kinds


def test_the_chain_export_is_eth_getlogs_shaped(shop, tmp_path):
    """Each exported Transfer log as a node's eth_getLogs returns it: address, topics
    [Transfer's signature, from, to] as 32-byte words, data the value as one 32-byte word,
    blockNumber / logIndex / transactionIndex-free hex quantities, 32-byte hashes, removed."""
    from clearhouse.sim_chain import export

    shop.pay(sign_authorization(shop.payer))
    [written] = export(shop.api.engine, tmp_path, now=datetime.now(UTC) + timedelta(seconds=4))
    document = json.loads(written.path.read_text())
    logs = document["logs"]
    quantity, word = re.compile(r"0x(0|[1-9a-f][0-9a-f]*)"), re.compile(r"0x[0-9a-f]{64}")
    transfer_topic = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    paid = [log for log in logs if log["topics"][1] != "0x" + "0" * 64]
    assert len(logs) == 2 and len(paid) == 1
    for log in logs:
        assert log["address"].lower() == "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
        assert log["topics"][0] == transfer_topic and len(log["topics"]) == 3
        assert all(word.fullmatch(topic) for topic in log["topics"])
        assert word.fullmatch(log["data"])
        for name in ("blockNumber", "logIndex"):
            assert quantity.fullmatch(log[name]), (name, log[name])
        assert word.fullmatch(log["transactionHash"]) and word.fullmatch(log["blockHash"])
        assert log["removed"] is False
    [log] = paid
    assert log["topics"][1] == "0x" + "0" * 24 + shop.payer.address[2:].lower()
    assert log["topics"][2] == "0x" + "0" * 24 + PAY_TO[2:].lower()
    assert int(log["data"], 16) == PRICE
