"""api.md's conventions where they are easy to miss, on SQLite and Postgres: the error shape of
an unexpected error (500) and of a body that is not JSON, the Bearer scheme in any case, amount
strings in their one spelling, non-negative fixed fees, and timestamps with Z."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from serving.deps import SessionDep
from serving.errors import ApiError
from serving.statements import _text
from tests.serving.admin_helpers import admin, bearer
from tests.serving.helpers import make_api
from warehouse.money import AmountTextError, FloatAmountError


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def _pay_body(amount) -> dict:
    return {"amount_minor": amount, "currency": "USD", "merchant_reference": "o-1",
            "payment_method": {"type": "card", "number": "4242424242424242"}}


def _money_headers(key: str) -> dict[str, str]:
    return {**bearer(key), "Idempotency-Key": uuid.uuid4().hex}


# --- unexpected errors: a 500 in the error shape, the traceback in the log ----------------------

class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def api_log():
    """What clearhouse.api logs (the "clearhouse" logger does not propagate to pytest's)."""
    handler = _Records()
    logger = logging.getLogger("clearhouse.api")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.fixture
def boom(api):
    """Routes that raise, one per kind of error, on the real app (its middleware included)."""
    app = api.client.app

    def unexpected(session: SessionDep):  # a sync route with a database session, as most are
        raise RuntimeError("db password=hunter2 at /srv/clearhouse/secret.py")

    async def unexpected_async():
        raise KeyError("internal_key")

    def api_error():
        raise ApiError(409, "conflict_here", "a conflict", {"id": "x"})

    def money_error():
        from warehouse.money import to_minor_int

        to_minor_int(12.5)

    def http_error():
        raise HTTPException(418, "teapot")

    async def disconnected():
        raise ClientDisconnect()

    for path, endpoint in [("unexpected", unexpected), ("unexpected-async", unexpected_async),
                           ("api-error", api_error), ("money-error", money_error),
                           ("http-error", http_error), ("disconnected", disconnected)]:
        app.add_api_route(f"/api/v1/_test/{path}", endpoint, methods=["GET"])
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("path", ["unexpected", "unexpected-async"])
def test_unexpected_error_is_a_500_in_the_error_shape_and_logged(boom, api_log, path):
    resp = boom.get(f"/api/v1/_test/{path}", headers={"X-Request-Id": "req-500"})
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body == {"error": {"code": "internal_error", "message": body["error"]["message"],
                              "details": {}}}
    assert "req-500" in body["error"]["message"]
    # nothing of the exception reaches the caller
    for secret in ("hunter2", "RuntimeError", "KeyError", "internal_key", "secret.py", "Traceback"):
        assert secret not in resp.text
    # Starlette answers it from ServerErrorMiddleware, outside RequestContextMiddleware: the
    # handler sets the request id itself
    assert resp.headers["x-request-id"] == "req-500"
    errors = [r for r in api_log if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert errors[0].exc_info[0] in (RuntimeError, KeyError)
    assert errors[0].fields["request_id"] == "req-500"
    assert errors[0].fields["path"] == f"/api/v1/_test/{path}"


def test_unexpected_error_still_reaches_the_server(api, boom):
    # ServerErrorMiddleware re-raises after answering, so the server (and a default TestClient)
    # still sees the exception: nothing is swallowed.
    with pytest.raises(RuntimeError, match="hunter2"):
        TestClient(api.client.app).get("/api/v1/_test/unexpected")


def test_the_specific_handlers_still_win_over_the_catch_all(api, boom, api_log):
    api_error = boom.get("/api/v1/_test/api-error")
    assert api_error.status_code == 409 and api_error.json() == {
        "error": {"code": "conflict_here", "message": "a conflict", "details": {"id": "x"}}}
    money = boom.get("/api/v1/_test/money-error")
    assert money.status_code == 422 and money.json()["error"]["code"] == "float_amount"
    http = boom.get("/api/v1/_test/http-error")
    assert http.status_code == 418 and http.json()["error"] == {
        "code": "http_error", "message": "teapot", "details": {}}
    assert boom.get("/api/v1/_test/disconnected").status_code == 499
    assert boom.get("/api/v1/nope").json()["error"]["code"] == "not_found"
    assert boom.delete("/api/v1/payments").json()["error"]["code"] == "method_not_allowed"
    validation = boom.get("/api/v1/merchants?limit=abc", headers=admin(api))
    assert validation.status_code == 422
    assert validation.json()["error"]["details"]["field"] == "limit"
    assert not [r for r in api_log if r.levelno >= logging.ERROR]


# --- a body that is not JSON ----------------------------------------------------------------------

def test_invalid_json_names_the_body_and_gives_the_position(api):
    _, key = api.merchant()
    resp = api.client.post("/api/v1/payments", content=b'{"amount_minor": ',
                           headers={**_money_headers(key), "content-type": "application/json"})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["details"]["field"] == "body" and error["details"]["position"] == 17
    assert error["message"].startswith("body: ") and "17" in error["message"]


# --- the Bearer scheme is case-insensitive (RFC 7235) ---------------------------------------------

@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_in_any_case(api, scheme):
    _, key = api.merchant()
    assert api.client.get("/api/v1/payments",
                          headers={"Authorization": f"{scheme} {key}"}).status_code == 200
    assert api.client.get("/api/v1/merchants", headers={
        "Authorization": f"{scheme}  {api.admin_token}"}).status_code == 200  # JWT, two spaces


@pytest.mark.parametrize("header", ["Basic {key}", "Bearer", "Bearer ", "Bearer{key}", "{key}",
                                    "Token {key}"])
def test_other_schemes_or_no_credential_are_401(api, header):
    _, key = api.merchant()
    resp = api.client.get("/api/v1/payments", headers={"Authorization": header.format(key=key)})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"


# --- amounts: integers, or the integer's plain spelling as a string -------------------------------

@pytest.mark.parametrize("amount", [" 1250 ", "+1250", "0012", "-0", "1250\n", "12.50", "1e3"])
def test_amount_strings_other_than_plain_digits_are_422_saying_why(api, amount):
    _, key = api.merchant()
    resp = api.pay(key, amount=amount)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    # a decimal or an exponent is a float; a badly spelt integer is not one
    code = FloatAmountError.code if any(ch in amount for ch in ".eE") else AmountTextError.code
    assert error["code"] == code and error["details"]["field"] == "amount_minor"
    assert repr(amount) in error["message"]


@pytest.mark.parametrize("amount", ["1250", 1250])
def test_plain_amounts_are_accepted(api, amount):
    _, key = api.merchant()
    resp = api.pay(key, amount=amount)
    assert resp.status_code == 201, resp.text
    assert resp.json()["amount_minor"] == "1250"


# --- POST /merchants pricing[]: fixed fees are never negative, as in POST /prices -----------------

@pytest.mark.parametrize("fixed", [-30, "-30"])
def test_merchant_pricing_refuses_a_negative_fixed_fee(api, fixed):
    resp = api.client.post("/api/v1/merchants", headers=admin(api), json={
        "name": "Neg", "pricing": [{"currency": "USD", "rate_bps": 250, "fixed_minor": fixed}]})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "amount_negative"
    assert error["details"]["field"] == "pricing.0.fixed_minor"
    merchants = api.client.get("/api/v1/merchants", headers=admin(api)).json()["data"]
    assert "Neg" not in [m["name"] for m in merchants]


@pytest.mark.parametrize("fixed", [0, 30, "30"])
def test_merchant_pricing_takes_a_zero_or_positive_fixed_fee(api, fixed):
    resp = api.client.post("/api/v1/merchants", headers=admin(api), json={
        "name": "Pos", "pricing": [{"currency": "USD", "rate_bps": 250, "fixed_minor": fixed}]})
    assert resp.status_code == 201, resp.text
    prices = api.client.get(f"/api/v1/prices?subject_type=merchant&subject_id={resp.json()['id']}",
                            headers=admin(api)).json()["data"]
    assert [p["fixed_minor"] for p in prices] == [str(fixed)]


# --- timestamps end in Z, also inside audit details and messages -----------------------------------

def test_payment_token_audit_entry_has_expires_at_with_z(api):
    _, key = api.merchant()
    token = api.client.post("/api/v1/payment-tokens", headers=_money_headers(key),
                            json={"agent_name": "bot", "amount_minor": "100"})
    assert token.status_code == 201, token.text
    entries = api.client.get("/api/v1/audit-log", headers=admin(api)).json()["data"]
    issued = next(e for e in entries if e["action"] == "payment_token.issue")
    assert issued["details"]["expires_at"].endswith("Z")
    assert issued["details"]["expires_at"] == token.json()["expires_at"]


def test_valid_from_too_early_message_gives_times_with_z(api):
    merchant_id, _ = api.merchant()

    def price(valid_from: str):
        return api.client.post("/api/v1/prices", headers=admin(api), json={
            "subject_type": "merchant", "subject_id": merchant_id, "currency": "USD",
            "rate_bps": 100, "valid_from": valid_from})

    assert price("2031-01-01T00:00:00Z").status_code == 201
    early = price("2030-06-01T00:00:00Z")
    assert early.status_code == 422 and early.json()["error"]["code"] == "valid_from_too_early"
    assert "+00:00" not in early.text
    assert "2031-01-01T00:00:00.000Z" in early.json()["error"]["message"]


@pytest.mark.parametrize(("value", "text"), [
    (datetime(2026, 11, 20, 12, 0, tzinfo=UTC), "2026-11-20T12:00:00Z"),
    (datetime(2026, 11, 20, 20, 0, tzinfo=timezone(timedelta(hours=8))), "2026-11-20T12:00:00Z"),
    (datetime(2026, 11, 20, 7, 0, tzinfo=timezone(timedelta(hours=-5))), "2026-11-20T12:00:00Z"),
    (datetime(2026, 11, 20, 12, 0, 0, 250000), "2026-11-20T12:00:00.250000Z"),  # naive UTC
    (date(2026, 11, 20), "2026-11-20"),
])
def test_statement_csv_times_are_utc_with_z(value, text):
    assert _text(value) == text
