"""The third black-box audit of the payments API against api.md and money.md, on SQLite and
Postgres: what the conventions sweep (tests/serving/test_conventions_sweep.py) and the second
audit (test_api_spec_audit_2.py) leave out - bodies that are not text or nest without end, the
Allow header of a 405, list order when ids are made within one millisecond, and what held when
probed (money round trips above 2^63, wallet splits, byte-equal replays, signature headers)."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest

from serving import signing
from tests.serving.admin_helpers import admin, bearer
from tests.serving.helpers import make_api, random_card

API = "/api/v1"


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def _error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def _payment_body(**extra) -> dict:
    return {"amount_minor": "1000", "currency": "USD", "merchant_reference": "order-1",
            "payment_method": {"type": "card", "number": random_card()}, **extra}


def _raw_post(api, url: str, key: str, content: bytes):
    return api.client.post(f"{API}{url}", content=content, headers={
        **bearer(key), "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})


# --- api.md errors: a body that cannot be read as JSON is a 422 naming the body ----------------

def _not_utf8() -> bytes:
    return json.dumps(_payment_body(merchant_reference="caf\u00e9"), ensure_ascii=False).encode("latin-1")


def _nested_without_end() -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("content", [_not_utf8, _nested_without_end],
                         ids=["not-utf-8", "nested-100000-deep"])
@pytest.mark.parametrize("url", ["/payments", "/refunds", "/wallets/topups"])
def test_a_body_that_is_not_json_text_is_a_422_invalid_json_naming_the_body(api, url, content):
    # api.md: JSON in; errors {"error": {code, message, details}}; 422 for validation with the
    # offending field in details. Malformed JSON already is a 422 invalid_json naming "body";
    # bytes that are not UTF-8, or JSON nested deeper than the parser goes, were a 400
    # `http_error` "There was an error parsing the body" with empty details.
    _, key = api.merchant()
    error = _error(_raw_post(api, url, key, content()), 422, "invalid_json")
    assert error["details"]["field"] == "body", error
    assert api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"] == []


# --- 405: the Allow header names every method the resource takes -------------------------------

@pytest.mark.parametrize("method,url,allowed", [
    ("DELETE", "/payments", {"GET", "POST"}),
    ("PUT", "/payments", {"GET", "POST"}),
    ("PATCH", "/payments/pay_0000000000000000000000zzzz", {"GET"}),
    ("PATCH", "/api-keys/key_0000000000000000000000zzzz", {"GET", "DELETE"}),
    ("POST", "/merchants/mer_0000000000000000000000zzzz", {"GET", "PATCH"}),
    ("DELETE", "/withdrawals", {"GET", "POST"}),
])
def test_a_405_names_every_method_the_resource_takes_in_allow(api, method, url, allowed):
    # api.md: errors in the envelope (405 method_not_allowed held). RFC 9110 15.5.6: a 405
    # MUST carry Allow with the resource's supported methods. DELETE /api/v1/payments answered
    # "Allow: POST" although GET /api/v1/payments is the payments list: a client (or a proxy)
    # trusting Allow would never list payments.
    _, key = api.merchant()
    resp = api.client.request(method, f"{API}{url}", headers=bearer(key))
    _error(resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == allowed, resp.headers


# --- lists: newest first even when the clock does not move between two objects ---------------

def test_objects_made_within_one_millisecond_list_newest_first(api, monkeypatch):
    # api.md lists: cursor ?starting_after=<id>; the lists are newest first and "ids sort by
    # creation time (list cursors rely on that)" (warehouse/ids.py). Ids made in the same
    # millisecond (a coarse clock, a fast path at hundreds of payments a second) took 80 random
    # bits, so two payments made in one millisecond listed in random order, and a client paging
    # from the older one's id saw the newer one (or missed it).
    _, key = api.merchant()
    frozen = SimpleNamespace(time=lambda: 1_796_500_000.123)
    monkeypatch.setattr("warehouse.ids.time", frozen)
    made = [api.pay(key, amount=str(100 + i)).json()["id"] for i in range(12)]
    monkeypatch.setattr("warehouse.ids.time", time)
    listed = api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"]
    assert [p["id"] for p in listed] == made[::-1]
    walked, cursor = [], None
    while True:
        query = "limit=5" + (f"&starting_after={cursor}" if cursor else "")
        page = api.client.get(f"{API}/payments?{query}", headers=bearer(key)).json()
        walked += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert walked == made[::-1]


def test_has_more_is_exact_at_the_page_boundary(api):
    # api.md: ?limit= (default 20), {"data", "has_more"}: 20 payments fill the default page
    # with has_more false; the 21st makes it true; limit=21 then shows all with false.
    _, key = api.merchant()
    for i in range(20):
        api.pay(key, amount=str(100 + i))

    def get(query=""):
        return api.client.get(f"{API}/payments{query}", headers=bearer(key)).json()

    full = get()
    assert len(full["data"]) == 20 and full["has_more"] is False
    api.pay(key)
    assert len(get()["data"]) == 20 and get()["has_more"] is True
    assert len(get("?limit=21")["data"]) == 21 and get("?limit=21")["has_more"] is False
    last = get("?limit=20")["data"][-1]["id"]
    rest = get(f"?starting_after={last}")
    assert len(rest["data"]) == 1 and rest["has_more"] is False


# --- held: money round trips, replays, splits, signatures --------------------------------------

def test_eth_amounts_above_2_63_round_trip_as_strings_everywhere(api):
    # money.md 1-3: 18-decimal assets overflow BIGINT; api.md: responses always give strings.
    # Payment, refunds, the payment after them, events, the routing cost (half up), a wallet.
    _, key = api.merchant(settlement_currency="ETH", kyc_tier=3)
    amount = 123456789012345678901
    pay = api.pay(key, amount=str(amount), currency="ETH", method={"type": "crypto"}).json()
    assert pay["amount_minor"] == str(amount) and pay["status"] == "success", pay
    cost = {c["channel"]: c["cost_minor"] for c in pay["routing"]["considered"]}
    assert isinstance(cost["ch_crypto_sim"], str)
    parts = [100000000000000000001, amount - 100000000000000000001]
    for part in parts:
        refund = api.refund(key, pay["id"], amount=part)
        assert refund.status_code == 201 and refund.json()["amount_minor"] == str(part)
    got = api.client.get(f"{API}/payments/{pay['id']}", headers=bearer(key)).json()
    assert got["refunded_minor"] == str(amount) and got["status"] == "refunded"
    events = api.client.get(f"{API}/events", headers=bearer(key)).json()["data"]
    assert sorted(e["data"]["amount_minor"] for e in events) == sorted(
        [str(amount), *map(str, parts)])
    topup = api.client.post(f"{API}/wallets/topups", headers={
        **bearer(key), "Idempotency-Key": "eth-topup"}, json={
        "customer_id": "cus-eth", "currency": "ETH", "amount_minor": "100000000000000000007",
        "bonus_minor": "33333333333333333333", "payment_method": {"type": "crypto"}})
    wallet = topup.json()["wallet"]
    assert (wallet["principal_minor"], wallet["bonus_minor"], wallet["total_minor"]) == (
        "100000000000000000007", "33333333333333333333", "133333333333333333340")


@pytest.mark.parametrize("route", ["/payments", "/wallets/topups"])
def test_a_replay_is_byte_equal_to_the_first_response(api, route):
    # api.md: same key + same body replays the first response (status and body) with
    # Idempotent-Replayed: true. Byte-equal, not only equal as JSON; an integer amount and the
    # same amount as a string are the same request.
    _, key = api.merchant()
    body = _payment_body() if route == "/payments" else {
        "customer_id": "cus-1", "currency": "USD", "amount_minor": "1000", "bonus_minor": "7",
        "payment_method": {"type": "card", "number": random_card()}}
    headers = {**bearer(key), "Idempotency-Key": f"byte-{uuid.uuid4().hex}"}
    first = api.client.post(f"{API}{route}", headers=headers, json=body)
    again = api.client.post(f"{API}{route}", headers=headers, json={**body, "amount_minor": 1000})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_wallet_payment_and_its_refunds_split_by_largest_remainder(api):
    # money.md 7: a split always sums back to the original, by largest remainder. 7.00 of a
    # wallet of 10.00 principal + 3.33 bonus: 5.2513 / 1.7487 -> 5 + 2; refunded 1, 1, 1, 4 it
    # gives back exactly 5 + 2. A top-up refund of 501 of 1000 claws back half-up 167 of 333.
    _, key = api.merchant()
    topup = api.client.post(f"{API}/wallets/topups", headers={**bearer(key), "Idempotency-Key": "t"},
                            json={"customer_id": "cus-9", "currency": "USD", "amount_minor": "1000",
                                  "bonus_minor": "333",
                                  "payment_method": {"type": "card", "number": random_card()}})
    wallet_id = topup.json()["wallet"]["id"]
    spend = api.pay(key, amount="7", method={"type": "wallet"}, customer={"id": "cus-9"}).json()
    for part in ("1", "1", "1", "4"):
        assert api.refund(key, spend["id"], amount=part).status_code == 201

    def wallet():
        got = api.client.get(f"{API}/wallets/{wallet_id}", headers=bearer(key)).json()
        return got["principal_minor"], got["bonus_minor"]

    txs = api.client.get(f"{API}/wallets/{wallet_id}/transactions", headers=bearer(key)).json()
    moves = [(t["kind"], t["principal_minor"], t["bonus_minor"]) for t in txs["data"]]
    assert moves[1] == ("spend", "-5", "-2"), moves
    assert sum(int(p) for _, p, _ in moves[2:]) == 5 and sum(int(b) for *_, b in moves[2:]) == 2
    assert wallet() == ("1000", "333")
    assert api.refund(key, topup.json()["payment"]["id"], amount="501").status_code == 201
    assert wallet() == ("499", "166")


@pytest.mark.parametrize("header", [
    "t=abc,v1=00", "v1=00", "t=1", "t=1,t=2,v1=00", "t=,v1=", "t=+1700000000,v1=00",
    "t=1700000000;v1=00", "garbage"])
def test_a_malformed_callback_signature_is_a_401_in_the_envelope(api, header):
    # api.md: signatures Clearhouse-Signature: t=<unix>,v1=<hex>, rejected when not matching.
    resp = api.client.post(f"{API}/channels/ch_card_sim/callbacks", content=b"{}",
                           headers={"Clearhouse-Signature": header,
                                    "Content-Type": "application/json"})
    _error(resp, 401, "invalid_signature")


@pytest.mark.parametrize("skew,ok", [(-301, False), (-299, True), (299, True), (301, False)])
def test_signatures_are_valid_300_s_either_way_and_any_v1_may_match(skew, ok):
    # api.md: rejected when older than 300 s; a future timestamp as far is refused alike. A
    # header with several v1= values verifies when one of them matches.
    body, now = b'{"a":1}', 1_800_000_000
    header = signing.sign(["other-secret", "s3cret"], body, now + skew)
    if ok:
        assert signing.verify("s3cret", body, header, now=now) == now + skew
    else:
        with pytest.raises(signing.StaleSignature):
            signing.verify("s3cret", body, header, now=now)


def test_an_operator_list_of_merchants_pages_exactly(api):
    # api.md lists on an operator list: has_more exact and a cursor from another list is a 404.
    for i in range(3):
        api.merchant(f"M{i}")
    page = api.client.get(f"{API}/merchants?limit=3", headers=admin(api)).json()
    assert len(page["data"]) == 3 and page["has_more"] is False
    payment_cursor = api.client.get(f"{API}/merchants?starting_after=pay_0000000000000000000000zzzz",
                                    headers=admin(api))
    assert _error(payment_cursor, 404)["details"]["field"] == "starting_after"


def test_a_balances_cursor_must_be_a_currency_of_the_list(api):
    # api.md lists: cursor ?starting_after=; the id lists answer a cursor that names nothing of
    # the list with 404 resource_missing naming starting_after (second audit). /balances pages
    # by currency (a balance has no id): "ZZZ", "usd" or a currency without a balance answered
    # 200 with an empty page, as if the caller had reached the end.
    _, key = api.merchant()
    balances = api.client.get(f"{API}/balances?currency=USD", headers=bearer(key)).json()
    assert [b["currency"] for b in balances["data"]] == ["USD"]
    ok = api.client.get(f"{API}/balances?currency=USD&starting_after=USD", headers=bearer(key))
    assert ok.status_code == 200 and ok.json() == {"data": [], "has_more": False}
    for cursor in ("ZZZ", "usd", "EUR"):
        resp = api.client.get(f"{API}/balances?currency=USD&starting_after={cursor}",
                              headers=bearer(key))
        assert _error(resp, 404, "resource_missing")["details"]["field"] == "starting_after"
