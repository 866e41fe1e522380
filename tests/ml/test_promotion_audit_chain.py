"""Issue 7 item 4: "promotion and rollback are one command (`clearhouse ml promote|rollback`)
and are audited". The platform's audit is the hash-chained `audit_log` ("Every administrative
write appends to audit_log", README Administration; `clearhouse audit verify`, GET /audit-log).
Changing the champion changes which live payments are blocked, so a promotion, a refused
promotion and a rollback must be in that chain, not only in a plain, editable audit.jsonl."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearhouse.cli import main
from ml.registry import Registry
from tests.serving.fraud_models import Constant, card
from warehouse.audit import verify
from warehouse.connections import oltp_engine
from warehouse.migrate import upgrade
from warehouse.models import AuditLogEntry


def test_promote_and_rollback_are_in_the_hash_chained_audit_log(make_settings, capsys):
    settings = make_settings()
    upgrade(settings.oltp_url)
    registry = Registry(settings, family="payments")
    first = registry.register(Constant(0.1), card(0.5))
    second = registry.register(Constant(0.2), card(0.6))

    main(["ml", "promote", first])
    main(["ml", "promote", second, "--force"])
    main(["ml", "rollback"])
    outcomes = [json.loads(line)["outcome"] for line in capsys.readouterr().out.splitlines()]
    assert outcomes == ["promoted", "promoted", "rolled_back"]

    engine = oltp_engine(settings)
    with Session(engine) as session:
        entries = session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)).all()
        actions = [(e.action, e.resource_id) for e in entries]
        assert verify(session).ok
    # Expected: three entries naming the model versions; actual: none (audit.jsonl only).
    assert len(actions) == 3, actions
    assert all(first in rid or second in rid for _, rid in actions), actions
