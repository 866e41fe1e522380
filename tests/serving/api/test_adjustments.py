"""Settlement adjustments on SQLite and Postgres: finance and platform_admin create them
(idempotent, audit-logged, in the merchant's settlement currency, never zero, with a reason);
merchants and agents read their tenant's and get 403 on create, 404 on another tenant's."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.serving.admin_helpers import agent, bearer, key_for, operator
from tests.serving.helpers import make_api
from warehouse.models import AuditLogEntry, SettlementAdjustment

CLOCK = {"Clearhouse-Test-Clock": "2026-11-20T09:30:00Z"}


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def adjust(api, token, merchant_id, amount="2500", currency="USD", reason="goodwill credit",
           idem=None, headers=None, body=None):
    body = body if body is not None else {"amount_minor": amount, "currency": currency,
                                          "reason": reason}
    return api.client.post(f"/api/v1/merchants/{merchant_id}/adjustments", json=body,
                           headers={**bearer(token), **(headers or {}),
                                    "Idempotency-Key": idem or uuid.uuid4().hex})


def listed(api, token, merchant_id, query=""):
    return api.client.get(f"/api/v1/merchants/{merchant_id}/adjustments{query}",
                          headers=bearer(token))


def count(api, model, *where) -> int:
    with Session(api.engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_finance_creates_with_audit_entry(api):
    merchant_id, _ = api.merchant()
    finance = operator(api, "finance")
    resp = adjust(api, finance, merchant_id, amount="-123456789012345678901",
                  reason="chargeback fee from Nov", headers=CLOCK)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"].startswith("adj_")
    assert body["created_by"].startswith("finance:usr_")
    assert {k: v for k, v in body.items() if k not in ("id", "created_by", "created_at")} == {
        "object": "settlement_adjustment", "merchant_id": merchant_id,
        "amount_minor": "-123456789012345678901", "currency": "USD",
        "reason": "chargeback fee from Nov", "effective_at": "2026-11-20T09:30:00.000Z"}
    with Session(api.engine) as s:
        row = s.get(SettlementAdjustment, body["id"])
        assert row.amount_minor == -123456789012345678901  # exact above 2^63, signed
        entry = s.scalars(select(AuditLogEntry)
                          .where(AuditLogEntry.resource_id == body["id"])).one()
        assert entry.action == "settlement_adjustment.created"
        assert entry.actor == body["created_by"]
        assert entry.resource_type == "settlement_adjustment"
    # platform_admin may too; an integer amount is accepted, the answer is a string
    resp = adjust(api, api.admin_token, merchant_id, amount=700)
    assert resp.status_code == 201 and resp.json()["amount_minor"] == "700"
    assert resp.json()["created_by"].startswith("platform_admin:")


def test_idempotent_replay_and_key_reuse(api):
    merchant_id, _ = api.merchant()
    finance = operator(api, "finance")
    first = adjust(api, finance, merchant_id, idem="adj-1")
    again = adjust(api, finance, merchant_id, idem="adj-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(api, SettlementAdjustment) == 1
    assert count(api, AuditLogEntry,
                 AuditLogEntry.resource_type == "settlement_adjustment") == 1
    other = adjust(api, finance, merchant_id, amount="2501", idem="adj-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    keyless = api.client.post(f"/api/v1/merchants/{merchant_id}/adjustments",
                              headers=bearer(finance),
                              json={"amount_minor": "1", "currency": "USD", "reason": "x"})
    assert keyless.status_code == 201, keyless.text  # optional (api.md): not deduplicated
    assert count(api, SettlementAdjustment) == 2


def test_merchants_and_agents_cannot_create(api):
    parent = agent(api, "A")
    merchant_id, key = api.merchant(agent_id=parent)
    _, agent_key = key_for(api, agent_id=parent)
    for credential in (key, agent_key):
        resp = adjust(api, credential, merchant_id)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "forbidden"
    assert count(api, SettlementAdjustment) == 0
    assert adjust(api, api.admin_token, "mer_missing").status_code == 404


def test_reads_follow_the_tenant(api):
    parent = agent(api, "A")
    mine, key = api.merchant("Mine", agent_id=parent)
    other, other_key = api.merchant("Other")
    _, agent_key = key_for(api, agent_id=parent)
    finance = operator(api, "finance")
    ids = [adjust(api, finance, mine, amount=str(n)).json()["id"] for n in (1, -2, 3)]
    adjust(api, finance, other)
    resp = listed(api, key, mine)
    assert resp.status_code == 200, resp.text
    assert [a["id"] for a in resp.json()["data"]] == ids[::-1]  # newest first
    assert resp.json()["has_more"] is False
    page = listed(api, key, mine, "?limit=2").json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    rest = listed(api, key, mine, f"?limit=2&starting_after={page['data'][-1]['id']}").json()
    assert [a["id"] for a in rest["data"]] == ids[:1] and rest["has_more"] is False
    # another tenant's merchant, or one that does not exist: 404 either way
    for credential, merchant_id in ((key, other), (other_key, mine), (agent_key, other),
                                    (key, "mer_missing")):
        resp = listed(api, credential, merchant_id)
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "resource_missing"
    assert len(listed(api, agent_key, mine).json()["data"]) == 3  # its subtree's merchant
    assert len(listed(api, finance, other).json()["data"]) == 1


def test_wrong_currency_is_422_and_writes_nothing(api):
    merchant_id, _ = api.merchant(settlement_currency="EUR")
    finance = operator(api, "finance")
    resp = adjust(api, finance, merchant_id, currency="USD")
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "currency_not_settlement_currency"
    assert error["details"] == {"field": "currency", "settlement_currency": "EUR"}
    assert count(api, SettlementAdjustment) == 0
    assert count(api, AuditLogEntry,
                 AuditLogEntry.resource_type == "settlement_adjustment") == 0
    assert adjust(api, finance, merchant_id, currency="EUR").status_code == 201


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"amount_minor": "0", "currency": "USD", "reason": "r"}, "amount_minor", "amount_zero"),
    ({"amount_minor": 0, "currency": "USD", "reason": "r"}, "amount_minor", "amount_zero"),
    ({"amount_minor": "12.50", "currency": "USD", "reason": "r"}, "amount_minor", None),
    ({"amount_minor": 12.5, "currency": "USD", "reason": "r"}, "amount_minor", None),
    ({"amount_minor": "1" * 39, "currency": "USD", "reason": "r"}, "amount_minor", None),
    ({"amount_minor": "100", "currency": "USD"}, "reason", None),
    ({"amount_minor": "100", "currency": "USD", "reason": "   "}, "reason", None),
    ({"amount_minor": "100", "currency": "USD", "reason": "r" * 501}, "reason", None),
    ({"amount_minor": "100", "currency": "USD", "reason": "a\x00b"}, "reason", "invalid_reason"),
    ({"amount_minor": "100", "currency": "XXQ", "reason": "r"}, "currency", None),
])
def test_bad_input_is_422(api, body, field, code):
    merchant_id, _ = api.merchant()
    resp = adjust(api, operator(api, "finance"), merchant_id, body=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["details"]["field"] == field
    if code:
        assert error["code"] == code
    assert count(api, SettlementAdjustment) == 0


def test_the_database_refuses_zero_and_empty_reason(api):
    merchant_id, _ = api.merchant()
    for amount, reason in ((0, "r"), (5, "")):
        with Session(api.engine) as s, pytest.raises(IntegrityError):
            s.add(SettlementAdjustment(id=f"adj_{uuid.uuid4().hex}", merchant_id=merchant_id,
                                       amount_minor=amount, currency="USD", reason=reason,
                                       created_by="test"))
            s.commit()
