"""The second black-box audit of the payments API against api.md, money.md and the issue text,
on SQLite and Postgres: what a scenario writer tries that the conventions sweep
(tests/serving/test_conventions_sweep.py) does not - KYC limits in currencies of exponent 0 and 3,
list cursors that name nothing or another tenant's object, card payments without a card,
refunds that name their currency, customer fields that are not what they say, a forced channel
that does not exist, an over-long Idempotency-Key, and card numbers in logs."""

from __future__ import annotations

import uuid

import pytest

from tests.serving.admin_helpers import admin, bearer
from tests.serving.helpers import make_api, random_card

API = "/api/v1"


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def _idem(key: str) -> dict[str, str]:
    return {**bearer(key), "Idempotency-Key": uuid.uuid4().hex}


def _error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# --- issue 8: KYC tier limits in the merchant's currency, whatever its exponent ------------------

def _merchant_in(api, currency: str, tier: int = 1) -> str:
    """A merchant settling in `currency` (priced in it) and a card channel that takes it."""
    resp = api.client.post(f"{API}/channels", headers=admin(api), json={
        "name": f"acq-{currency.lower()}-{uuid.uuid4().hex[:6]}", "type": "card", "priority": 1,
        "currencies": [{"currency": currency}], "price": {"rate_bps": 100,
                                                          "fixed_minor": {currency: "0"}}})
    assert resp.status_code == 201, resp.text
    _, key = api.merchant(f"Shop {currency}", settlement_currency=currency, kyc_tier=tier,
                          pricing=[{"currency": currency, "rate_bps": 100, "fixed_minor": "0"}])
    return key


@pytest.mark.parametrize("currency,exp", [("JPY", 0), ("KWD", 3), ("BHD", 3), ("USD", 2)])
def test_kyc_tier_limits_hold_in_the_merchants_currency_for_every_exponent(api, currency, exp):
    # Issue 8: limits by KYC tier per day (0 / 1,000 / 10,000 / 50,000 in the merchant's
    # currency); README: single payment 0 / 500 / 5,000 / 20,000. Tier 1 in KWD (exponent 3):
    # 500.000 KWD is 500000 minor units. KWD had no indicative rate, so no limit was applied.
    key = _merchant_in(api, currency)
    unit = 10 ** exp

    def pay(major_units: int, extra_minor: int = 0):
        resp = api.pay(key, amount=str(major_units * unit + extra_minor), currency=currency)
        assert resp.status_code == 201, resp.text
        return resp.json()

    over_single = pay(500, 1)
    assert over_single["status"] == "failed", over_single
    assert "single_payment_limit_kyc_1" in over_single["risk"]["reasons"]
    assert pay(500)["status"] == "success"
    assert pay(499, unit - 1)["status"] == "success"  # 999.999... of the 1,000 a day
    assert pay(0, 1)["status"] == "success"  # exactly 1,000
    over_daily = pay(0, 1)
    assert over_daily["status"] == "failed" and over_daily["risk"]["decision"] == "reject"
    assert "daily_limit_kyc_1" in over_daily["risk"]["reasons"], over_daily


def test_kyc_tier_0_merchant_in_a_three_decimal_currency_takes_nothing(api):
    key = _merchant_in(api, "KWD", tier=0)
    resp = api.pay(key, amount="1", currency="KWD")
    assert resp.json()["status"] == "failed" and resp.json()["risk"]["decision"] == "reject"


# --- api.md lists: a cursor must name an object of the list --------------------------------------

def _list(api, url: str, key: str):
    return api.client.get(f"{API}{url}", headers=bearer(key))


@pytest.mark.parametrize("path,own", [("/payments", "payment"), ("/events", "event"),
                                      ("/wallets", "wallet"), ("/withdrawals", None),
                                      ("/api-keys", "key")])
def test_a_cursor_that_names_nothing_or_another_tenants_object_is_404(api, path, own):
    # api.md: cursor ?starting_after=<id>; 404 (not 403) for another tenant's resource so that
    # existence does not leak. A cursor naming nothing used to answer 200 with a page chosen by
    # comparing id strings: the whole list ("pay_zzz") or nothing ("abc"), and another tenant's
    # payment id paged the caller's list from that tenant's payment's creation time.
    _, mine = api.merchant("Mine")
    _, theirs = api.merchant("Theirs")
    for key in (mine, theirs):
        api.client.post(f"{API}/wallets/topups", headers=_idem(key), json={
            "customer_id": "cus-1", "currency": "USD", "amount_minor": "500",
            "payment_method": {"type": "card", "number": random_card()}})
        api.pay(key)
    their_ids = [item["id"] for item in _list(api, path, theirs).json()["data"]]
    cursors = ["pay_zzzzzzzzzzzzzzzzzzzzzzzzzz", "abc", "evt_0000000000000000000000zzzz"]
    cursors += their_ids[:1]
    for cursor in cursors:
        error = _error(_list(api, f"{path}?starting_after={cursor}", mine), 404,
                       "resource_missing")
        assert error["details"].get("field") == "starting_after", error
    own_ids = [item["id"] for item in _list(api, path, mine).json()["data"]]
    if own:  # the caller's own ids still page
        assert own_ids, path
        page = _list(api, f"{path}?starting_after={own_ids[0]}", mine)
        assert page.status_code == 200 and page.json()["data"] == \
            _list(api, path, mine).json()["data"][1:], page.text


# --- payment create: a card payment needs a card -------------------------------------------------

def test_a_card_payment_without_a_card_number_is_a_422_and_writes_nothing(api):
    # api.md: payment_method {"type": "card", ...} with the documented test instruments; issue:
    # every validation failure is a 4xx, nothing half-written. {"type": "card"} alone used to be
    # charged as the approving 4242... test card.
    _, key = api.merchant()
    for method in ({"type": "card"}, {"type": "card", "number": None},
                   {"type": "card", "number": "  "}):
        error = _error(api.pay(key, method=method), 422, "card_number_required")
        assert error["details"]["field"] == "payment_method.number", error
    topup = api.client.post(f"{API}/wallets/topups", headers=_idem(key), json={
        "customer_id": "cus-1", "currency": "USD", "amount_minor": "500",
        "payment_method": {"type": "card"}})
    assert _error(topup, 422)["details"]["field"] == "payment_method.number"
    pending = api.pay(key, confirm=False)
    assert pending.status_code == 201, pending.text
    confirm = api.client.post(f"{API}/payments/{pending.json()['id']}/confirm",
                              headers=_idem(key), json={"payment_method": {"type": "card"}})
    assert _error(confirm, 422)["details"]["field"] == "payment_method.number"
    listed = api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"]
    assert [p["status"] for p in listed] == ["pending_confirm"]  # nothing else was written
    assert api.pay(key, method={"type": "alipay", "test_outcome": "success"},
                   currency="CNY").status_code == 201  # other types need no number


# --- refunds: money travels with its currency ----------------------------------------------------

def test_a_refund_may_name_its_currency_which_must_be_the_payments(api):
    # api.md: Money travels as {"amount_minor": "<integer as string>", "currency": "USD"}. A
    # refund sent as money ({"amount_minor", "currency"}) was a 422 "extra input" even in the
    # payment's currency; in another currency it must be refused before anything is written.
    _, key = api.merchant()
    pid = api.pay(key, amount="1000").json()["id"]

    def refund(body):
        return api.client.post(f"{API}/refunds", headers=_idem(key),
                               json={"payment_id": pid, **body})

    error = _error(refund({"amount_minor": "100", "currency": "EUR"}), 422, "currency_mismatch")
    assert error["details"]["field"] == "currency", error
    assert _error(refund({"amount_minor": "100", "currency": "usd"}), 422)["details"]["field"] \
        == "currency"
    assert api.client.get(f"{API}/payments/{pid}", headers=bearer(key)).json()[
        "refunded_minor"] == "0"
    ok = refund({"amount_minor": "100", "currency": "USD"})
    assert ok.status_code == 201 and ok.json()["currency"] == "USD", ok.text
    assert ok.json()["amount_minor"] == "100"


# --- payment create: the optional customer fields ------------------------------------------------

@pytest.mark.parametrize("name,value", [
    ("ip", "999.1.1.1"), ("ip", "not-an-ip"), ("email", "notanemail"), ("email", "a@b"),
    ("geo", "x"), ("geo", "200,0"), ("geo", "48.8,nan"), ("geo", "USA")])
def test_a_customer_field_that_is_not_what_it_says_is_a_422_naming_it(api, name, value):
    # api.md: optional customer (id, email, ip, device_id, geo); 422 for validation with the
    # offending field in details. Velocity per IP, block lists by e-mail and the geo rule key on
    # these: a garbled value was taken and silently escaped them.
    _, key = api.merchant()
    error = _error(api.pay(key, customer={"id": "cus-1", name: value}), 422)
    assert error["details"]["field"] == f"customer.{name}", error
    assert api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"] == []


def test_well_formed_customer_fields_are_taken(api):
    _, key = api.merchant()
    for customer in ({"id": "c1", "ip": "2001:db8::1", "email": "jane.doe@example.com",
                      "geo": "48.85,2.35", "device_id": "dev-1"},
                     {"id": "c2", "ip": "10.0.0.1", "geo": "jp"}):
        assert api.pay(key, customer=customer).status_code == 201


# --- payment create: a forced channel ------------------------------------------------------------

def test_forcing_a_channel_that_does_not_exist_is_a_422_and_writes_nothing(api):
    # api.md: optional channel to force one; issue: every validation failure is a 4xx, nothing
    # half-written. An unknown id used to create a failed payment (no_channel_available).
    _, key = api.merchant()
    error = _error(api.pay(key, channel="ch_does_not_exist"), 422, "unknown_channel")
    assert error["details"]["field"] == "channel", error
    assert api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"] == []
    forced = api.pay(key, channel="ch_card_backup_sim").json()
    assert (forced["status"], forced["channel"]) == ("success", "ch_card_backup_sim"), forced
    # a channel that exists but cannot take the payment: a failed payment with the reasons
    wrong = api.pay(key, channel="ch_alipay_sim").json()
    assert wrong["status"] == "failed" and wrong["failure_code"] == "no_channel_available"


# --- Idempotency-Key: a key that cannot be kept ----------------------------------------------------

def test_an_over_long_idempotency_key_is_a_422_naming_the_header_and_writes_nothing(api):
    # api.md: 422 for validation with the offending field in details. It was a 400 with empty
    # details, on every money POST.
    _, key = api.merchant()
    for resp in (api.pay(key, idem="k" * 256),
                 api.client.post(f"{API}/withdrawals", json={
                     "amount_minor": "1", "currency": "USD", "destination": "acct"},
                     headers={**bearer(key), "Idempotency-Key": "k" * 256})):
        error = _error(resp, 422, "idempotency_key_invalid")
        assert error["details"]["field"] == "Idempotency-Key", error
    assert api.client.get(f"{API}/payments", headers=bearer(key)).json()["data"] == []
    assert api.pay(key, idem="k" * 255).status_code == 201


# --- issue 10: logs carry no card data, keys or tokens ------------------------------------------------

def test_log_lines_mask_grouped_card_numbers_jwts_and_structured_fields():
    # Issue 10: JSON logs with request id (no secrets, card data or keys; masked PII). The API
    # takes "4242 4242 4242 4242" (card_digits drops the spaces), and operators send JWTs; the
    # masking knew neither, nor looked into a line's structured fields.
    import json
    import logging

    from serving.observability import JsonFormatter

    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfMSJ9.c2lnbmF0dXJl"
    record = logging.LogRecord("clearhouse.api", logging.ERROR, __file__, 1,
                               "card 4242 4242 4242 4242, 4000-0000-0000-0002, token %s", (jwt,),
                               None)
    record.fields = {"path": "/x402/mer_1/lookup/4242424242424242", "status": 500,
                     "who": "jane.doe@example.com"}
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    for secret in ("4242 4242", "4000-0000", jwt, "eyJzdWIi", "4242424242424242", "jane.doe"):
        assert secret not in line, (secret, line)
    assert entry["status"] == 500 and entry["who"] == "j***@example.com"


# --- issue 10: /metrics counts every payment -----------------------------------------------------------

def _payments_total(api, status: str, channel: str) -> float:
    prefix = f'clearhouse_payments_total{{channel="{channel}",status="{status}"}} '
    lines = [line for line in api.client.get("/metrics").text.splitlines()
             if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_a_wallet_top_up_is_counted_in_clearhouse_payments_total(api):
    # README: clearhouse_payments_total{status,channel}; a top-up is a card payment, but only
    # POST /payments counted.
    _, key = api.merchant()
    before = _payments_total(api, "success", "ch_card_sim")
    headers = _idem(key)
    body = {"customer_id": "cus-m", "currency": "USD", "amount_minor": "500",
            "payment_method": {"type": "card", "number": random_card()}}
    for _ in range(2):  # the replay is not a second payment
        assert api.client.post(f"{API}/wallets/topups", headers=headers,
                               json=body).status_code == 201
    assert _payments_total(api, "success", "ch_card_sim") == before + 1
