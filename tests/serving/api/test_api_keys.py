"""API keys on SQLite and Postgres: create, list without secrets, rotate (with and without a
grace period), revoke, expiry, roles."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from serving import cache
from tests.serving.admin_helpers import admin, agent, bearer, key_for, operator
from tests.serving.helpers import make_api
from warehouse.models import ApiKey, AuditLogEntry


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def status_of(api, key: str) -> int:
    return api.client.get("/api/v1/payments", headers=bearer(key)).status_code


def test_merchant_admin_creates_a_developer_key_that_can_pay_but_not_manage(api):
    merchant_id, admin_key = api.merchant()
    resp = api.client.post("/api/v1/api-keys", headers=bearer(admin_key),
                           json={"role": "merchant_developer", "name": "ci"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    dev_key = body["key"]
    assert dev_key.startswith("sk_test_") and body["prefix"] == dev_key[:12]
    assert body["merchant_id"] == merchant_id and body["role"] == "merchant_developer"
    assert body["id"].startswith("key_") and body["created_at"].endswith("Z")
    paid = api.pay(dev_key)
    assert paid.status_code == 201
    assert api.refund(dev_key, paid.json()["id"]).status_code == 201
    assert api.client.get(f"/api/v1/payments/{paid.json()['id']}",
                          headers=bearer(dev_key)).status_code == 200
    for method, path in (("GET", "/api/v1/api-keys"), ("POST", "/api/v1/api-keys"),
                         ("POST", f"/api/v1/api-keys/{body['id']}/rotate"),
                         ("DELETE", f"/api/v1/api-keys/{body['id']}"),
                         ("POST", f"/api/v1/merchants/{merchant_id}/webhook-secret")):
        assert api.client.request(method, path, headers=bearer(dev_key)).status_code == 403
    refused = api.client.patch(f"/api/v1/merchants/{merchant_id}", headers=bearer(dev_key),
                               json={"callback_url": "https://shop.test/hooks"})
    assert refused.status_code == 403
    # a merchant_admin cannot mint an agent's key role
    bad = api.client.post("/api/v1/api-keys", headers=bearer(admin_key), json={"role": "agent"})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "role"


def test_keys_are_hashed_at_rest_and_never_listed(api):
    merchant_id, admin_key = api.merchant()
    created = api.client.post("/api/v1/api-keys", headers=bearer(admin_key), json={}).json()
    listed = api.client.get("/api/v1/api-keys", headers=bearer(admin_key))
    assert listed.status_code == 200
    text = listed.text
    assert created["key"] not in text and admin_key not in text
    assert all("key" not in k and "key_hash" not in k for k in listed.json()["data"])
    assert {k["prefix"] for k in listed.json()["data"]} == {admin_key[:12], created["key"][:12]}
    one = api.client.get(f"/api/v1/api-keys/{created['id']}", headers=bearer(admin_key)).json()
    assert "key" not in one and one["status"] == "active"
    with Session(api.engine) as s:
        row = s.get(ApiKey, created["id"])
        assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
        values = [str(v) for v in s.execute(select(ApiKey.__table__)).all()]
        assert not any(created["key"] in v for v in values)
        details = " ".join(s.scalars(select(AuditLogEntry.details)).all())
        assert created["key"] not in details and admin_key not in details


def test_rotate_without_grace_revokes_the_old_key_at_once(api):
    _, old = api.merchant()
    old_id = api.client.get("/api/v1/api-keys", headers=bearer(old)).json()["data"][0]["id"]
    resp = api.client.post(f"/api/v1/api-keys/{old_id}/rotate", headers=bearer(old))
    assert resp.status_code == 201, resp.text
    new = resp.json()["key"]
    assert new != old and resp.json()["role"] == "merchant_admin"
    assert status_of(api, old) == 401
    assert api.client.get("/api/v1/payments", headers=bearer(old)).json()["error"]["code"] == \
        "invalid_api_key"
    assert status_of(api, new) == 200
    got = api.client.get(f"/api/v1/api-keys/{old_id}", headers=bearer(new)).json()
    assert got["status"] == "revoked" and got["revoked_at"].endswith("Z")
    again = api.client.post(f"/api/v1/api-keys/{old_id}/rotate", headers=bearer(new))
    assert again.status_code == 409 and again.json()["error"]["code"] == "api_key_inactive"


def test_rotate_with_grace_keeps_the_old_key_until_it_expires(api):
    _, old = api.merchant()
    old_id = api.client.get("/api/v1/api-keys", headers=bearer(old)).json()["data"][0]["id"]
    resp = api.client.post(f"/api/v1/api-keys/{old_id}/rotate", headers=bearer(old),
                           json={"grace_seconds": 3600})
    new = resp.json()["key"]
    assert status_of(api, old) == 200 and status_of(api, new) == 200
    got = api.client.get(f"/api/v1/api-keys/{old_id}", headers=admin(api)).json()
    assert got["status"] == "expiring" and got["revoked_at"] is None
    ends = datetime.fromisoformat(got["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < ends - datetime.now(UTC) <= timedelta(hours=1)
    with Session(api.engine) as s:  # the grace period runs out
        s.execute(update(ApiKey).where(ApiKey.id == old_id)
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    cache.clear()  # a change made behind the API's back reaches it within the cache TTL
    assert status_of(api, old) == 401 and status_of(api, new) == 200
    assert api.client.get(f"/api/v1/api-keys/{old_id}", headers=admin(api)).json()[
        "status"] == "expired"
    bad = api.client.post(f"/api/v1/api-keys/{old_id}/rotate", headers=admin(api),
                          json={"grace_seconds": -1})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "grace_seconds"


def test_revoke_and_expiry(api):
    merchant_id, admin_key = api.merchant()
    extra_id, extra = key_for(api, merchant_id=merchant_id)
    assert status_of(api, extra) == 200
    resp = api.client.delete(f"/api/v1/api-keys/{extra_id}", headers=bearer(admin_key))
    assert resp.status_code == 200 and resp.json()["status"] == "revoked"
    assert status_of(api, extra) == 401
    # revoking twice is harmless, and records one audit entry
    assert api.client.delete(f"/api/v1/api-keys/{extra_id}",
                             headers=admin(api)).status_code == 200
    with Session(api.engine) as s:
        revocations = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "api_key.revoked", AuditLogEntry.resource_id == extra_id)
        ).all()
        assert len(revocations) == 1
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    expiring = api.client.post("/api/v1/api-keys", headers=bearer(admin_key),
                               json={"expires_at": soon}).json()
    assert status_of(api, expiring["key"]) == 200 and expiring["status"] == "expiring"
    with Session(api.engine) as s:
        s.execute(update(ApiKey).where(ApiKey.id == expiring["id"])
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    cache.clear()  # as above: a direct database change, seen within the cache TTL
    assert status_of(api, expiring["key"]) == 401
    past = api.client.post("/api/v1/api-keys", headers=bearer(admin_key),
                           json={"expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422 and past.json()["error"]["details"]["field"] == "expires_at"
    naive = api.client.post("/api/v1/api-keys", headers=bearer(admin_key),
                            json={"expires_at": "2099-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["details"]["field"] == "expires_at"


def test_agent_keys(api):
    a, b = agent(api, "A"), agent(api, "B")
    a_key_id, a_key = key_for(api, agent_id=a)
    listed = api.client.get("/api/v1/api-keys", headers=bearer(a_key)).json()["data"]
    assert [(k["id"], k["role"], k["agent_id"], k["merchant_id"]) for k in listed] == [
        (a_key_id, "agent", a, None)]
    own = api.client.post("/api/v1/api-keys", headers=bearer(a_key), json={"name": "etl"})
    assert own.status_code == 201 and own.json()["agent_id"] == a
    assert status_of(api, own.json()["key"]) == 200
    other = api.client.post("/api/v1/api-keys", headers=bearer(a_key), json={"agent_id": b})
    assert other.status_code == 404
    rotated = api.client.post(f"/api/v1/api-keys/{a_key_id}/rotate", headers=bearer(a_key))
    assert rotated.status_code == 201 and status_of(api, a_key) == 401
    wrong_role = api.client.post("/api/v1/api-keys", headers=admin(api),
                                 json={"agent_id": b, "role": "merchant_admin"})
    assert wrong_role.status_code == 422
    both = api.client.post("/api/v1/api-keys", headers=admin(api),
                           json={"agent_id": b, "merchant_id": api.merchant()[0]})
    assert both.status_code == 422
    unknown = api.client.post("/api/v1/api-keys", headers=admin(api),
                              json={"agent_id": "agt_nope"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_agent"


def test_suspended_owner_and_disabled_operator_are_refused(api):
    merchant_id, key = api.merchant()
    resp = api.client.patch(f"/api/v1/merchants/{merchant_id}", headers=admin(api),
                            json={"status": "suspended"})
    assert resp.status_code == 200
    refused = api.client.get("/api/v1/payments", headers=bearer(key))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "merchant_inactive"
    token = operator(api, "finance")
    assert api.client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    users = api.client.get("/api/v1/users", headers=admin(api)).json()["data"]
    user_id = next(u["id"] for u in users if u["role"] == "finance")
    assert api.client.post(f"/api/v1/users/{user_id}/disable",
                           headers=admin(api)).status_code == 200
    gone = api.client.get("/api/v1/users", headers=bearer(token))
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_token"


def test_finance_reads_keys_but_writes_nothing(api):
    merchant_id, _ = api.merchant()
    finance = bearer(operator(api, "finance"))
    listed = api.client.get(f"/api/v1/api-keys?merchant_id={merchant_id}", headers=finance)
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1
    key_id = listed.json()["data"][0]["id"]
    assert api.client.post(f"/api/v1/api-keys/{key_id}/rotate", headers=finance).status_code == 403
    assert api.client.post("/api/v1/api-keys", headers=finance,
                           json={"merchant_id": merchant_id}).status_code == 403
