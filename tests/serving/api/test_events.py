"""Events and webhook deliveries API on SQLite and Postgres: lists, tenant isolation, roles and
redelivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from serving import webhooks
from serving.auth import issue_api_key, issue_operator_token
from tests.serving.helpers import make_api
from tests.serving.webhook_helpers import HOOK_URL, Receiver, add_event, configure_webhook
from warehouse.ids import new_id
from warehouse.models import User


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def auth(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


def test_merchant_lists_and_reads_only_its_own_events(api):
    a, key_a = api.merchant("A")
    b, key_b = api.merchant("B")
    paid = api.pay(key_a, amount="700").json()
    mine = [add_event(api.engine, a, event_type="refund.succeeded") for _ in range(2)]
    theirs = add_event(api.engine, b)

    page = api.client.get("/api/v1/events", headers=auth(key_a)).json()
    ids = [e["id"] for e in page["data"]]
    assert ids == sorted(ids, reverse=True) and set(mine) < set(ids) and len(ids) == 3
    assert page["has_more"] is False
    (first,) = [e for e in page["data"] if e["type"] == "payment.succeeded"]
    assert set(first) == {"id", "type", "created_at", "data"}
    assert first["data"]["id"] == paid["id"] and first["created_at"].endswith("Z")

    got = api.client.get(f"/api/v1/events/{mine[0]}", headers=auth(key_a))
    assert got.status_code == 200 and got.json()["id"] == mine[0]
    for path in (f"/api/v1/events/{theirs}", f"/api/v1/webhook-deliveries?event_id={theirs}"):
        hidden = api.client.get(path, headers=auth(key_a))
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "resource_missing"
    missing = api.client.get("/api/v1/events/evt_nope", headers=auth(key_a))
    assert missing.status_code == 404
    assert hidden.json()["error"]["message"].replace(theirs, "X") == \
        missing.json()["error"]["message"].replace("evt_nope", "X")  # nothing tells them apart
    assert [e["id"] for e in api.client.get("/api/v1/events", headers=auth(key_b)).json()["data"]
            ] == [theirs]
    everyone = api.client.get("/api/v1/events", headers=auth(api.admin_token)).json()["data"]
    assert len(everyone) == 4


def test_event_list_pages_and_filters_by_type(api):
    merchant, key = api.merchant()
    made = [add_event(api.engine, merchant, event_type=t)
            for t in ("payment.succeeded", "payment.failed", "payment.succeeded")]
    ids = sorted(made, reverse=True)  # newest first (ids sort by creation time)
    page = api.client.get("/api/v1/events?limit=2", headers=auth(key)).json()
    assert [e["id"] for e in page["data"]] == ids[:2] and page["has_more"] is True
    rest = api.client.get(f"/api/v1/events?limit=2&starting_after={ids[1]}",
                          headers=auth(key)).json()
    assert [e["id"] for e in rest["data"]] == [ids[2]] and rest["has_more"] is False
    failed = api.client.get("/api/v1/events?type=payment.failed", headers=auth(key)).json()
    assert [e["id"] for e in failed["data"]] == [made[1]]
    assert api.client.get("/api/v1/events?limit=101", headers=auth(key)).status_code == 422
    assert api.client.get("/api/v1/events").status_code == 401


def test_redeliver_schedules_a_new_delivery_and_the_dispatcher_sends_it(api):
    merchant, key = api.merchant()
    configure_webhook(api.engine, merchant)
    event_id = add_event(api.engine, merchant)
    now = datetime.now(UTC)
    receiver = Receiver(now=now)
    with receiver.client() as client:
        assert webhooks.run_once(api.engine, client, now)["delivered"] == 1

    resp = api.client.post(f"/api/v1/events/{event_id}/redeliver", headers=auth(key))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["id"].startswith("whd_") and body["event_id"] == event_id
    assert (body["status"], body["attempts"], body["url"]) == ("pending", 0, HOOK_URL)

    later = datetime.now(UTC)
    receiver.now = later
    with receiver.client() as client:
        assert webhooks.deliver_due(api.engine, client, later).delivered == 1
    assert receiver.event_ids == [event_id, event_id]  # the same event id both times

    listed = api.client.get(f"/api/v1/webhook-deliveries?event_id={event_id}",
                            headers=auth(key)).json()
    assert [(d["id"], d["status"], d["attempts"]) for d in listed["data"]][0] == (
        body["id"], "delivered", 1)
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in listed["data"]] == [
        ("delivered", 1, 200), ("delivered", 1, 200)]
    assert all(d["delivered_at"].endswith("Z") and d["next_attempt_at"] is None
               for d in listed["data"])
    by_admin = api.client.post(f"/api/v1/events/{event_id}/redeliver",
                               headers=auth(api.admin_token))
    assert by_admin.status_code == 202
    mine = api.client.get("/api/v1/webhook-deliveries", headers=auth(key)).json()["data"]
    assert len(mine) == 3


def test_redeliver_needs_merchant_admin_or_platform_admin(api):
    merchant, key = api.merchant()
    configure_webhook(api.engine, merchant)
    other, other_key = api.merchant("Other")
    configure_webhook(api.engine, other)
    event_id = add_event(api.engine, merchant)
    with Session(api.engine) as session:
        developer_key = issue_api_key(session, merchant, role="merchant_developer")
        finance = User(id=new_id("user"), email="fin@clearhouse.local", role="finance")
        session.add(finance)
        session.commit()
        finance_token = issue_operator_token(api.settings, finance)
    path = f"/api/v1/events/{event_id}/redeliver"
    assert api.client.post(path).status_code == 401
    for credential in (developer_key, finance_token):
        refused = api.client.post(path, headers=auth(credential))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.client.get(path.removesuffix("/redeliver"),
                          headers=auth(developer_key)).status_code == 200  # may still read
    assert api.client.post(path, headers=auth(other_key)).status_code == 404
    assert api.client.get("/api/v1/webhook-deliveries", headers=auth(other_key)).json() == {
        "data": [], "has_more": False}


def test_redeliver_without_a_callback_url_is_409(api):
    merchant, key = api.merchant()
    event_id = add_event(api.engine, merchant)
    resp = api.client.post(f"/api/v1/events/{event_id}/redeliver", headers=auth(key))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "no_callback_url"
