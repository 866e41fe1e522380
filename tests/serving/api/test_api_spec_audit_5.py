"""The fifth audit of the API against api.md (calls through the app, on SQLite and Postgres): a
refund can be read back by id and listed like a payment, a channel callback's 422 names the body
when the body itself is wrong, an operator's balance of an owner that does not exist is a 404,
a role without the right is a 403 whether or not the event exists, a malformed audit-log cursor
is a 404 like every list's, and a trailing slash is a 404 in the error shape, not a redirect."""

from __future__ import annotations

import time
import uuid

import pytest

from serving import signing
from tests.serving.admin_helpers import admin, bearer, key_for
from tests.serving.helpers import make_api

API = "/api/v1"


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    return error


def test_a_refund_reads_back_by_id_and_in_its_payments_list(api):
    _, key = api.merchant()
    paid = [api.pay(key, amount="5000").json()["id"] for _ in range(2)]
    made = [api.refund(key, paid[0], amount=str(a)) for a in (100, 200)]
    made.append(api.refund(key, paid[1], amount="300"))
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    for resp in made:
        read = api.client.get(f"{API}/refunds/{resp.json()['id']}", headers=bearer(key))
        assert read.status_code == 200 and read.json() == resp.json()

    listed = api.client.get(f"{API}/refunds?payment_id={paid[0]}", headers=bearer(key)).json()
    assert [r["id"] for r in listed["data"]] == sorted(
        (r.json()["id"] for r in made[:2]), reverse=True)
    assert [r["amount_minor"] for r in listed["data"]] == ["200", "100"]
    page = api.client.get(f"{API}/refunds?limit=2", headers=bearer(key)).json()
    assert page["has_more"] is True and len(page["data"]) == 2

    _, other = api.merchant("Other")
    _error(api.client.get(f"{API}/refunds/{made[0].json()['id']}", headers=bearer(other)),
           404, "resource_missing")
    assert api.client.get(f"{API}/refunds", headers=bearer(other)).json()["data"] == []
    assert len(api.client.get(f"{API}/refunds", headers=admin(api)).json()["data"]) == 3


@pytest.mark.parametrize("body", [b"{nope", b"[]", b"\xff"])
def test_a_callback_whose_body_is_wrong_names_the_body(api, body):
    from sqlalchemy.orm import Session

    from serving.channel_simulator import ensure_callback_secrets
    from warehouse.models import Channel

    with Session(api.engine) as session:
        ensure_callback_secrets(session)
        session.commit()
        secret = session.get(Channel, "ch_card_sim").callback_secret
    resp = api.client.post(f"{API}/channels/ch_card_sim/callbacks", content=body, headers={
        "Content-Type": "application/json",
        signing.SIGNATURE_HEADER: signing.sign(secret, body, time.time())})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "body"


@pytest.mark.parametrize("query", ["merchant_id=mer_nope", "agent_id=agt_nope"])
def test_an_operators_balance_of_no_such_owner_is_a_404(api, query):
    _error(api.client.get(f"{API}/balances?{query}", headers=admin(api)), 404,
           "resource_missing")


def test_redelivery_without_the_right_is_a_403_whether_or_not_the_event_exists(api):
    merchant_id, _ = api.merchant()
    _, developer = key_for(api, merchant_id=merchant_id, role="merchant_developer")
    for event_id in ("evt_nope", f"evt_{uuid.uuid4().hex}"):
        _error(api.client.post(f"{API}/events/{event_id}/redeliver", headers=bearer(developer)),
               403, "forbidden")


def test_a_malformed_audit_log_cursor_is_a_404_like_every_list(api):
    error = _error(api.client.get(f"{API}/audit-log?starting_after=zzz", headers=admin(api)),
                   404, "resource_missing")
    assert error["details"]["field"] == "starting_after"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trailing_slash_is_a_404_in_the_error_shape_not_a_redirect(api, method):
    _, key = api.merchant()
    resp = api.client.request(method, f"{API}/payments/", headers=bearer(key),
                              follow_redirects=False, json={} if method == "POST" else None)
    assert resp.status_code == 404, resp.text
    assert set(resp.json()["error"]) == {"code", "message", "details"}


def test_the_withdrawal_schema_names_paid_at(api):
    schema = api.client.app.openapi()["components"]["schemas"]["WithdrawalOut"]
    assert "paid_at" in schema["properties"]


def test_the_payment_and_refund_lists_filter_by_merchant_within_what_the_caller_sees(api):
    first, key = api.merchant()
    second, other = api.merchant("Other")
    mine = api.pay(key, amount="700").json()["id"]
    theirs = api.pay(other, amount="800").json()["id"]
    api.refund(key, mine, amount="10")
    api.refund(other, theirs, amount="20")
    for merchant_id, payment_id in ((first, mine), (second, theirs)):
        payments = api.client.get(f"{API}/payments?merchant_id={merchant_id}",
                                  headers=admin(api)).json()["data"]
        assert [p["id"] for p in payments] == [payment_id]
        refunds = api.client.get(f"{API}/refunds?merchant_id={merchant_id}",
                                 headers=admin(api)).json()["data"]
        assert [r["payment_id"] for r in refunds] == [payment_id]
    # a merchant naming another merchant sees nothing of it
    assert api.client.get(f"{API}/payments?merchant_id={second}",
                          headers=bearer(key)).json()["data"] == []
