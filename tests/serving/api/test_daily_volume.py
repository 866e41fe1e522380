"""On Postgres the KYC daily limit reads merchant_daily_volume, kept by a trigger on payments
(migration 0006). It must always equal what summing the payments gives, whatever happens to them."""

from __future__ import annotations

import contextlib
import importlib
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from serving import risk
from serving.services.payments import apply_channel_outcome
from tests.serving.helpers import make_api
from warehouse.models import Payment

SUMMED = f"""
SELECT merchant_id, (created_at AT TIME ZONE 'UTC')::date AS day, currency, sum(amount_minor)
  FROM payments WHERE status IN ({", ".join(f"'{s}'" for s in risk.CAPTURING)})
 GROUP BY 1, 2, 3
"""
COUNTED = ("SELECT merchant_id, day, currency, sum(amount_minor) FROM merchant_daily_volume "
           "GROUP BY 1, 2, 3")


@pytest.fixture
def api(pg_url, make_settings):
    from warehouse.migrate import upgrade

    upgrade(pg_url)
    return make_api(make_settings(database_url=pg_url))


def _volumes(engine, sql: str) -> dict:
    with engine.connect() as conn:
        return {(m, d, c): int(v) for m, d, c, v in conn.execute(text(sql)) if v != 0}


def test_the_trigger_counts_what_the_rule_counts():
    source = importlib.import_module("warehouse.migrations.versions.0006_merchant_daily_volume")
    assert tuple(re.findall(r"'(\w+)'", source.CAPTURING)) == risk.CAPTURING


@pytest.mark.parametrize("path", ["fast_event_loop", "fast_thread_pool", "general"])
def test_daily_volume_follows_every_payment(api, path):
    api.client.app.state.settings.payments_fast_path = path != "general"
    # Inside `with`, the app's lifespan opens the async pool and the fast path runs on the loop.
    with api.client if path == "fast_event_loop" else contextlib.nullcontext():
        _pay_refund_settle_and_check(api)


def _pay_refund_settle_and_check(api):
    merchant_id, key = api.merchant(kyc_tier=3)
    other_id, other_key = api.merchant("Other", kyc_tier=3)
    approved = api.pay(key, amount="1000").json()
    api.pay(key, amount="2500", currency="EUR")
    api.pay(key, amount="777", method={"type": "card", "number": "4000000000000002"})  # declined
    held = api.pay(key, amount="300", confirm=False).json()  # pending_confirm: not counted
    pending_ok = api.pay(key, amount="700",
                         method={"type": "card", "number": "4000000000003220"}).json()
    pending_bad = api.pay(key, amount="900",
                          method={"type": "card", "number": "4000000000000341"}).json()
    yesterday = api.pay(other_key, amount="4200",
                        headers={"Clearhouse-Test-Clock": "2026-01-15T23:59:59Z"}).json()
    assert yesterday["status"] == "success"
    assert api.refund(key, approved["id"], amount="400").status_code == 201
    assert api.refund(key, approved["id"]).status_code == 201  # fully refunded: still counted
    with Session(api.engine) as s:
        for body, ok in ((pending_ok, True), (pending_bad, False)):
            apply_channel_outcome(s, payment=s.get(Payment, body["id"]), approved=ok,
                                  failure_code=None if ok else "card_declined",
                                  now=datetime.now(UTC))
        s.commit()
    cancel = api.client.post(f"/api/v1/payments/{held['id']}/cancel",
                             headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "c1"})
    assert cancel.json()["status"] == "cancelled"

    counted = _volumes(api.engine, COUNTED)
    assert counted == _volumes(api.engine, SUMMED)
    today = datetime.now(UTC).date()
    assert counted[(merchant_id, today, "USD")] == 1000 + 700
    assert counted[(merchant_id, today, "EUR")] == 2500
    assert counted[(other_id, datetime(2026, 1, 15).date(), "USD")] == 4200
    # ... and the risk rule reads it: what it sees is what the payments sum to.
    with Session(api.engine) as s:
        row = risk.locked_facts(s, merchant_id, "USD", [], {}, datetime.now(UTC))
        assert risk.facts_from(row, {}).used_today == {"USD": 1700, "EUR": 2500}
