"""The fourth audit of the payments API against api.md, on SQLite and Postgres: a confirm needs
no body (only a card payment created without its card needs one), a JSON body sent without any
Content-Type is a 415 that says so (not a 422 about a "dictionary"), a bad test-clock header is
a 422 naming it, and the wallets list is newest first like every list."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.serving.admin_helpers import admin, bearer
from tests.serving.helpers import make_api, random_card

API = "/api/v1"


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def test_a_confirm_without_a_body_continues_the_payment_and_replays(api):
    _, key = api.merchant()
    pending = api.pay(key, amount="300", confirm=False, currency="CNY",
                      method={"type": "alipay", "test_outcome": "success"}).json()
    assert pending["status"] == "pending_confirm"
    headers = {**bearer(key), "Idempotency-Key": "confirm-1"}
    first = api.client.post(f"{API}/payments/{pending['id']}/confirm", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "success"
    again = api.client.post(f"{API}/payments/{pending['id']}/confirm", headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content


def test_a_json_body_without_a_content_type_is_a_415_saying_so(api):
    _, key = api.merchant()
    body = json.dumps({"amount_minor": "1000", "currency": "USD", "merchant_reference": "o-1",
                       "payment_method": {"type": "card", "number": random_card()}}).encode()
    resp = api.client.post(f"{API}/payments", content=body, headers={
        **bearer(key), "Idempotency-Key": uuid.uuid4().hex})
    assert resp.status_code == 415, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert error["details"] == {"field": "body", "content_type": None}
    listed = api.client.get(f"{API}/payments", headers=bearer(key)).json()
    assert listed["data"] == []  # nothing was written


@pytest.mark.parametrize("clock", ["yesterday", "2026-11-20T10:00:00"])
def test_a_bad_test_clock_is_a_422_naming_the_header(api, clock):
    _, key = api.merchant()
    resp = api.pay(key, headers={"Clearhouse-Test-Clock": clock})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_test_clock"
    assert error["details"] == {"field": "Clearhouse-Test-Clock"}


def test_the_wallets_list_is_newest_first_and_pages_on(api):
    _, key = api.merchant(kyc_tier=3)
    made = []
    for customer in ("cus_a", "cus_b", "cus_c"):
        resp = api.client.post(f"{API}/wallets/topups", json={
            "customer_id": customer, "currency": "USD", "amount_minor": "1000",
            "bonus_minor": "0", "payment_method": {"type": "card", "number": random_card()}},
            headers={**bearer(key), "Idempotency-Key": uuid.uuid4().hex})
        assert resp.status_code == 201, resp.text
        made.append(resp.json()["wallet"]["id"])
    first = api.client.get(f"{API}/wallets?limit=2", headers=bearer(key)).json()
    assert [w["id"] for w in first["data"]] == made[::-1][:2] and first["has_more"] is True
    rest = api.client.get(f"{API}/wallets?limit=2&starting_after={made[1]}",
                          headers=bearer(key)).json()
    assert [w["id"] for w in rest["data"]] == [made[0]] and rest["has_more"] is False


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _branches(doc: dict, schema: dict) -> list[dict]:
    """The alternatives a property schema allows (nested anyOf flattened, null left out)."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema:
        return [b for s in schema["anyOf"] for b in _branches(doc, s)]
    return [] if schema.get("type") == "null" else [schema]


def test_openapi_names_money_inputs_as_digit_strings_or_integers_and_bearer_auth(api):
    # api.md: money travels as {"amount_minor": "<integer as string>"}, an integer accepted on
    # input; the document the clients and fuzzers are generated from must say so.
    doc = api.client.get("/openapi.json").json()
    checked = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            body = _resolve(doc, content["application/json"]["schema"])
            for name, prop in body.get("properties", {}).items():
                if not name.endswith("_minor"):
                    continue
                branches = _branches(doc, prop)
                if any(b.get("type") == "object" for b in branches):  # per currency: its values
                    branches = [v for b in branches
                                for v in _branches(doc, b["additionalProperties"])]
                kinds = sorted(b.get("type") for b in branches)
                assert kinds == ["integer", "string"], (method, path, name, prop)
                assert all(b.get("pattern") for b in branches if b["type"] == "string")
                checked.append((method, path, name))
    assert ("post", "/api/v1/payments", "amount_minor") in checked
    assert ("post", "/api/v1/wallets/topups", "bonus_minor") in checked
    assert len(checked) >= 10, checked
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": "a merchant or agent API key (sk_test_...) or an operator JWT"}
    create = doc["paths"]["/api/v1/payments"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    assert "authorization" not in {p["name"].lower() for p in create.get("parameters", [])}


@pytest.mark.parametrize("rate", [250.0, "250.0", "2.5e2", True])
def test_a_rate_in_basis_points_is_never_a_float(api, rate):
    # money.md: no floats where money flows. A rate of 250.0 was stored as 250.
    merchant_id, _ = api.merchant()
    bodies = {"/prices": {"subject_type": "merchant", "subject_id": merchant_id,
                          "currency": "EUR", "rate_bps": rate},
              "/channels": {"name": "acq", "type": "card", "currencies": [{"currency": "USD"}],
                            "price": {"rate_bps": rate}}}
    for url, body in bodies.items():
        resp = api.client.post(f"{API}{url}", headers=admin(api), json=body)
        assert resp.status_code == 422, (url, resp.text)
        assert "rate_bps" in str(resp.json()["error"]["details"]), resp.text
    good = api.client.post(f"{API}/prices", headers=admin(api), json={
        **bodies["/prices"], "rate_bps": "250"})
    assert good.status_code == 201, good.text
    assert good.json()["rate_bps"] == 250
