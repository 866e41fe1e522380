"""The Postgres fast path writes exactly what the general (ORM) path writes, for every outcome."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ml.registry import Registry
from serving import fraud, risk
from serving.routing import HEALTH
from serving.services import fast_payments
from tests.serving.fraud_models import ScoreByHistory, card
from tests.serving.helpers import make_api, random_card
from warehouse.models import (
    IdempotencyKey,
    LedgerEntry,
    OutboxEvent,
    Payment,
    PaymentEvent,
    RiskListEntry,
    SimChannelOperation,
)

VOLATILE = {"id", "created_at", "captured_at", "channel_reference", "merchant_reference"}


@pytest.fixture(params=["event_loop", "thread_pool"])
def api(request, pg_url, make_settings):
    """The fast path runs on the event loop over the async pool when the app's lifespan runs
    (uvicorn; a TestClient inside `with`), else in the thread pool: both are checked."""
    from warehouse.migrate import upgrade

    upgrade(pg_url)
    api = make_api(make_settings(database_url=pg_url))
    if request.param == "thread_pool":
        yield api
        return
    with api.client:
        assert api.client.app.state.pg_pool is not None
        yield api


@pytest.fixture
def fast_calls(monkeypatch):
    calls = []
    real, real_async = fast_payments.create, fast_payments.create_async

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result is not None)
        return result

    async def spy_async(*args, **kwargs):
        result = await real_async(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(fast_payments, "create", spy)
    monkeypatch.setattr(fast_payments, "create_async", spy_async)
    return calls


def _stable(body: dict) -> dict:
    out = {k: v for k, v in body.items() if k not in VOLATILE}
    if out.get("routing"):
        out["routing"] = {k: v for k, v in out["routing"].items()}
    return out


def _written(api, payment_id: str | None, key: str) -> dict:
    with Session(api.engine) as s:
        stored = s.get(IdempotencyKey, (s.scalar(select(IdempotencyKey.merchant_id).where(
            IdempotencyKey.key == key)), key))
        facts = {"key": (stored.response_status, _stable(json.loads(stored.response_body)))}
        if payment_id is None:
            return facts
        p = s.get(Payment, payment_id)
        facts["payment"] = {c: getattr(p, c) for c in (
            "status", "amount_minor", "currency", "payment_method_type", "channel_id",
            "failure_code", "risk_decision", "risk_score", "risk_reasons", "customer_id",
            "customer", "customer_ip", "device_id", "refunded_minor")}
        facts["captured"] = p.captured_at is not None
        facts["events"] = [(e.from_status, e.to_status, e.reason) for e in s.scalars(
            select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id))]
        facts["ledger"] = sorted((leg.kind, leg.account, leg.currency, leg.amount_minor)
                                 for leg in s.scalars(select(LedgerEntry).where(
                                     LedgerEntry.payment_id == payment_id)))
        facts["outbox"] = [(o.event_type, _stable(o.payload)) for o in s.scalars(
            select(OutboxEvent).where(OutboxEvent.aggregate_id == payment_id))]
        facts["sim_ops"] = [(o.channel_id, o.outcome) for o in s.scalars(
            select(SimChannelOperation).where(
                SimChannelOperation.channel_reference == p.channel_reference))]
    return facts


CASES = {
    "approved": dict(method="card"),
    "declined": dict(method={"type": "card", "number": "4000000000000002"}),
    "pending_then_callback": dict(method={"type": "card", "number": "4000000000003220"}),
    "all_channels_time_out": dict(method={"type": "card", "number": "4000000000000119"}),
    "over_single_limit": dict(method="card", amount="60000000"),
    "blocked_customer": dict(method="card", customer={"id": "cus_blocked"}),
    "wechat": dict(method={"type": "wechat_pay"}, currency="CNY"),
    "currency_not_enabled": dict(method="card", currency="KWD"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_writes_what_the_general_path_writes(api, fast_calls, case):
    _, key = api.merchant(kyc_tier=2)
    with Session(api.engine) as s:
        s.add(RiskListEntry(list_type="block", kind="customer", value="cus_blocked",
                            reason="test"))
        s.commit()
    spec = dict(CASES[case])
    results = {}
    for fast in (True, False):
        HEALTH.reset()  # both paths see the same (fresh) channel health
        api.client.app.state.settings.payments_fast_path = fast
        method = spec.get("method")
        if method == "card":
            method = {"type": "card", "number": random_card()}
        idem = uuid.uuid4().hex
        resp = api.pay(key, idem=idem, method=method,
                       **{k: v for k, v in spec.items() if k != "method"})
        body = resp.json()
        payment_id = body.get("id") if resp.status_code < 300 else None
        results[fast] = (resp.status_code, _stable(body), _written(api, payment_id, idem))
        # A retry replays the stored response on either path.
        again = api.pay(key, idem=idem, method=method,
                        **{k: v for k, v in spec.items() if k != "method"})
        assert (again.status_code, again.json()) == (resp.status_code, body)
        assert again.headers.get("Idempotent-Replayed") == "true"
    assert fast_calls and fast_calls[0] is True  # the first request really took the fast path
    assert results[True] == results[False]


def test_with_a_fraud_model_promoted_the_fast_path_scores_as_the_general_path(api, fast_calls,
                                                                             monkeypatch):
    """The live scorer's summary of the payment's history is read on the fast path's own
    connection after its claim: the same scores, decisions and rows as the general path, whose
    scorer reads it through the ORM session, on a history that moves the score (a customer and
    a merchant paying again within the hour, a new device), up to review and reject."""
    registry = Registry(api.settings, family="payments")
    registry.promote(registry.register(ScoreByHistory(), card(0.5)), force=True)
    api.client.app.state.fraud_scorer.recheck_seconds = 0
    try:
        scores = {}
        through_orm = fraud.summary

        def not_on_the_fast_path(*args, **kwargs):
            raise AssertionError("the fast path read the summary through the ORM session")

        for fast in (True, False):
            # On the fast path the summary must come from its own connection's read-ahead.
            monkeypatch.setattr(fraud, "summary", not_on_the_fast_path if fast else through_orm)
            HEALTH.reset()
            api.client.app.state.settings.payments_fast_path = fast
            _, key = api.merchant(kyc_tier=3)
            customer = {"id": f"cus_{fast}", "device_id": "dev_1"}
            got = []
            for n in range(5):
                if n == 3:
                    customer = {**customer, "device_id": "dev_2"}
                idem = uuid.uuid4().hex
                resp = api.pay(key, idem=idem, amount="1000", customer=customer,
                               method={"type": "card", "number": random_card()})
                body = resp.json()
                assert resp.status_code < 300, resp.text
                got.append((body["risk"]["score"], body["risk"]["decision"], body["status"],
                            _written(api, body["id"], idem)["payment"]["risk_reasons"][:1]))
            scores[fast] = got
        assert fast_calls and all(fast_calls[:5])  # the fast path took every payment
        assert scores[True] == scores[False]
        assert [s for s, *_ in scores[True]] == [0, 30, 60, 91, 99]
        assert [d for _, d, *_ in scores[True]] == [
            "approve", "approve", "approve", "reject", "reject"]
    finally:
        risk.set_score_hook(None)
