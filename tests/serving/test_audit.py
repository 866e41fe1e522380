"""The hash-chained audit log on SQLite and Postgres: every admin write records an entry in the
same transaction, no secrets, `verify` (and `clearhouse audit verify`) catch an edited, a
deleted and a reordered entry, and concurrent appends never fork the chain."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from clearhouse.cli import main as cli
from tests.serving.admin_helpers import admin, agent, bearer, operator
from tests.serving.helpers import make_api
from warehouse import audit
from warehouse.models import Agent, AuditLogEntry


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def entries(api) -> list[AuditLogEntry]:
    with Session(api.engine) as s:
        return list(s.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)))


def verify(api, **kwargs) -> audit.VerifyResult:
    with Session(api.engine) as s:
        return audit.verify(s, **kwargs)


def seed(api, n: int = 4) -> list[AuditLogEntry]:
    for i in range(n):
        agent(api, f"agent {i}")
    rows = entries(api)
    assert len(rows) == n
    return rows


def test_chain_links_from_genesis_and_hashes_the_canonical_entry(api):
    rows = seed(api, 3)
    assert rows[0].prev_hash == "0" * 64
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.prev_hash == prev.hash
    first = rows[0]
    canonical = json.dumps({"at": first.at.astimezone(UTC).isoformat(timespec="microseconds")
                            .replace("+00:00", "Z"), "actor": first.actor,
                            "action": first.action, "resource_type": first.resource_type,
                            "resource_id": first.resource_id,
                            "details": json.loads(first.details)},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first.hash == hashlib.sha256(("0" * 64 + canonical).encode()).hexdigest()
    result = verify(api)
    assert (result.ok, result.entries, result.first_bad_id, result.head) == (
        True, 3, None, rows[-1].hash)


def test_every_admin_write_is_recorded_without_secrets(api):
    client = api.client
    secrets_seen = []
    a = agent(api, "A")
    b = agent(api, "B")
    merchant = client.post("/api/v1/merchants", headers=admin(api),
                           json={"name": "Shop", "agent_id": a}).json()
    secrets_seen.append(merchant["api_key"])
    mid = merchant["id"]
    client.patch(f"/api/v1/merchants/{mid}", headers=admin(api), json={"kyc_tier": 2})
    secrets_seen.append(client.post(f"/api/v1/merchants/{mid}/webhook-secret",
                                    headers=admin(api)).json()["webhook_secret"])
    client.post(f"/api/v1/agents/{b}/parent", headers=admin(api),
                json={"parent_id": a, "valid_from": "2022-01-01T00:00:00Z"})
    channel = client.post("/api/v1/channels", headers=admin(api), json={
        "name": "acq", "type": "card", "currencies": [{"currency": "USD"}],
        "price": {"rate_bps": 100}}).json()
    secrets_seen.append(channel["callback_secret"])
    client.patch(f"/api/v1/channels/{channel['id']}", headers=admin(api), json={"priority": 7})
    client.post("/api/v1/prices", headers=admin(api), json={
        "subject_type": "agent", "subject_id": a, "currency": "USD", "rate_bps": 100})
    client.post(f"/api/v1/agents/{a}/commission-models", headers=admin(api),
                json={"currency": "USD", "model": "markup"})
    user = client.post("/api/v1/users", headers=admin(api),
                       json={"email": "f@example.com", "role": "finance"}).json()
    secrets_seen.append(user["token"])
    client.post(f"/api/v1/users/{user['id']}/disable", headers=admin(api))
    key = client.post("/api/v1/api-keys", headers=admin(api), json={"merchant_id": mid}).json()
    secrets_seen.append(key["key"])
    rotated = client.post(f"/api/v1/api-keys/{key['id']}/rotate", headers=admin(api)).json()
    secrets_seen.append(rotated["key"])
    client.delete(f"/api/v1/api-keys/{rotated['id']}", headers=admin(api))
    # a no-op write records nothing
    client.patch(f"/api/v1/merchants/{mid}", headers=admin(api), json={"kyc_tier": 2})

    rows = entries(api)
    assert [r.action for r in rows] == [
        "agent.created", "agent.created", "merchant.created", "merchant.updated",
        "merchant.webhook_secret_rotated", "agent.reparented", "channel.created",
        "price.created", "channel.updated", "price.created", "commission_model.created",
        "user.created", "user.disabled", "api_key.created", "api_key.rotated",
        "api_key.revoked"]
    admin_user = {r.actor for r in rows}
    assert len(admin_user) == 1 and next(iter(admin_user)).startswith("platform_admin:usr_")
    updated = next(r for r in rows if r.action == "merchant.updated")
    assert json.loads(updated.details) == {"changes": {"kyc_tier": {"from": 1, "to": 2}}}
    dump = " ".join(r.details for r in rows)
    for secret in secrets_seen:
        assert secret not in dump
    assert verify(api).ok
    listed = client.get("/api/v1/audit-log?limit=5&resource_type=merchant",
                        headers=bearer(operator(api, "finance"))).json()
    assert [e["action"] for e in listed["data"]] == [
        "merchant.webhook_secret_rotated", "merchant.updated", "merchant.created"]
    assert listed["has_more"] is False and listed["data"][0]["id"].startswith("aud_")


def test_audit_entry_commits_and_rolls_back_with_the_change(api):
    before = len(entries(api))
    refused = api.client.post(f"/api/v1/agents/{agent(api, 'A')}/parent", headers=admin(api),
                              json={"parent_id": None, "valid_from": "2000-01-01T00:00:00Z"})
    assert refused.status_code == 422
    assert len(entries(api)) == before + 1  # only the agent's creation
    with Session(api.engine) as s:
        s.add(Agent(id="agt_rolled_back", name="x"))
        audit.record(s, actor="test", action="agent.created", resource_type="agent",
                     resource_id="agt_rolled_back", details={})
        s.rollback()
    assert len(entries(api)) == before + 1 and verify(api).ok


def test_audit_log_api_roles_and_paging(api):
    seed(api, 3)
    finance = bearer(operator(api, "finance"))  # records user.created
    first = api.client.get("/api/v1/audit-log?limit=2", headers=finance).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = api.client.get(f"/api/v1/audit-log?limit=2&starting_after={first['data'][1]['id']}",
                          headers=finance).json()
    assert len(rest["data"]) == 2 and rest["has_more"] is False
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert len(set(ids)) == 4
    _, key = api.merchant()
    assert api.client.get("/api/v1/audit-log", headers=bearer(key)).status_code == 403
    assert api.client.get("/api/v1/audit-log/verify", headers=finance).json()["ok"] is True


def test_verify_detects_an_edited_details(api):
    rows = seed(api)
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = :d WHERE id = :id"),
                     {"d": json.dumps({"name": "someone else"}, separators=(",", ":")),
                      "id": rows[1].id})
    result = verify(api)
    assert not result.ok and result.first_bad_id == rows[1].id and "edited" in result.reason
    resp = api.client.get("/api/v1/audit-log/verify", headers=admin(api)).json()
    assert resp["ok"] is False and resp["first_bad_id"] == f"aud_{rows[1].id}"


def test_verify_detects_an_edited_actor_and_whitespace(api):
    rows = seed(api)
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'finance:usr_x' WHERE id = :id"),
                     {"id": rows[2].id})
    assert verify(api).first_bad_id == rows[2].id
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = :a, details = :d WHERE id = :id"),
                     {"a": rows[2].actor, "d": rows[2].details.replace(":", ": "),
                      "id": rows[2].id})
    result = verify(api)
    assert not result.ok and result.first_bad_id == rows[2].id


def test_verify_detects_a_deleted_entry(api):
    rows = seed(api)
    with api.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": rows[1].id})
    result = verify(api)
    assert not result.ok and result.first_bad_id == rows[2].id
    assert "deleted" in result.reason


def test_verify_detects_a_reordered_chain(api):
    rows = seed(api)
    a, b = rows[1].id, rows[2].id
    with api.engine.begin() as conn:  # swap the positions of two entries
        conn.execute(text("UPDATE audit_log SET id = :tmp WHERE id = :a"), {"tmp": -1, "a": a})
        conn.execute(text("UPDATE audit_log SET id = :a WHERE id = :b"), {"a": a, "b": b})
        conn.execute(text("UPDATE audit_log SET id = :b WHERE id = :tmp"), {"b": b, "tmp": -1})
    result = verify(api)
    assert not result.ok and result.first_bad_id == a and "reordered" in result.reason


def test_verify_detects_a_truncated_tail_against_an_anchored_head(api):
    rows = seed(api)
    anchored = verify(api).head
    with api.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": rows[-1].id})
    assert verify(api).ok  # a shorter chain is still a chain...
    result = verify(api, expected_head=anchored)
    assert not result.ok and "truncated" in result.reason  # ...but not the anchored one


def test_verify_accepts_an_anchored_head_followed_by_new_entries(api):
    rows = seed(api)
    anchored = rows[1].hash  # kept elsewhere when the chain had two entries
    assert verify(api, expected_head=anchored).ok  # the two appended since are no tampering
    assert verify(api, expected_head=rows[-1].hash).ok
    with api.engine.begin() as conn:  # rewritten from the anchored entry on
        conn.execute(text("UPDATE audit_log SET hash = :h WHERE id = :id"),
                     {"h": "0" * 64, "id": rows[1].id})
    assert not verify(api, expected_head=anchored).ok


def test_cli_audit_verify(api, capsys):
    rows = seed(api)
    cli(["audit", "verify"])
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": True, "entries": 4, "head": rows[-1].hash}
    with pytest.raises(SystemExit) as exc:
        cli(["audit", "verify", "--head", "f" * 64])
    assert exc.value.code == 1
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = '{}' WHERE id = :id"), {"id": rows[0].id})
    with pytest.raises(SystemExit) as exc:
        cli(["audit", "verify"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "TAMPERED" in err and f"entry {rows[0].id}" in err


def test_concurrent_appends_never_fork_the_chain(api):
    merchants = [api.merchant(f"m{i}")[0] for i in range(10)]  # (the helper writes no entry)
    statuses = []
    barrier = threading.Barrier(10)

    def change(merchant_id):  # independent rows: only the audit chain is shared
        barrier.wait()
        resp = api.client.patch(f"/api/v1/merchants/{merchant_id}", headers=admin(api),
                                json={"kyc_tier": 3})
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=change, args=(m,)) for m in merchants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    rows = entries(api)
    assert len(rows) == 10 and len({r.prev_hash for r in rows}) == 10
    result = verify(api)
    assert result.ok and result.entries == 10


def test_an_append_on_a_stale_head_fails_cleanly(api, monkeypatch):
    seed(api, 2)
    monkeypatch.setattr(audit, "head", lambda session: "0" * 64)  # as if it read a stale head
    resp = api.client.post("/api/v1/agents", headers=admin(api), json={"name": "late"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "concurrent_update"
    with Session(api.engine) as s:  # nothing half-written: neither the agent nor an entry
        assert s.scalar(select(func.count()).select_from(Agent).where(Agent.name == "late")) == 0
    monkeypatch.undo()
    assert len(entries(api)) == 2 and verify(api).ok


def test_record_refuses_secrets(api):
    with Session(api.engine) as s:
        for details in ({"api_key": "sk_test_x"}, {"nested": {"webhook_secret": "whsec_x"}},
                        {"list": [{"token": "t"}]}):
            with pytest.raises(ValueError, match="secrets"):
                audit.record(s, actor="t", action="x", resource_type="t", resource_id="1",
                             details=details)
        entry = audit.record(s, actor="t", action="x", resource_type="t", resource_id="1",
                             details={"when": datetime(2026, 1, 2, tzinfo=UTC)})
        assert json.loads(entry.details) == {"when": "2026-01-02T00:00:00.000000Z"}
