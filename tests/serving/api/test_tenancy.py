"""Tenant isolation on SQLite and Postgres: each role against its own and another tenant's
merchant, payment, statement, API key and agent; the agent subtree across a re-parent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from serving import tenancy
from tests.serving.admin_helpers import admin, agent, bearer, key_for, operator, publish_statements
from tests.serving.helpers import Api, make_api


@dataclass
class World:
    api: Api
    agents: dict[str, str]  # A (top) -> B (child of A); C (another top)
    merchants: dict[str, str]  # mA under A, mB under B, mC under C, mX under the platform
    merchant_keys: dict[str, str]  # merchant_admin key per merchant
    payments: dict[str, str]  # one payment per merchant
    agent_keys: dict[str, tuple[str, str]]  # agent -> (key id, key)
    key_ids: dict[str, str]  # merchant -> id of its first key


@pytest.fixture
def world(oltp_url, make_settings) -> World:
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    a = agent(api, "A")
    b = agent(api, "B", a)
    c = agent(api, "C")
    merchants, keys, payments, key_ids = {}, {}, {}, {}
    for name, agent_id in (("mA", a), ("mB", b), ("mC", c), ("mX", None)):
        merchants[name], keys[name] = api.merchant(name, agent_id=agent_id)
        resp = api.pay(keys[name])
        assert resp.status_code == 201, resp.text
        payments[name] = resp.json()["id"]
        listed = api.client.get(f"/api/v1/api-keys?merchant_id={merchants[name]}",
                                headers=admin(api)).json()["data"]
        key_ids[name] = listed[0]["id"]
    agent_keys = {name: key_for(api, agent_id=agent_id) for name, agent_id in
                  (("A", a), ("B", b), ("C", c))}
    publish_statements(settings, list(merchants.values()))
    return World(api, {"A": a, "B": b, "C": c}, merchants, keys, payments, agent_keys, key_ids)


def _reads(w: World, merchant: str, key_id: str, agent_id: str) -> dict[str, str]:
    return {
        "merchant": f"/api/v1/merchants/{w.merchants[merchant]}",
        "payment": f"/api/v1/payments/{w.payments[merchant]}",
        "statement": f"/api/v1/settlements/{w.merchants[merchant]}?period=2026-11-20",
        "api_key": f"/api/v1/api-keys/{key_id}",
        "agent": f"/api/v1/agents/{agent_id}",
    }


def _credential(w: World, role: str) -> str:
    if role == "platform_admin":
        return w.api.admin_token
    if role == "finance":
        return operator(w.api, "finance")
    if role == "merchant_admin":
        return w.merchant_keys["mA"]
    if role == "merchant_developer":
        return key_for(w.api, merchant_id=w.merchants["mA"], role="merchant_developer")[1]
    return w.agent_keys["B"][1]


# Another tenant's resources: for the merchant roles (tenant mA) merchant mC, C's key, agent C;
# for agent B its PARENT's merchant mA and the parent's key and agent A (a subtree goes down,
# never up). Operators see everything.
OTHER = {
    "platform_admin": {"merchant": 200, "payment": 200, "statement": 200, "api_key": 200,
                       "agent": 200},
    "finance": {"merchant": 200, "payment": 200, "statement": 200, "api_key": 200,
                "agent": 200},
    "merchant_admin": {"merchant": 404, "payment": 404, "statement": 404, "api_key": 404,
                       "agent": 403},
    "merchant_developer": {"merchant": 404, "payment": 404, "statement": 404, "api_key": 403,
                           "agent": 403},
    "agent": {"merchant": 404, "payment": 404, "statement": 404, "api_key": 404, "agent": 404},
}
# Its own: merchant roles mA, mA's key; agent B: its subtree's merchant mB, its own key, itself.
OWN = {
    "merchant_admin": {"merchant": 200, "payment": 200, "statement": 200, "api_key": 200},
    "merchant_developer": {"merchant": 200, "payment": 200, "statement": 200, "api_key": 403},
    "agent": {"merchant": 200, "payment": 200, "statement": 200, "api_key": 200, "agent": 200},
}


@pytest.mark.parametrize("role", list(OTHER))
def test_isolation_matrix_against_another_tenant(world, role):
    w = world
    credential = _credential(w, role)
    if role == "agent":
        paths = _reads(w, "mA", w.agent_keys["A"][0], w.agents["A"])
    else:
        paths = _reads(w, "mC", w.agent_keys["C"][0], w.agents["C"])
    got = {}
    for resource, path in paths.items():
        resp = w.api.client.get(path, headers=bearer(credential))
        got[resource] = resp.status_code
        if resp.status_code in (403, 404):
            assert resp.json()["error"]["code"] in ("forbidden", "resource_missing"), resp.text
        if resp.status_code == 404:  # the 404 says nothing the caller could not know
            assert "merchant_id" not in resp.json()["error"]["details"]
    assert got == OTHER[role]


@pytest.mark.parametrize("role", list(OWN))
def test_isolation_matrix_own_tenant(world, role):
    w = world
    credential = _credential(w, role)
    if role == "agent":
        paths = _reads(w, "mB", w.agent_keys["B"][0], w.agents["B"])
    else:
        paths = _reads(w, "mA", w.key_ids["mA"], w.agents["A"])
        del paths["agent"]
    got = {r: w.api.client.get(p, headers=bearer(credential)).status_code
           for r, p in paths.items()}
    assert got == OWN[role]
    statement = w.api.client.get(paths["statement"], headers=bearer(credential))
    merchant_id = w.merchants["mB" if role == "agent" else "mA"]
    assert f"{merchant_id}:USD:2026-11-20" in statement.text


def test_lists_show_only_the_tenant(world):
    w = world
    client = w.api.client

    def payment_ids(credential):
        return {p["id"] for p in client.get("/api/v1/payments", headers=bearer(credential))
                .json()["data"]}

    def merchant_ids(credential):
        return {m["id"] for m in client.get("/api/v1/merchants", headers=bearer(credential))
                .json()["data"]}

    assert payment_ids(w.agent_keys["A"][1]) == {w.payments["mA"], w.payments["mB"]}
    assert payment_ids(w.agent_keys["B"][1]) == {w.payments["mB"]}
    assert payment_ids(w.agent_keys["C"][1]) == {w.payments["mC"]}
    assert payment_ids(w.merchant_keys["mX"]) == {w.payments["mX"]}
    assert payment_ids(operator(w.api, "finance")) == set(w.payments.values())
    assert merchant_ids(w.agent_keys["A"][1]) == {w.merchants["mA"], w.merchants["mB"]}
    assert merchant_ids(w.merchant_keys["mC"]) == {w.merchants["mC"]}
    assert merchant_ids(w.api.admin_token) == set(w.merchants.values())
    agents_of_a = {a["id"] for a in client.get("/api/v1/agents", headers=bearer(
        w.agent_keys["A"][1])).json()["data"]}
    assert agents_of_a == {w.agents["A"], w.agents["B"]}
    keys_of_b = client.get("/api/v1/api-keys", headers=bearer(w.agent_keys["B"][1])).json()
    assert [k["agent_id"] for k in keys_of_b["data"]] == [w.agents["B"]]
    keys_of_ma = client.get("/api/v1/api-keys", headers=bearer(w.merchant_keys["mA"])).json()
    assert {k["merchant_id"] for k in keys_of_ma["data"]} == {w.merchants["mA"]}


def test_writes_on_another_tenant_are_404_and_missing_rights_403(world):
    w = world
    client = w.api.client
    ma, mc = w.merchants["mA"], w.merchants["mC"]
    key_ma = bearer(w.merchant_keys["mA"])
    developer = bearer(key_for(w.api, merchant_id=ma, role="merchant_developer")[1])
    finance = bearer(operator(w.api, "finance"))
    agent_b = bearer(w.agent_keys["B"][1])
    cases = [
        (key_ma, "patch", f"/api/v1/merchants/{mc}", {"callback_url": "https://evil.test/h"}, 404),
        (key_ma, "post", f"/api/v1/merchants/{mc}/webhook-secret", None, 404),
        (key_ma, "post", f"/api/v1/api-keys/{w.key_ids['mC']}/rotate", None, 404),
        (key_ma, "delete", f"/api/v1/api-keys/{w.key_ids['mC']}", None, 404),
        (key_ma, "post", "/api/v1/api-keys", {"merchant_id": mc}, 404),
        (agent_b, "delete", f"/api/v1/api-keys/{w.agent_keys['A'][0]}", None, 404),
        (agent_b, "post", "/api/v1/api-keys", {"agent_id": w.agents["A"]}, 404),
        (developer, "patch", f"/api/v1/merchants/{ma}", {"callback_url": "https://x.test/h"}, 403),
        (developer, "post", f"/api/v1/merchants/{ma}/webhook-secret", None, 403),
        (developer, "post", "/api/v1/api-keys", {}, 403),
        (developer, "get", "/api/v1/api-keys", None, 403),
        (finance, "post", "/api/v1/agents", {"name": "x"}, 403),
        (finance, "patch", f"/api/v1/merchants/{ma}", {"kyc_tier": 2}, 403),
        (finance, "delete", f"/api/v1/api-keys/{w.key_ids['mA']}", None, 403),
        (finance, "post", "/api/v1/prices", {"subject_type": "merchant", "subject_id": ma,
                                             "currency": "USD", "rate_bps": 1}, 403),
        (agent_b, "get", "/api/v1/channels", None, 403),
        (agent_b, "get", "/api/v1/audit-log", None, 403),
        (agent_b, "post", "/api/v1/payments", None, 403),
        (key_ma, "get", "/api/v1/users", None, 403),
        (key_ma, "get", f"/api/v1/agents/{w.agents['A']}", None, 403),
        (key_ma, "patch", f"/api/v1/merchants/{ma}", {"kyc_tier": 3}, 403),
    ]
    for headers, method, path, body, expected in cases:
        kwargs = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        resp = client.request(method.upper(), path, **kwargs)
        assert resp.status_code == expected, (method, path, resp.text)
    # nothing changed on the other tenant
    got = client.get(f"/api/v1/merchants/{mc}", headers=admin(w.api)).json()
    assert got["callback_url"] is None and got["webhook_secret_set"] is False
    assert client.get(f"/api/v1/api-keys/{w.key_ids['mC']}", headers=admin(w.api)).json()[
        "status"] == "active"


def test_agent_subtree_follows_effective_dated_reparent(oltp_url, make_settings):
    settings = make_settings(database_url=oltp_url)
    api = make_api(settings)
    a, c = agent(api, "A"), agent(api, "C")
    b = agent(api, "B", a)
    d = agent(api, "D", b)  # a grandchild moves with its parent
    mb, key_mb = api.merchant("mB", agent_id=b)
    md, _ = api.merchant("mD", agent_id=d)
    payment = api.pay(key_mb).json()["id"]
    key_a, key_c = key_for(api, agent_id=a)[1], key_for(api, agent_id=c)[1]
    moved = api.client.post(f"/api/v1/agents/{b}/parent", headers=admin(api),
                            json={"parent_id": c, "valid_from": "2022-06-01T00:00:00Z"})
    assert moved.status_code == 200, moved.text
    assert [(p["parent_id"], p["valid_from"], p["valid_to"]) for p in moved.json()["parents"]] == [
        (a, "2021-01-01T00:00:00.000Z", "2022-06-01T00:00:00.000Z"),
        (c, "2022-06-01T00:00:00.000Z", None)]

    def sees(key, clock=None):
        headers = bearer(key) | ({"Clearhouse-Test-Clock": clock} if clock else {})
        merchant = api.client.get(f"/api/v1/merchants/{mb}", headers=headers).status_code
        pay = api.client.get(f"/api/v1/payments/{payment}", headers=headers).status_code
        listed = {m["id"] for m in api.client.get("/api/v1/merchants", headers=headers)
                  .json()["data"]}
        return merchant, pay, listed

    before, at_switch = "2022-05-31T23:59:59Z", "2022-06-01T00:00:00Z"
    assert sees(key_a, before) == (200, 200, {mb, md})
    assert sees(key_c, before) == (404, 404, set())
    assert sees(key_a, at_switch) == (404, 404, set())  # valid_from is inclusive
    assert sees(key_c, at_switch) == (200, 200, {mb, md})
    assert sees(key_a) == (404, 404, set())  # now (wall clock)
    assert sees(key_c) == (200, 200, {mb, md})

    def subtree_at(at):
        body = api.client.get(f"/api/v1/agents/{a}/subordinates?at={at}",
                              headers=admin(api)).json()
        return ({(x["id"], x["depth"]) for x in body["agents"]},
                {m["id"] for m in body["merchants"]})

    assert subtree_at(before.replace("Z", "%2B00:00")) == ({(b, 1), (d, 2)}, {mb, md})
    assert subtree_at(at_switch.replace("Z", "%2B00:00")) == (set(), set())
    with Session(api.engine) as session:
        from datetime import UTC, datetime

        assert tenancy.agent_subtree(session, c, datetime(2022, 6, 1, tzinfo=UTC)) == {c, b, d}
        assert tenancy.agent_subtree(session, c, datetime(2022, 5, 1, tzinfo=UTC)) == {c}
        assert tenancy.agent_ancestors(session, d, datetime(2022, 5, 1, tzinfo=UTC)) == [b, a]
        assert tenancy.agent_ancestors(session, d, datetime(2023, 1, 1, tzinfo=UTC)) == [b, c]


def test_future_reparent_changes_nothing_until_it_starts(oltp_url, make_settings):
    api = make_api(make_settings(database_url=oltp_url))
    a, c = agent(api, "A"), agent(api, "C")
    b = agent(api, "B", a)
    mb, _ = api.merchant("mB", agent_id=b)
    key_a = key_for(api, agent_id=a)[1]
    resp = api.client.post(f"/api/v1/agents/{b}/parent", headers=admin(api),
                           json={"parent_id": c, "valid_from": "2099-01-01T00:00:00Z"})
    assert resp.status_code == 200 and resp.json()["parent_id"] == a
    assert api.client.get(f"/api/v1/merchants/{mb}", headers=bearer(key_a)).status_code == 200
    later = bearer(key_a) | {"Clearhouse-Test-Clock": "2099-01-01T00:00:00Z"}
    assert api.client.get(f"/api/v1/merchants/{mb}", headers=later).status_code == 404
    # the agent may not look at other instants of the tree (only operators may)
    resp = api.client.get(f"/api/v1/agents/{a}/subordinates?at=2020-01-01T00:00:00%2B00:00",
                          headers=bearer(key_a))
    assert resp.status_code == 403


def test_principal_can_see_merchant_refuses_agents():
    from serving.auth import Principal

    assert Principal(role="finance").can_see_merchant("mer_1")
    assert Principal(role="merchant_admin", merchant_id="mer_1").can_see_merchant("mer_1")
    assert not Principal(role="merchant_admin", merchant_id="mer_1").can_see_merchant("mer_2")
    assert not Principal(role="agent", agent_id="agt_1").can_see_merchant("mer_1")
