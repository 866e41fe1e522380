"""A sweep of api.md and money.md across every /api/v1 route, on the embedded default (SQLite),
plus POST /payments on Postgres, whose fast path answers there.

One world is built through the public API (operators, an agent tree, two merchants under two
different agents, payments, refunds, wallets, withdrawals, adjustments, prices, commission models,
channels, keys, webhook deliveries, x402 rules, payment tokens and a paid call), then each
convention is checked generically, route by route:

- every JSON body: money (`*_minor`) as integer strings, ids with a type prefix, timestamps with Z;
- every list: `limit` (default 20, 1..100, else 422 naming `limit`), `starting_after`, and
  `{"data": [...], "has_more": bool}`;
- every route with an id in its path: an unknown id is a 404 in the error shape;
- every route: no credential (or a bad one) is a 401 in the error shape;
- every body that takes money: an integer amount is accepted, a float or decimal amount is a 422
  naming the field; every 422 names the offending field;
- every POST that creates or moves money: Idempotency-Key replay and 409 idempotency_key_reused;
- another tenant's resource: 404, not 403.

Each table is checked against the app's own routes, so a new route that is not swept fails the
coverage tests instead of slipping through.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

import pytest

from serving import cache
from tests.serving.admin_helpers import publish_statements
from tests.serving.helpers import Api, make_api, random_card
from warehouse.settings import get_settings

API = "/api/v1"
CLOCK = {"Clearhouse-Test-Clock": "2026-11-22T12:00:00Z"}  # statements of 2026-11-20 settled (T+1)
PAY_TO = "0x" + "ab" * 20
PERIOD = "2026-11-20"

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
PREFIXED_ID = re.compile(r"^[a-z][a-z0-9]*_[A-Za-z0-9]")
MINOR = re.compile(r"^-?(0|[1-9][0-9]*)$")
LOOKS_LIKE_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# Ids the merchant chooses itself (not ours to prefix).
FOREIGN_IDS = {"customer_id"}

UNKNOWN = {  # a well-formed id of each kind that names nothing
    "payment_id": "pay_0000000000000000000000zzzz", "merchant_id": "mer_0000000000000000000000zzzz",
    "event_id": "evt_0000000000000000000000zzzz", "agent_id": "agt_0000000000000000000000zzzz",
    "channel_id": "ch_0000000000000000000000zzzz", "price_id": "prc_0000000000000000000000zzzz",
    "user_id": "usr_0000000000000000000000zzzz", "key_id": "key_0000000000000000000000zzzz",
    "withdrawal_id": "po_0000000000000000000000zzzz", "wallet_id": "wal_0000000000000000000000zzzz",
    "refund_id": "re_0000000000000000000000zzzz",
    "rule_id": "xpr_0000000000000000000000zzzz", "token_id": "apt_0000000000000000000000zzzz",
}


def card() -> dict:
    return {"type": "card", "number": random_card()}


# --- the world -----------------------------------------------------------------------------------

@dataclass
class World:
    api: Api
    settings: object
    admin: str
    finance: str
    agent: dict[str, str]  # "A" (top), "B" (under A), "C" (another top)
    merchant: dict[str, str]  # "A" under agent A, "C" under agent C
    key: dict[str, str]  # merchant_admin key per merchant
    agent_key: dict[str, str]  # agent key per agent A, C
    ids: dict[str, dict[str, str]]  # per tenant: path parameter -> an id it owns
    seen: list[tuple[str, str, int, object]] = field(default_factory=list)  # JSON answers

    def cred(self, role: str) -> str:
        return {"admin": self.admin, "finance": self.finance, "merchant": self.key["A"],
                "agent": self.agent_key["A"]}[role]

    def call(self, method: str, url: str, cred: str | None = None, *, json_body=None,
             idem: str | None = None, headers: dict | None = None, content: bytes | None = None):
        hdrs = dict(headers or {})
        if cred is not None:
            hdrs["Authorization"] = f"Bearer {cred}"
        if idem is not None:
            hdrs["Idempotency-Key"] = idem
        if content is not None:
            hdrs["Content-Type"] = "application/json"
        url = url if url.startswith(API) else API + url
        resp = self.api.client.request(method, url, headers=hdrs, json=json_body, content=content)
        if resp.headers.get("content-type", "").startswith("application/json"):
            self.seen.append((method, url, resp.status_code, resp.json()))
        return resp

    def ok(self, method: str, url: str, cred: str | None = None, expect: int | None = None,
           **kwargs) -> dict:
        resp = self.call(method, url, cred, **kwargs)
        assert resp.status_code < 300 and (expect is None or resp.status_code == expect), \
            f"{method} {url}: {resp.status_code} {resp.text}"
        return resp.json()

    # fresh resources, made through the API
    def pay(self, tenant: str = "A", **extra) -> dict:
        body = {"amount_minor": "1000", "currency": "USD", "merchant_reference": "order-1",
                "payment_method": card(), **extra}
        return self.ok("POST", "/payments", self.key[tenant], json_body=body,
                       idem=uuid.uuid4().hex)

    def withdrawal(self, tenant: str = "A", amount: str = "10") -> dict:
        return self.ok("POST", "/withdrawals", self.key[tenant], idem=uuid.uuid4().hex,
                       json_body={"amount_minor": amount, "currency": "USD",
                                  "destination": "acct-1"})


def _build(api: Api, settings) -> World:
    w = World(api, settings, api.admin_token, "", {}, {}, {}, {}, {"A": {}, "C": {}})
    admin = w.admin
    finance = w.ok("POST", "/users", admin, json_body={"email": "fin@clearhouse.test",
                                                        "role": "finance"})
    w.finance = finance["token"]
    w.agent["A"] = w.ok("POST", "/agents", admin, json_body={
        "name": "Agent A", "valid_from": "2021-01-01T00:00:00Z"})["id"]
    w.agent["B"] = w.ok("POST", "/agents", admin, json_body={
        "name": "Agent B", "parent_id": w.agent["A"], "valid_from": "2021-01-01T00:00:00Z"})["id"]
    w.agent["C"] = w.ok("POST", "/agents", admin, json_body={
        "name": "Agent C", "valid_from": "2021-01-01T00:00:00Z"})["id"]
    channel = w.ok("POST", "/channels", admin, json_body={
        "name": "sweep-acquirer", "type": "card", "priority": 900,
        "currencies": [{"currency": "USD", "min_amount_minor": "50", "max_amount_minor": "500000",
                        "daily_limit_minor": "100000000"}, {"currency": "EUR"}],
        "price": {"rate_bps": 120, "fixed_minor": {"USD": "30"}}})
    for t in ("A", "C"):
        created = w.ok("POST", "/merchants", admin, json_body={
            "name": f"Merchant {t}", "agent_id": w.agent[t]})
        w.merchant[t], w.key[t] = created["id"], created["api_key"]
    w.ok("POST", "/merchants", admin, json_body={"name": "Merchant B", "agent_id": w.agent["B"]})
    publish_statements(settings, [w.merchant["A"], w.merchant["C"]])  # 971 USD settled each
    for t in ("A", "C"):
        key, mid, ids = w.key[t], w.merchant[t], w.ids[t]
        ids.update(merchant_id=mid, agent_id=w.agent[t], channel_id=channel["id"],
                   user_id=finance["id"])
        first = w.pay(t)
        w.pay(t)
        ids["payment_id"] = first["id"]
        ids["pending_id"] = w.pay(t, confirm=False)["id"]
        ids["refund_id"] = w.ok("POST", "/refunds", key, idem=uuid.uuid4().hex,
                                json_body={"payment_id": first["id"], "amount_minor": "100"})["id"]
        topup = w.ok("POST", "/wallets/topups", key, idem=uuid.uuid4().hex, json_body={
            "customer_id": f"cust-{t}", "currency": "USD", "amount_minor": "5000",
            "bonus_minor": "500", "payment_method": card()})
        ids["wallet_id"] = topup["wallet"]["id"]
        w.pay(t, payment_method={"type": "wallet"}, customer={"id": f"cust-{t}"})
        w.ok("PATCH", f"/merchants/{mid}", key, json_body={"callback_url": "https://hooks.test/x"})
        ids["event_id"] = w.ok("GET", "/events", key)["data"][0]["id"]
        w.ok("POST", f"/events/{ids['event_id']}/redeliver", key)
        ids["price_id"] = w.ok("POST", "/prices", admin, json_body={
            "subject_type": "merchant", "subject_id": mid, "currency": "EUR", "rate_bps": 200,
            "fixed_minor": "25", "valid_from": "2027-01-01T00:00:00Z"})["id"]
        for currency in ("USD", "EUR"):
            w.ok("POST", f"/agents/{w.agent[t]}/commission-models", admin, json_body={
                "currency": currency, "model": "fixed", "fixed_minor": "7"})
        ids["key_id"] = w.ok("GET", f"/api-keys?merchant_id={mid}", admin)["data"][0]["id"]
        ids["victim_key_id"] = w.ok("POST", "/api-keys", admin, json_body={"merchant_id": mid})["id"]
        agent_key = w.ok("POST", "/api-keys", admin, json_body={"agent_id": w.agent[t]})
        w.agent_key[t] = agent_key["key"]
        ids["agent_key_id"] = w.ok("POST", "/api-keys", admin,
                                   json_body={"agent_id": w.agent[t]})["id"]
        ids["withdrawal_id"] = w.withdrawal(t)["id"]
        w.withdrawal(t)
        for amount in ("100", "-40"):
            w.ok("POST", f"/merchants/{mid}/adjustments", admin, idem=uuid.uuid4().hex,
                 json_body={"amount_minor": amount, "currency": "USD", "reason": "goodwill"})
        w.ok("PUT", "/x402/gateway", key, json_body={"upstream_url": "http://company-info.sim"})
        ids["rule_id"] = w.ok("POST", "/x402/pricing-rules", key, json_body={
            "path_pattern": "/company/detail", "amount_minor": "10000", "pay_to": PAY_TO})["id"]
        w.ok("POST", "/x402/pricing-rules", key, json_body={
            "path_pattern": "/company/other", "amount_minor": 20000, "pay_to": PAY_TO})
        token = w.ok("POST", "/payment-tokens", key, json_body={
            "agent_name": f"agent-{t}", "amount_minor": "100000"})
        ids["token_id"], ids["token"] = token["id"], token["token"]
        w.ok("POST", "/x402/faucet", key, json_body={"address": PAY_TO, "amount_minor": "5"})
    # a paid call: merchant A's agent token buys merchant C's priced API (an x402 usage row)
    from tests.serving.x402.helpers import token_header, token_offer

    url = f"/x402/{w.merchant['C']}/company/detail?name=Acme"
    offer = token_offer(api.client.get(url))
    paid = api.client.get(url, headers={"PAYMENT-SIGNATURE": token_header(w.ids["A"]["token"],
                                                                          offer)})
    assert paid.status_code == 200, paid.text
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from warehouse.migrate import upgrade

    home = tmp_path_factory.mktemp("conventions_sweep")
    url = f"sqlite:///{home / 'oltp.sqlite'}"
    upgrade(url)
    patch = pytest.MonkeyPatch()
    for name, value in {"home": home / "home", "environment": "test", "database_url": url}.items():
        patch.setenv(f"CLEARHOUSE_{name.upper()}", str(value))
    get_settings.cache_clear()
    cache.clear()
    settings = get_settings()
    settings.ensure_dirs()
    api = make_api(settings)
    api.client.headers.update(CLOCK)
    try:
        yield _build(api, settings)
    finally:
        patch.undo()
        get_settings.cache_clear()
        cache.clear()


def api_routes(w: World) -> set[tuple[str, str]]:
    """(method, path template) of every /api/v1 route (from the app's OpenAPI document), path
    relative to /api/v1."""
    return {(method.upper(), path.removeprefix(API))
            for path, ops in w.api.client.app.openapi()["paths"].items()
            if path.startswith(API + "/") for method in ops}


def fill(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)


def error_shape_problems(resp) -> list[str]:
    try:
        body = resp.json()
    except ValueError:
        return [f"not JSON: {resp.text[:100]!r}"]
    return error_body_problems(body)


def error_body_problems(body) -> list[str]:
    """api.md: Errors: HTTP 4xx/5xx with {"error": {"code": "<snake_case>", "message": "<for a
    person>", "details": {...}}}."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return [f"body is not {{'error': ...}}: {body!r}"[:300]]
    error = body["error"]
    problems = []
    if not isinstance(error, dict) or set(error) != {"code", "message", "details"}:
        return [f"error keys are not code/message/details: {error!r}"[:300]]
    if not isinstance(error["code"], str) or not SNAKE.match(error["code"]):
        problems.append(f"code is not snake_case: {error['code']!r}")
    if not isinstance(error["message"], str) or not error["message"]:
        problems.append("message is empty")
    if not isinstance(error["details"], dict):
        problems.append(f"details is not an object: {error['details']!r}")
    return problems


def assert_error(resp, status: int, what: str, code: str | None = None) -> dict:
    assert resp.status_code == status, f"{what}: expected {status}, got {resp.status_code} " \
                                       f"{resp.text[:300]}"
    problems = error_shape_problems(resp)
    assert not problems, f"{what}: {problems}"
    if code is not None:
        assert resp.json()["error"]["code"] == code, f"{what}: {resp.text[:300]}"
    return resp.json()["error"]


# --- 1. every JSON body: money, ids, timestamps ---------------------------------------------------

# GET routes and the role and query that reach a 200 on them; the first role that answers 200 wins.
GET_QUERIES = {
    "/settlements/{merchant_id}": f"?period={PERIOD}",
    "/balances": "",
}


def crawl(w: World) -> list[tuple[str, object]]:
    """GET every /api/v1 route (lists with limit=100) as an operator, a merchant or an agent of
    tenant A; returns (url, JSON body) of every 200 and fails when a route answers none."""
    bodies, unreached = [], []
    for method, template in sorted(api_routes(w)):
        if method != "GET":
            continue
        url = fill(template, w.ids["A"]) + GET_QUERIES.get(template, "")
        reached = False
        for role in ("admin", "merchant", "agent"):
            extra = ""
            if template == "/balances" and role == "admin":
                extra = f"?merchant_id={w.merchant['A']}"
            sep = "&" if "?" in url + extra else "?"
            for u in (url + extra + f"{sep}limit=100", url + extra):
                resp = w.call("GET", u, w.cred(role))
                if resp.status_code == 200:
                    break
            if resp.status_code == 200:
                reached = True
                if resp.headers.get("content-type", "").startswith("application/json"):
                    bodies.append((f"GET {u} as {role}", resp.json()))
                break
        if not reached:
            unreached.append(template)
    assert not unreached, f"routes no role could GET: {unreached}"
    return bodies


@pytest.fixture(scope="module")
def bodies(world) -> list[tuple[str, object]]:
    crawled = crawl(world)
    answered = [(f"{m} {u} -> {s}", b) for m, u, s, b in world.seen]
    return crawled + answered


def walk(value, path: str = ""):
    """(path, key, value) of every member of every object and every item of every array (key
    "" for an item), depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", str(key), item
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{path}[{i}]", "", item
            yield from walk(item, f"{path}[{i}]")


def test_every_money_amount_in_a_response_is_an_integer_string(bodies):
    # api.md: Money travels as {"amount_minor": "<integer as string>", "currency": "USD"} ...
    # Responses always give strings.
    bad = []
    for where, body in bodies:
        for path, key, value in walk(body):
            if (key == "amount_minor" or key.endswith("_minor")) and value is not None \
                    and not (isinstance(value, str) and MINOR.match(value)):
                bad.append(f"{where}: {path} = {value!r}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


def test_every_amount_minor_in_a_response_travels_with_its_currency(bodies):
    # api.md: Money travels as {"amount_minor": "<integer as string>", "currency": "USD"}.
    # money.md 1: An amount is an integer count of the currency's minor unit plus a currency code.
    # Audit details included: an x402 pricing rule's entry once logged its raw input, an
    # amount_minor beside "asset" and no currency.
    bad = []
    for where, body in bodies:
        for path, _key, value in walk({"": body}):
            if isinstance(value, dict) and "amount_minor" in value and "currency" not in value:
                bad.append(f"{where}: {path} = {json.dumps(value)[:160]}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


def test_every_amount_in_a_response_has_its_currency_in_the_same_object(bodies):
    # The same rule for every amount field (`*_minor`, `*_atomic`), nested objects included: its
    # object names the currency, as `currency` or, where one object holds amounts of several
    # currencies, as `<x>_currency` beside `<x>_..._minor`. Found by this sweep: a routing
    # decision's considered[].cost_minor, a balance's statement, a channel's price in force and
    # a wallet's transactions, each without one.
    bad = []
    for where, body in bodies:
        for path, _key, value in walk({"": body}):
            if not isinstance(value, dict) or "currency" in value:
                continue
            prefixes = [k.removesuffix("currency") for k in value if k.endswith("_currency")]
            for key, amount in value.items():
                if (key.endswith(("_minor", "_atomic")) and not isinstance(amount, dict)
                        and not any(key.startswith(p) for p in prefixes)):
                    bad.append(f"{where}: {path}.{key} in {json.dumps(value)[:160]}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


def test_every_id_in_a_response_has_a_type_prefix(bodies):
    # api.md: Ids are opaque strings with a type prefix (pay_, re_, mer_, agt_, ch_, po_, evt_, ...)
    bad = []
    for where, body in bodies:
        for path, key, value in walk(body):
            if (key == "id" or key.endswith("_id")) and key not in FOREIGN_IDS \
                    and isinstance(value, str) and not PREFIXED_ID.match(value):
                bad.append(f"{where}: {path} = {value!r}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


def test_every_timestamp_in_a_response_is_utc_with_z(bodies):
    # api.md: Timestamps ISO 8601 in UTC with Z.
    bad = []
    for where, body in bodies:
        for path, key, value in walk(body):
            if not isinstance(value, str):
                continue
            if (LOOKS_LIKE_TIMESTAMP.match(value) or key.endswith("_at")) \
                    and not UTC_Z.match(value):
                bad.append(f"{where}: {path} = {value!r}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


# --- 2. lists --------------------------------------------------------------------------------------

LISTS = {  # list route -> the role that reads it (all of it for operators)
    "/payments": "admin", "/refunds": "admin", "/merchants": "admin", "/events": "admin",
    "/webhook-deliveries": "admin", "/agents": "admin", "/channels": "admin", "/prices": "admin",
    "/agents/{agent_id}/commission-models": "admin", "/users": "admin", "/api-keys": "admin",
    "/audit-log": "admin", "/withdrawals": "admin", "/merchants/{merchant_id}/adjustments": "admin",
    "/wallets": "admin", "/wallets/{wallet_id}/transactions": "admin",
    "/x402/pricing-rules": "admin", "/x402/usage": "admin", "/payment-tokens": "admin",
    "/balances": "merchant",  # one per currency; starting_after takes the last currency
}


def test_every_list_shaped_answer_is_in_the_list_sweep(world, bodies):
    listed = set()
    for where, body in bodies:
        if isinstance(body, dict) and "data" in body and "has_more" in body:
            url = where.split(" ")[1].split("?")[0].removeprefix(API)
            for template in LISTS:
                if re.fullmatch(re.sub(r"\{\w+\}", r"[^/]+", template), url):
                    listed.add(template)
                    break
            else:
                raise AssertionError(f"{where} answers a list but is not swept")
    assert listed == set(LISTS)


@pytest.mark.parametrize("template", sorted(LISTS))
def test_list_takes_limit_and_starting_after_and_answers_data_and_has_more(world, template):
    # api.md: Lists: ?limit= (default 20, max 100) and cursor ?starting_after=<id>;
    # response {"data": [...], "has_more": bool}. 422 for validation with the offending field
    # in details.
    w, cred = world, world.cred(LISTS[template])
    url = fill(template, w.ids["A"])

    def get(query: str):
        return w.call("GET", f"{url}?{query}", cred)

    full = get("limit=100")
    assert full.status_code == 200, full.text
    body = full.json()
    assert set(body) == {"data", "has_more"} and isinstance(body["data"], list) \
        and isinstance(body["has_more"], bool), body
    for bad in ("0", "101", "abc", "1.5", "-1", "5.0", "+5", "05", " 5", "1e1"):
        error = assert_error(get(f"limit={bad}"), 422, f"GET {template}?limit={bad}")
        assert error["details"].get("field") == "limit", error
    items = body["data"]
    one = get("limit=1").json()
    assert len(one["data"]) == min(1, len(items)) and one["has_more"] is (len(items) > 1)
    if len(items) > 20:
        default = w.call("GET", url, cred).json()
        assert len(default["data"]) == 20 and default["has_more"] is True
    if items and all("id" in item for item in items) and not body["has_more"]:
        walked, cursor = [], None
        for _ in range(len(items) + 1):
            page = get("limit=1" + (f"&starting_after={cursor}" if cursor else "")).json()
            walked += [item["id"] for item in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["data"][-1]["id"]
        assert walked == [item["id"] for item in items], (template, walked)


# --- 3. unknown ids: 404 --------------------------------------------------------------------------

UNKNOWN_ID_CASES = [  # (method, template, role, body or None, needs Idempotency-Key)
    ("GET", "/payments/{payment_id}", "merchant", None, False),
    ("GET", "/refunds/{refund_id}", "merchant", None, False),
    ("POST", "/payments/{payment_id}/confirm", "merchant",
     {"payment_method": {"type": "card", "number": "4242424242424242"}}, True),
    ("POST", "/payments/{payment_id}/cancel", "merchant", None, True),
    ("GET", "/merchants/{merchant_id}", "admin", None, False),
    ("PATCH", "/merchants/{merchant_id}", "admin", {"kyc_tier": 2}, False),
    ("POST", "/merchants/{merchant_id}/webhook-secret", "admin", None, False),
    ("GET", "/merchants/{merchant_id}/adjustments", "admin", None, False),
    ("POST", "/merchants/{merchant_id}/adjustments", "admin",
     {"amount_minor": "100", "currency": "USD", "reason": "r"}, True),
    ("GET", "/settlements/{merchant_id}", "admin", None, False),
    ("GET", "/events/{event_id}", "admin", None, False),
    ("POST", "/events/{event_id}/redeliver", "admin", None, False),
    ("GET", "/agents/{agent_id}", "admin", None, False),
    ("PATCH", "/agents/{agent_id}", "admin", {"statement_cycle": "weekly"}, False),
    ("GET", "/agents/{agent_id}/subordinates", "admin", None, False),
    ("POST", "/agents/{agent_id}/parent", "admin",
     {"parent_id": None, "valid_from": "2026-11-01T00:00:00Z"}, False),
    ("GET", "/agents/{agent_id}/commission-models", "admin", None, False),
    ("POST", "/agents/{agent_id}/commission-models", "admin",
     {"currency": "USD", "model": "percentage", "pct_bps": 100}, False),
    ("GET", "/channels/{channel_id}", "admin", None, False),
    ("PATCH", "/channels/{channel_id}", "admin", {"priority": 5}, False),
    ("GET", "/prices/{price_id}", "admin", None, False),
    ("GET", "/users/{user_id}", "admin", None, False),
    ("POST", "/users/{user_id}/disable", "admin", None, False),
    ("GET", "/api-keys/{key_id}", "admin", None, False),
    ("DELETE", "/api-keys/{key_id}", "admin", None, False),
    ("POST", "/api-keys/{key_id}/rotate", "admin", None, False),
    ("GET", "/withdrawals/{withdrawal_id}", "admin", None, False),
    ("POST", "/withdrawals/{withdrawal_id}/approve", "admin", None, True),
    ("POST", "/withdrawals/{withdrawal_id}/reject", "admin", {"reason": "no"}, True),
    ("POST", "/withdrawals/{withdrawal_id}/mark-paid", "admin", None, True),
    ("GET", "/wallets/{wallet_id}", "merchant", None, False),
    ("GET", "/wallets/{wallet_id}/transactions", "merchant", None, False),
    ("GET", "/x402/pricing-rules/{rule_id}", "merchant", None, False),
    ("DELETE", "/x402/pricing-rules/{rule_id}", "merchant", None, False),
    ("GET", "/payment-tokens/{token_id}", "merchant", None, False),
    ("DELETE", "/payment-tokens/{token_id}", "merchant", None, False),
]
# Channel callbacks authenticate by the channel's signature: an unknown channel has no secret,
# so nothing can authenticate and 401 is the answer (api.md: 401 without a valid credential).
SIGNED = {("POST", "/channels/{channel_id}/callbacks")}


def test_unknown_id_sweep_covers_every_route_with_an_id(world):
    with_ids = {(m, t) for m, t in api_routes(world) if "{" in t} - SIGNED
    assert with_ids == {(m, t) for m, t, *_ in UNKNOWN_ID_CASES}


@pytest.mark.parametrize("method,template,role,body,idem", UNKNOWN_ID_CASES,
                         ids=[f"{m} {t}" for m, t, *_ in UNKNOWN_ID_CASES])
def test_unknown_id_is_404_in_the_error_shape(world, method, template, role, body, idem):
    # api.md: Errors: HTTP 4xx/5xx with {"error": {"code", "message", "details"}} - an id that
    # names nothing is a 404.
    url = fill(template, UNKNOWN) + (f"?period={PERIOD}" if "settlements" in template else "")
    resp = world.call(method, url, world.cred(role), json_body=body,
                      idem=uuid.uuid4().hex if idem else None)
    assert_error(resp, 404, f"{method} {url}")


@pytest.mark.parametrize("method,url,role,body", [
    ("POST", "/refunds", "merchant", {"payment_id": UNKNOWN["payment_id"]}),
    ("GET", f"/webhook-deliveries?event_id={UNKNOWN['event_id']}", "admin", None),
], ids=["POST /refunds payment_id", "GET /webhook-deliveries event_id"])
def test_unknown_id_in_a_body_or_filter_is_404(world, method, url, role, body):
    resp = world.call(method, url, world.cred(role), json_body=body, idem=uuid.uuid4().hex)
    assert_error(resp, 404, f"{method} {url}")


# --- 4. credentials: 401 --------------------------------------------------------------------------

BAD_CREDENTIALS = {
    "none": {},
    "unknown API key": {"Authorization": "Bearer sk_test_thisisnotakey"},
    "malformed JWT": {"Authorization": "Bearer not.a.jwt"},
    "other scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
}


@pytest.mark.parametrize("credential", sorted(BAD_CREDENTIALS))
def test_every_route_without_a_valid_credential_is_401_in_the_error_shape(world, credential):
    # api.md: 401 without a valid credential.
    bad = []
    for method, template in sorted(api_routes(world)):
        url = fill(template, world.ids["A"])
        body = {} if method in ("POST", "PUT", "PATCH") else None
        resp = world.call(method, url, None, json_body=body, idem=uuid.uuid4().hex,
                          headers=BAD_CREDENTIALS[credential])
        problems = error_shape_problems(resp)
        if resp.status_code != 401 or problems:
            bad.append(f"{method} {template}: {resp.status_code} {problems or resp.text[:120]}")
    assert not bad, "\n".join(bad)


# --- 5. validation: float and decimal amounts, bodies that are no object -------------------------

FX = "__amount__"  # the placeholder a bad amount replaces

MONEY_INPUT_CASES = [  # (method, template, role, valid body, money fields, needs Idempotency-Key)
    ("POST", "/payments", "merchant",
     {"amount_minor": "1000", "currency": "USD", "merchant_reference": "o-1",
      "payment_method": {"type": "card", "number": "4242424242424242"}}, ["amount_minor"], True),
    ("POST", "/refunds", "merchant", {"payment_id": "{payment_id}", "amount_minor": "10"},
     ["amount_minor"], True),
    ("POST", "/wallets/topups", "merchant",
     {"customer_id": "cust-f", "currency": "USD", "amount_minor": "100", "bonus_minor": "10",
      "payment_method": {"type": "card", "number": "4242424242424242"}},
     ["amount_minor", "bonus_minor"], True),
    ("POST", "/withdrawals", "merchant",
     {"amount_minor": "1", "currency": "USD", "destination": "acct"}, ["amount_minor"], True),
    ("POST", "/merchants/{merchant_id}/adjustments", "admin",
     {"amount_minor": "1", "currency": "USD", "reason": "r"}, ["amount_minor"], True),
    ("POST", "/prices", "admin",
     {"subject_type": "merchant", "subject_id": "{merchant_id}", "currency": "GBP",
      "rate_bps": 10, "fixed_minor": "1"}, ["fixed_minor"], False),
    ("POST", "/channels", "admin",
     {"name": "float-channel", "type": "card",
      "currencies": [{"currency": "USD", "min_amount_minor": "1", "max_amount_minor": "100000",
                      "daily_limit_minor": "1000000"}],
      "price": {"rate_bps": 1, "fixed_minor": {"USD": "1"}}},
     ["currencies.0.min_amount_minor", "currencies.0.max_amount_minor",
      "currencies.0.daily_limit_minor", "price.fixed_minor.USD"], False),
    ("PATCH", "/channels/{channel_id}", "admin",
     {"currencies": [{"currency": "USD", "min_amount_minor": "1", "max_amount_minor": "100000",
                      "daily_limit_minor": "1000000"}],
      "price": {"rate_bps": 1, "fixed_minor": {"USD": "1"}}},
     ["currencies.0.min_amount_minor", "currencies.0.max_amount_minor",
      "currencies.0.daily_limit_minor", "price.fixed_minor.USD"], False),
    ("POST", "/merchants", "admin",
     {"name": "Float Shop", "pricing": [{"currency": "USD", "rate_bps": 10, "fixed_minor": "1"}]},
     ["pricing.0.fixed_minor"], False),
    ("POST", "/agents/{agent_id}/commission-models", "admin",
     {"currency": "GBP", "model": "fixed", "fixed_minor": "1"}, ["fixed_minor"], False),
    ("POST", "/x402/pricing-rules", "merchant",
     {"path_pattern": "/float/*", "amount_minor": "100", "pay_to": PAY_TO}, ["amount_minor"],
     False),
    ("POST", "/payment-tokens", "merchant",
     {"agent_name": "bot", "amount_minor": "1000", "per_call_cap_minor": "10"},
     ["amount_minor", "per_call_cap_minor"], False),
    ("POST", "/x402/faucet", "merchant", {"address": PAY_TO, "amount_minor": "1"},
     ["amount_minor"], False),
]
# JSON text spliced in for the amount: floats, exponents and decimal strings.
BAD_AMOUNTS = ["12.5", "1000.0", "1e3", '"12.50"', '"1000.00"', '"1e3"', '"12,5"']


def _schema_money_routes(world) -> set[tuple[str, str]]:
    """Routes whose JSON request body has a *_minor property anywhere (from the OpenAPI)."""
    doc = world.api.client.app.openapi()
    schemas = doc["components"]["schemas"]

    def has_minor(schema, seen=()) -> bool:
        if isinstance(schema, dict):
            ref = schema.get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[1]
                return name not in seen and has_minor(schemas[name], (*seen, name))
            if any(k.endswith("_minor") for k in schema.get("properties", {})):
                return True
            return any(has_minor(v, seen) for v in schema.values())
        if isinstance(schema, list):
            return any(has_minor(v, seen) for v in schema)
        return False

    out = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if path.startswith(API) and has_minor(body.get("schema", {})):
                out.add((method.upper(), path.removeprefix(API)))
    return out


def test_money_input_sweep_covers_every_body_that_takes_money(world):
    assert _schema_money_routes(world) == {(m, t) for m, t, *_ in MONEY_INPUT_CASES}


def _set(body: dict, dotted: str, value):
    parts = dotted.split(".")
    target = body
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[parts[-1]] = value


@pytest.mark.parametrize("method,template,role,body,fields,idem", MONEY_INPUT_CASES,
                         ids=[f"{m} {t}" for m, t, *_ in MONEY_INPUT_CASES])
def test_a_float_or_decimal_amount_is_a_422_naming_the_field(world, method, template, role,
                                                             body, fields, idem):
    # api.md: an integer amount_minor is accepted on input, a float or decimal string never
    # (422). money.md: rejects floats and decimals with a 422 that says why.
    # api.md: 422 for validation with the offending field in details.
    ids = world.ids["A"]
    url = fill(template, ids)
    bad = []
    for name in fields:
        for amount in BAD_AMOUNTS:
            poisoned = json.loads(fill(json.dumps(body), ids))
            _set(poisoned, name, FX)
            content = json.dumps(poisoned).replace(f'"{FX}"', amount).encode()
            resp = world.call(method, url, world.cred(role), content=content,
                              idem=uuid.uuid4().hex if idem else None)
            problems = error_shape_problems(resp) if resp.status_code >= 400 else []
            details = resp.json().get("error", {}).get("details", {}) if not problems and \
                resp.status_code >= 400 else {}
            if resp.status_code != 422 or problems or details.get("field") != name:
                bad.append(f"{name}={amount}: {resp.status_code} {resp.text[:200]}")
    assert not bad, "\n".join(bad)


def _required_body_routes(world) -> list[tuple[str, str]]:
    doc = world.api.client.app.openapi()
    return sorted((m.upper(), p.removeprefix(API)) for p, ops in doc["paths"].items()
                  for m, op in ops.items()
                  if p.startswith(API) and op.get("requestBody", {}).get("required"))


ROLE_FOR_BODY = {"/payments": "merchant", "/refunds": "merchant", "/wallets/topups": "merchant",
                 "/withdrawals": "merchant", "/x402/gateway": "merchant",
                 "/x402/pricing-rules": "merchant", "/payment-tokens": "merchant",
                 "/x402/faucet": "merchant", "/payments/{payment_id}/confirm": "merchant"}


def test_a_body_that_is_missing_or_not_an_object_is_a_422_naming_the_body(world):
    # api.md: 422 for validation with the offending field in details.
    # No body, or a JSON body that is not an object ([] or "x"): the field to fix is "body",
    # as for a body that is not JSON at all (README).
    bad = []
    routes = _required_body_routes(world)
    assert len(routes) >= 20  # confirm needs no body (only a card created without its card)
    for method, template in routes:
        role = ROLE_FOR_BODY.get(template, "admin")
        url = fill(template, world.ids["A"])
        for label, content in (("no body", None), ("[]", b"[]"), ('"x"', b'"x"')):
            resp = world.call(method, url, world.cred(role), content=content,
                              idem=uuid.uuid4().hex)
            error = resp.json().get("error", {}) if resp.status_code == 422 else {}
            if resp.status_code != 422 or not error.get("details", {}).get("field"):
                bad.append(f"{method} {template} with {label}: {resp.status_code} "
                           f"{resp.text[:140]}")
    assert not bad, "\n".join(bad)


def test_a_json_body_declared_as_a_form_is_a_415_that_says_to_send_json(world):
    # api.md: JSON in. `curl -d '{...}'` without -H "Content-Type: application/json" declares
    # application/x-www-form-urlencoded; the answer must say so rather than "not an object".
    bad = []
    for method, template in _required_body_routes(world):
        role = ROLE_FOR_BODY.get(template, "admin")
        url = API + fill(template, world.ids["A"])
        resp = world.api.client.request(
            method, url, content=b'{"name": "x"}',
            headers={"Authorization": f"Bearer {world.cred(role)}",
                     "Idempotency-Key": uuid.uuid4().hex,
                     "Content-Type": "application/x-www-form-urlencoded"})
        error = resp.json().get("error", {}) if resp.status_code == 415 else {}
        if (error.get("code") != "unsupported_media_type"
                or "application/json" not in error.get("message", "")
                or error.get("details", {}).get("content_type")
                != "application/x-www-form-urlencoded"):
            bad.append(f"{method} {template}: {resp.status_code} {resp.text[:140]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("method,template,role,body,fields,idem", MONEY_INPUT_CASES,
                         ids=[f"{m} {t}" for m, t, *_ in MONEY_INPUT_CASES])
def test_an_integer_amount_is_accepted_on_input(world, method, template, role, body, fields,
                                                idem):
    # api.md: an integer amount_minor is accepted on input. Checked without writing anything: an
    # unknown member makes the request a 422, whose details.errors list every field that failed;
    # the integer amounts (small, and beyond 64 bits) must not be among them.
    ids = world.ids["A"]
    bad = []
    for amount in (1000, 123456789012345678901):
        sent = json.loads(fill(json.dumps(body), ids))
        for name in fields:
            _set(sent, name, amount)
        sent["zz_unknown_member"] = 1
        resp = world.call(method, fill(template, ids), world.cred(role), json_body=sent,
                          idem=uuid.uuid4().hex if idem else None)
        assert resp.status_code == 422, resp.text
        failed = {e["field"] for e in resp.json()["error"]["details"]["errors"]}
        assert "zz_unknown_member" in failed, resp.text
        bad += [f"{name}={amount}: {resp.text[:200]}" for name in fields if name in failed]
    assert not bad, "\n".join(bad)


def test_a_business_rule_422_names_the_offending_field(world):
    # api.md: 422 for validation with the offending field in details. The project's own 422s
    # for an amount beyond what is there (refund_exceeds_captured, insufficient_wallet_balance)
    # name amount_minor; every such 422 must.
    # e.g. POST /api/v1/withdrawals above the available balance: amount_minor.
    w = world
    refund = w.call("POST", "/refunds", w.key["A"], idem=uuid.uuid4().hex,
                    json_body={"payment_id": w.ids["A"]["payment_id"], "amount_minor": "999999"})
    wallet = w.call("POST", "/payments", w.key["A"], idem=uuid.uuid4().hex, json_body={
        "amount_minor": "9000", "currency": "USD", "merchant_reference": "too-much",
        "payment_method": {"type": "wallet"}, "customer": {"id": "cust-A"}})
    adjustment = w.call("POST", f"/merchants/{w.merchant['A']}/adjustments", w.admin,
                        idem=uuid.uuid4().hex,
                        json_body={"amount_minor": "5", "currency": "EUR", "reason": "r"})
    withdrawal = w.call("POST", "/withdrawals", w.key["A"], idem=uuid.uuid4().hex,
                        json_body={"amount_minor": "99999999", "currency": "USD",
                                   "destination": "acct-1"})
    bad = []
    for what, resp in (("refund above captured", refund), ("wallet payment above balance", wallet),
                       ("adjustment in another currency", adjustment),
                       ("withdrawal above available balance", withdrawal)):
        error = assert_error(resp, 422, what)
        if not error["details"].get("field"):
            bad.append(f"{what}: {resp.text[:300]}")
    assert not bad, "\n".join(bad)


# --- 6. idempotency -------------------------------------------------------------------------------

def _payment(w):
    body = {"amount_minor": "1200", "currency": "USD", "merchant_reference": "idem-1",
            "payment_method": card()}
    return "/payments", "merchant", body, "/payments", {**body, "amount_minor": "1300"}


def _refund(w):
    pid = w.pay()["id"]
    return ("/refunds", "merchant", {"payment_id": pid, "amount_minor": "100"},
            "/refunds", {"payment_id": pid, "amount_minor": "200"})


def _confirm(w):
    pid = w.pay(confirm=False)["id"]
    url = f"/payments/{pid}/confirm"
    return url, "merchant", {"payment_method": card()}, url, {"payment_method": card()}


def _cancel(w):
    one, other = w.pay(confirm=False)["id"], w.pay(confirm=False)["id"]
    return f"/payments/{one}/cancel", "merchant", None, f"/payments/{other}/cancel", None


def _topup(w):
    body = {"customer_id": "cust-idem", "currency": "USD", "amount_minor": "300",
            "bonus_minor": "30", "payment_method": card()}
    return "/wallets/topups", "merchant", body, "/wallets/topups", {**body, "bonus_minor": "31"}


def _withdrawal(w):
    body = {"amount_minor": "11", "currency": "USD", "destination": "acct-idem"}
    return "/withdrawals", "merchant", body, "/withdrawals", {**body, "amount_minor": "12"}


def _approve(w):
    one, other = w.withdrawal()["id"], w.withdrawal()["id"]
    return (f"/withdrawals/{one}/approve", "admin", None, f"/withdrawals/{other}/approve", None)


def _reject(w):
    url = f"/withdrawals/{w.withdrawal()['id']}/reject"
    return url, "admin", {"reason": "duplicate"}, url, {"reason": "wrong account"}


def _mark_paid(w):
    ids = [w.withdrawal()["id"], w.withdrawal()["id"]]
    for wid in ids:
        w.ok("POST", f"/withdrawals/{wid}/approve", w.admin, idem=uuid.uuid4().hex)
    return (f"/withdrawals/{ids[0]}/mark-paid", "admin", None,
            f"/withdrawals/{ids[1]}/mark-paid", None)


def _adjustment(w):
    url = f"/merchants/{w.merchant['A']}/adjustments"
    body = {"amount_minor": "55", "currency": "USD", "reason": "goodwill"}
    return url, "admin", body, url, {**body, "amount_minor": "56"}


def _faucet(w):
    # POST /x402/faucet mints test USDC on the simulated chain: it creates money.
    # The simulated chain's faucet mints (creates) money: a retry must not mint twice.
    body = {"address": "0x" + "cd" * 20, "amount_minor": "500"}
    return "/x402/faucet", "merchant", body, "/x402/faucet", {**body, "amount_minor": "501"}


def _payment_token(w):
    # A token is a budget of the issuing merchant's money: a retry must not issue a second one.
    body = {"agent_name": "sweep-bot", "amount_minor": "1000"}
    return "/payment-tokens", "merchant", body, "/payment-tokens", {**body, "amount_minor": "1001"}


IDEMPOTENT = {  # every POST that creates or moves money
    ("POST", "/payments"): _payment, ("POST", "/refunds"): _refund,
    ("POST", "/payments/{payment_id}/confirm"): _confirm,
    ("POST", "/payments/{payment_id}/cancel"): _cancel,
    ("POST", "/wallets/topups"): _topup, ("POST", "/withdrawals"): _withdrawal,
    ("POST", "/withdrawals/{withdrawal_id}/approve"): _approve,
    ("POST", "/withdrawals/{withdrawal_id}/reject"): _reject,
    ("POST", "/withdrawals/{withdrawal_id}/mark-paid"): _mark_paid,
    ("POST", "/merchants/{merchant_id}/adjustments"): _adjustment,
    ("POST", "/x402/faucet"): _faucet, ("POST", "/payment-tokens"): _payment_token,
}


# Authenticated by a channel's signature, not a bearer credential: the replay and the reused key
# are tested in tests/serving/api/test_channel_callbacks.py.
SIGNED_BY_A_CHANNEL = {("POST", "/channels/{channel_id}/callbacks")}


def test_idempotency_sweep_covers_every_route_that_takes_the_key(world):
    doc = world.api.client.app.openapi()
    takes_key = {(m.upper(), p.removeprefix(API)) for p, ops in doc["paths"].items()
                 for m, op in ops.items()
                 if any(x["name"] == "Idempotency-Key" for x in op.get("parameters", []))}
    covered = set(IDEMPOTENT) | SIGNED_BY_A_CHANNEL
    assert takes_key <= covered, takes_key - covered
    assert takes_key >= SIGNED_BY_A_CHANNEL


@pytest.mark.parametrize("route", sorted(IDEMPOTENT), ids=[f"{m} {t}" for m, t in sorted(IDEMPOTENT)])
def test_money_post_replays_with_the_same_key_and_refuses_another_body(world, route):
    # api.md: every POST that creates or moves money accepts Idempotency-Key; same key + same
    # body replays the first response (status and body) with header Idempotent-Replayed: true;
    # same key + other body is 409 idempotency_key_reused.
    w = world
    url, role, body, other_url, other_body = IDEMPOTENT[route](w)
    key = f"sweep-{uuid.uuid4().hex}"
    first = w.call("POST", url, w.cred(role), json_body=body, idem=key)
    assert first.status_code < 300, first.text
    assert first.headers.get("Idempotent-Replayed") != "true"
    again = w.call("POST", url, w.cred(role), json_body=body, idem=key)
    assert (again.status_code, again.json()) == (first.status_code, first.json()), again.text
    assert again.headers.get("Idempotent-Replayed") == "true", dict(again.headers)
    reused = w.call("POST", other_url, w.cred(role), json_body=other_body, idem=key)
    assert_error(reused, 409, f"POST {other_url} with a reused key", "idempotency_key_reused")


# --- 7. another tenant's resource: 404, not 403 ---------------------------------------------------

TENANT_CASES = [  # (role of tenant A, method, template over tenant C's ids, body, needs key)
    ("merchant", "GET", "/payments/{payment_id}", None, False),
    ("merchant", "GET", "/refunds/{refund_id}", None, False),
    ("merchant", "POST", "/payments/{pending_id}/confirm",
     {"payment_method": {"type": "card", "number": "4242424242424242"}}, True),
    ("merchant", "POST", "/payments/{pending_id}/cancel", None, True),
    ("merchant", "POST", "/refunds", {"payment_id": "{payment_id}", "amount_minor": "10"}, True),
    ("merchant", "GET", "/merchants/{merchant_id}", None, False),
    ("merchant", "PATCH", "/merchants/{merchant_id}", {"callback_url": "https://evil.test/h"},
     False),
    ("merchant", "POST", "/merchants/{merchant_id}/webhook-secret", None, False),
    ("merchant", "GET", "/merchants/{merchant_id}/adjustments", None, False),
    ("merchant", "GET", f"/settlements/{{merchant_id}}?period={PERIOD}", None, False),
    ("merchant", "GET", "/settlements/{agent_id}?period=2026-11", None, False),
    ("merchant", "GET", "/events/{event_id}", None, False),
    ("merchant", "POST", "/events/{event_id}/redeliver", None, False),
    ("merchant", "GET", "/webhook-deliveries?event_id={event_id}", None, False),
    ("merchant", "GET", "/wallets/{wallet_id}", None, False),
    ("merchant", "GET", "/wallets/{wallet_id}/transactions", None, False),
    ("merchant", "GET", "/withdrawals/{withdrawal_id}", None, False),
    ("merchant", "GET", "/api-keys/{key_id}", None, False),
    ("merchant", "POST", "/api-keys/{victim_key_id}/rotate", None, False),
    ("merchant", "DELETE", "/api-keys/{victim_key_id}", None, False),
    ("merchant", "POST", "/api-keys", {"merchant_id": "{merchant_id}"}, False),
    ("merchant", "GET", "/prices/{price_id}", None, False),
    ("merchant", "GET", "/x402/pricing-rules/{rule_id}", None, False),
    ("merchant", "DELETE", "/x402/pricing-rules/{rule_id}", None, False),
    ("merchant", "GET", "/payment-tokens/{token_id}", None, False),
    ("merchant", "DELETE", "/payment-tokens/{token_id}", None, False),
    ("merchant", "GET", "/balances?merchant_id={merchant_id}", None, False),
    ("agent", "GET", "/agents/{agent_id}", None, False),
    ("agent", "GET", "/agents/{agent_id}/subordinates", None, False),
    ("agent", "GET", "/agents/{agent_id}/commission-models", None, False),
    ("agent", "GET", "/merchants/{merchant_id}", None, False),
    ("agent", "GET", "/merchants/{merchant_id}/adjustments", None, False),
    ("agent", "GET", "/payments/{payment_id}", None, False),
    ("agent", "GET", "/refunds/{refund_id}", None, False),
    ("agent", "GET", f"/settlements/{{merchant_id}}?period={PERIOD}", None, False),
    ("agent", "GET", "/settlements/{agent_id}?period=2026-11", None, False),
    ("agent", "GET", "/wallets/{wallet_id}", None, False),
    ("agent", "GET", "/wallets/{wallet_id}/transactions", None, False),
    ("agent", "GET", "/withdrawals/{withdrawal_id}", None, False),
    ("agent", "GET", "/api-keys/{agent_key_id}", None, False),
    ("agent", "POST", "/api-keys/{agent_key_id}/rotate", None, False),
    ("agent", "DELETE", "/api-keys/{agent_key_id}", None, False),
    ("agent", "POST", "/api-keys", {"agent_id": "{agent_id}"}, False),
    ("agent", "GET", "/prices/{price_id}", None, False),
    ("agent", "GET", "/balances?agent_id={agent_id}", None, False),
]


@pytest.mark.parametrize("role,method,template,body,idem", TENANT_CASES,
                         ids=[f"{r} {m} {t}" for r, m, t, *_ in TENANT_CASES])
def test_another_tenants_resource_is_404_not_403(world, role, method, template, body, idem):
    # api.md: 404 (not 403) for another tenant's resource so that existence does not leak.
    other = world.ids["C"]
    url = fill(template, other)
    payload = None if body is None else json.loads(fill(json.dumps(body), other))
    resp = world.call(method, url, world.cred(role), json_body=payload,
                      idem=uuid.uuid4().hex if idem else None)
    assert_error(resp, 404, f"{role} of tenant A: {method} {url}")


def test_an_idempotency_key_is_the_callers_own(world):
    # api.md: same key + same body replays the first response - the caller's own first response:
    # another tenant using the same key gets a request of its own, never the first one's answer.
    w, key = world, f"shared-{uuid.uuid4().hex}"
    body = {"amount_minor": "1000", "currency": "USD", "merchant_reference": "shared",
            "payment_method": {"type": "card", "number": random_card()}}
    mine = w.call("POST", "/payments", w.key["A"], json_body=body, idem=key)
    theirs = w.call("POST", "/payments", w.key["C"], json_body=body, idem=key)
    assert mine.status_code == theirs.status_code == 201, theirs.text
    assert theirs.headers.get("Idempotent-Replayed") != "true"
    assert theirs.json()["merchant_id"] == w.merchant["C"] != mine.json()["merchant_id"]


# --- 8. the Postgres fast path of POST /payments -----------------------------------------------

def test_payments_fast_path_on_postgres_follows_the_same_conventions(pg_url, make_settings):
    # On Postgres, POST /payments runs its own path (serving/services/fast_payments.py: claim,
    # facts and rows in one statement each): its answers and replays must follow api.md as the
    # general path does.
    from warehouse.connections import _engine_for
    from warehouse.migrate import upgrade

    upgrade(pg_url)
    api = make_api(make_settings(database_url=pg_url))
    try:
        _, key = api.merchant("Fast Path Shop")
        body = {"amount_minor": 1250, "currency": "USD", "merchant_reference": "fast-1",
                "payment_method": {"type": "card", "number": random_card()}}
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        first = api.client.post(f"{API}/payments", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = api.client.post(f"{API}/payments", json={**body, "amount_minor": "1250"},
                                headers=headers)  # 1250 and "1250": one request
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.headers.get("Idempotent-Replayed") == "true"
        reused = api.client.post(f"{API}/payments", json={**body, "amount_minor": "1251"},
                                 headers=headers)
        assert_error(reused, 409, "fast path, reused key", "idempotency_key_reused")
        unkeyed = [api.client.post(f"{API}/payments", json={**body, "merchant_reference": "u"},
                                   headers={"Authorization": f"Bearer {key}"}) for _ in range(2)]
        assert [r.status_code for r in unkeyed] == [201, 201], unkeyed[0].text
        assert unkeyed[0].json()["id"] != unkeyed[1].json()["id"]  # no key: each its own
        payment = first.json()
        assert payment["amount_minor"] == "1250" and payment["currency"] == "USD"
        for path, k, value in walk(payment):
            if (k == "id" or k.endswith("_id")) and isinstance(value, str):
                assert PREFIXED_ID.match(value), (path, value)
            if k.endswith("_minor") and value is not None:
                assert isinstance(value, str) and MINOR.match(value), (path, value)
            if isinstance(value, str) and (k.endswith("_at") or LOOKS_LIKE_TIMESTAMP.match(value)):
                assert UTC_Z.match(value), (path, value)
    finally:
        api.engine.dispose()
        _engine_for.cache_clear()


# --- 9. every error the sweep met ------------------------------------------------------------

def test_every_error_answered_during_the_sweep_has_the_error_shape(world, bodies):
    # api.md: Errors: HTTP 4xx/5xx with {"error": {"code", "message", "details"}}. Last in
    # the module: it reads every JSON answer the sweep above received.
    bad = []
    for method, url, status, body in world.seen:
        if status >= 400:
            problems = error_body_problems(body)
            if problems:
                bad.append(f"{method} {url} -> {status}: {problems}")
    assert not bad, "\n".join(bad[:40])
