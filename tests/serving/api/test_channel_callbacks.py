"""Channel callbacks on SQLite and Postgres: signed by the channel's callback_secret; forged or
stale requests change nothing; repeats are idempotent; the simulator calls us like a real PSP.

`apply_channel_outcome` (serving/services/payments.py) belongs to the payments work. Until it
lands these tests stand in a stub with the agreed signature; once it exists, they run against
the real function unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving import signing
from serving.channel_simulator import deliver_pending_callbacks, ensure_callback_secrets
from serving.services import payments as payment_service
from serving.services.state_machine import move
from tests.serving.helpers import make_api
from tests.serving.webhook_helpers import NOW
from warehouse.ids import new_id
from warehouse.ledger import Leg, channel_receivable, merchant_payable, post_transaction
from warehouse.models import (
    Channel,
    LedgerEntry,
    OutboxEvent,
    Payment,
    PaymentEvent,
    SimChannelOperation,
)

CHANNEL = "ch_bank_sim"


def _stub_apply_channel_outcome(session, *, payment, approved, failure_code, now):
    """The agreed contract: pending_callback -> success (ledger legs) | failed; an outbox event;
    409 illegal_transition from any other status (raised by the state machine)."""
    move(session, payment, "success" if approved else "failed", at=now, reason="channel callback")
    if approved:
        payment.captured_at = now
        post_transaction(session, kind="capture", merchant_id=payment.merchant_id, at=now,
                         payment_id=payment.id, legs=[
                             Leg(channel_receivable(payment.channel_id), payment.currency,
                                 payment.amount_minor),
                             Leg(merchant_payable(payment.merchant_id), payment.currency,
                                 -payment.amount_minor)])
    else:
        payment.failure_code = failure_code
    session.add(OutboxEvent(id=new_id("event"), aggregate_id=payment.id, created_at=now,
                            event_type=f"payment.{'succeeded' if approved else 'failed'}",
                            payload=payment_service.payment_out(payment)))


@pytest.fixture
def api(oltp_url, make_settings, monkeypatch):
    if not hasattr(payment_service, "apply_channel_outcome"):
        monkeypatch.setattr(payment_service, "apply_channel_outcome",
                            _stub_apply_channel_outcome, raising=False)
    api = make_api(make_settings(database_url=oltp_url))
    with Session(api.engine) as session:  # as if bootstrapped before channels had secrets
        session.execute(update(Channel).where(Channel.id == CHANNEL).values(callback_secret=""))
        assert ensure_callback_secrets(session) == 1
        session.commit()
        assert ensure_callback_secrets(session) == 0
    return api


def secret_of(api, channel_id=CHANNEL) -> str:
    with Session(api.engine) as session:
        return session.get(Channel, channel_id).callback_secret


def pending_payment(api, *, channel_id=CHANNEL, amount=2500) -> tuple[str, str]:
    merchant_id, _ = api.merchant(f"M-{uuid.uuid4().hex[:6]}")
    reference = f"bt_{uuid.uuid4().hex[:16]}"
    with Session(api.engine) as session:
        payment = Payment(id=new_id("payment"), merchant_id=merchant_id,
                          merchant_reference="order-cb", amount_minor=amount, currency="USD",
                          status="pending_callback", payment_method_type="bank_transfer",
                          channel_id=channel_id, channel_reference=reference,
                          risk_decision="approve", refunded_minor=0, created_at=NOW)
        session.add(payment)
        session.commit()
        return payment.id, reference


def post(api, body, *, secret=None, t=None, header=None, channel_id=CHANNEL, sign_body=None,
         client=None, idempotency_key=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if header is None and secret is not None:
        header = signing.sign(secret, sign_body if sign_body is not None else raw,
                              time.time() if t is None else t)
    if header is not None:
        headers[signing.SIGNATURE_HEADER] = header
    return (client or api.client).post(f"/api/v1/channels/{channel_id}/callbacks", content=raw,
                                       headers=headers)


def state(api, payment_id) -> tuple:
    with Session(api.engine) as session:
        payment = session.get(Payment, payment_id)
        legs = session.scalar(select(func.count()).select_from(LedgerEntry)
                              .where(LedgerEntry.payment_id == payment_id))
        events = session.scalars(select(OutboxEvent.event_type)
                                 .where(OutboxEvent.aggregate_id == payment_id)).all()
        return payment.status, payment.failure_code, legs, sorted(events)


def test_signed_success_callback_captures_the_payment(api):
    payment_id, ref = pending_payment(api)
    resp = post(api, {"channel_reference": ref, "status": "succeeded", "failure_code": None},
                secret=secret_of(api))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "applied", "payment_id": payment_id,
                           "payment_status": "success"}
    assert state(api, payment_id) == ("success", None, 2, ["payment.succeeded"])
    with Session(api.engine) as session:
        assert session.scalar(select(PaymentEvent.to_status)
                              .where(PaymentEvent.payment_id == payment_id)) == "success"


def test_signed_failure_callback_fails_the_payment_without_ledger(api):
    payment_id, ref = pending_payment(api)
    resp = post(api, {"channel_reference": ref, "status": "failed",
                      "failure_code": "account_closed"}, secret=secret_of(api))
    assert resp.status_code == 200 and resp.json()["payment_status"] == "failed"
    assert state(api, payment_id) == ("failed", "account_closed", 0, ["payment.failed"])


def test_duplicate_callback_is_already_applied_and_writes_nothing(api):
    payment_id, ref = pending_payment(api)
    body = {"channel_reference": ref, "status": "succeeded"}
    assert post(api, body, secret=secret_of(api)).json()["status"] == "applied"
    again = post(api, body, secret=secret_of(api))
    assert again.status_code == 200
    assert again.json() == {"status": "already_applied", "payment_id": payment_id,
                            "payment_status": "success"}
    assert state(api, payment_id) == ("success", None, 2, ["payment.succeeded"])


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api):
    """api.md: every POST that moves money accepts Idempotency-Key; the same key and body replay
    the first response (status and body) with Idempotent-Replayed: true, the same key with
    another body is 409 idempotency_key_reused - and nothing is applied twice."""
    payment_id, ref = pending_payment(api)
    body = {"channel_reference": ref, "status": "succeeded"}
    first = post(api, body, secret=secret_of(api), idempotency_key="cb-1")
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    assert first.json() == {"status": "applied", "payment_id": payment_id,
                            "payment_status": "success"}
    again = post(api, body, secret=secret_of(api), idempotency_key="cb-1")
    assert (again.status_code, again.json()) == (200, first.json())  # not already_applied
    assert again.headers["Idempotent-Replayed"] == "true"
    other = post(api, {"channel_reference": ref, "status": "failed", "failure_code": "x"},
                 secret=secret_of(api), idempotency_key="cb-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert state(api, payment_id) == ("success", None, 2, ["payment.succeeded"])
    # a fresh key is a new request: the repeat is already_applied, as without a key
    fresh = post(api, body, secret=secret_of(api), idempotency_key="cb-2")
    assert fresh.json()["status"] == "already_applied"
    # an error answer is kept and replayed too; a forged request never reaches the key
    missing = {"channel_reference": "bt_nothing", "status": "succeeded"}
    assert post(api, missing, secret=secret_of(api), idempotency_key="cb-3").status_code == 404
    replayed = post(api, missing, secret=secret_of(api), idempotency_key="cb-3")
    assert replayed.status_code == 404 and replayed.headers["Idempotent-Replayed"] == "true"
    forged = post(api, body, secret="not-the-secret", idempotency_key="cb-4")
    assert forged.status_code == 401
    assert post(api, body, secret=secret_of(api), idempotency_key="cb-4").json()["status"] == (
        "already_applied")


def test_conflicting_callback_after_a_final_outcome_is_409(api):
    payment_id, ref = pending_payment(api)
    post(api, {"channel_reference": ref, "status": "failed", "failure_code": "x"},
         secret=secret_of(api))
    resp = post(api, {"channel_reference": ref, "status": "succeeded"}, secret=secret_of(api))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "conflicting_outcome"
    assert state(api, payment_id) == ("failed", "x", 0, ["payment.failed"])


def test_callback_for_a_payment_that_is_not_pending_is_illegal(api):
    payment_id, ref = pending_payment(api)
    with Session(api.engine) as session:
        session.execute(update(Payment).where(Payment.id == payment_id)
                        .values(status="auth_required"))
        session.commit()
    resp = post(api, {"channel_reference": ref, "status": "succeeded"}, secret=secret_of(api))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "illegal_transition"
    assert state(api, payment_id) == ("auth_required", None, 0, [])


@pytest.mark.parametrize("case", ["wrong_secret", "other_channel_secret", "tampered", "no_header",
                                  "malformed", "stale", "future", "unknown_channel"])
def test_forged_or_stale_callbacks_are_401_and_change_nothing(api, case, caplog):
    payment_id, ref = pending_payment(api)
    body = {"channel_reference": ref, "status": "succeeded"}
    secret = secret_of(api)
    kwargs = {
        "wrong_secret": {"secret": "chsec_guessed"},
        "other_channel_secret": {"secret": secret_of(api, "ch_card_sim")},
        "tampered": {"secret": secret,
                     "sign_body": json.dumps({"channel_reference": ref, "status": "failed"}).encode()},
        "no_header": {},
        "malformed": {"header": "v1=deadbeef"},
        "stale": {"secret": secret, "t": time.time() - 330},
        "future": {"secret": secret, "t": time.time() + 330},
        "unknown_channel": {"secret": secret, "channel_id": "ch_nope"},
    }[case]
    with caplog.at_level(logging.WARNING, logger="clearhouse.channels.callbacks"):
        resp = post(api, body, **kwargs)
    assert resp.status_code == 401, resp.text
    expected = "stale_signature" if case in ("stale", "future") else "invalid_signature"
    assert resp.json()["error"]["code"] == expected
    assert state(api, payment_id) == ("pending_callback", None, 0, [])
    (record,) = [r for r in caplog.records if r.name == "clearhouse.channels.callbacks"]
    line = record.getMessage()
    assert kwargs.get("channel_id", CHANNEL) in line and expected in line
    for secret_value in (secret, secret_of(api, "ch_card_sim"), "chsec_guessed"):
        assert secret_value not in line
    assert "v1=" not in line and ref not in line


def test_channel_without_a_secret_accepts_nothing(api):
    payment_id, ref = pending_payment(api)
    with Session(api.engine) as session:
        session.get(Channel, CHANNEL).callback_secret = ""
        session.commit()
    resp = post(api, {"channel_reference": ref, "status": "succeeded"},
                header=f"t={int(time.time())},v1={'0' * 64}")
    assert resp.status_code == 401
    assert state(api, payment_id)[0] == "pending_callback"


def test_authenticated_but_unknown_reference_or_bad_body(api):
    secret = secret_of(api)
    missing = post(api, {"channel_reference": "bt_unknown", "status": "succeeded"}, secret=secret)
    assert missing.status_code == 404
    bad = post(api, {"channel_reference": "bt_x", "status": "maybe"}, secret=secret)
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "status"
    not_json = post(api, b"{not json", secret=secret)
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_json"


def test_concurrent_duplicate_callbacks_apply_once(api):
    payment_id, ref = pending_payment(api)
    body = {"channel_reference": ref, "status": "succeeded"}
    secret = secret_of(api)
    results: list[int | str] = []

    def call():
        with TestClient(api.client.app) as client:
            resp = post(api, body, secret=secret, client=client)
            results.append(resp.json().get("status", resp.status_code))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["already_applied"] * 3 + ["applied"]
    assert state(api, payment_id) == ("success", None, 2, ["payment.succeeded"])


def test_simulator_sends_signed_callbacks_through_http_and_marks_them_delivered(api):
    ok_id, ok_ref = pending_payment(api)
    ko_id, ko_ref = pending_payment(api, channel_id="ch_wechat_sim")
    with Session(api.engine) as session:
        session.add_all([
            SimChannelOperation(channel_reference=ok_ref, channel_id=CHANNEL,
                                outcome="succeeded", created_at=NOW),
            SimChannelOperation(channel_reference=ko_ref, channel_id="ch_wechat_sim",
                                outcome="failed", failure_code="user_cancelled", created_at=NOW)])
        session.commit()
    report = deliver_pending_callbacks(api.engine, api.client, time_now())
    assert report == {"delivered": 2, "failed": 0, "skipped": 0}
    assert state(api, ok_id)[:3] == ("success", None, 2)
    assert state(api, ko_id)[:3] == ("failed", "user_cancelled", 0)
    assert deliver_pending_callbacks(api.engine, api.client, time_now())["delivered"] == 0

    # The channel retries one (its delivery record was lost): answered 200, nothing doubles.
    with Session(api.engine) as session:
        session.execute(update(SimChannelOperation).values(delivered_at=None)
                        .where(SimChannelOperation.channel_reference == ok_ref))
        session.commit()
    assert deliver_pending_callbacks(api.engine, api.client, time_now())["delivered"] == 1
    assert state(api, ok_id)[:3] == ("success", None, 2)


def test_simulator_retries_what_the_api_refused(api):
    _, ref = pending_payment(api)
    with Session(api.engine) as session:
        session.add(SimChannelOperation(channel_reference=ref, channel_id=CHANNEL,
                                        outcome="succeeded", created_at=NOW))
        session.commit()
    stale = time_now().timestamp() - 3600  # signed an hour ago: the API refuses it
    from datetime import UTC, datetime

    report = deliver_pending_callbacks(api.engine, api.client, datetime.fromtimestamp(stale, UTC))
    assert report == {"delivered": 0, "failed": 1, "skipped": 0}
    assert deliver_pending_callbacks(api.engine, api.client, time_now())["delivered"] == 1


def time_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_pending_card_is_confirmed_by_the_simulator_and_the_merchant_hears_of_it(api):
    """Through the real payment flow: a pending test card, the channel's signed callback, then
    the merchant's webhooks (payment.pending, then payment.succeeded)."""
    from serving import webhooks
    from tests.serving.webhook_helpers import Receiver, configure_webhook

    merchant_id, key = api.merchant("Async")
    configure_webhook(api.engine, merchant_id)
    created = api.pay(key, method={"type": "card", "number": "4000000000003220"})
    assert created.status_code == 201 and created.json()["status"] == "pending_callback"
    payment_id = created.json()["id"]
    assert deliver_pending_callbacks(api.engine, api.client, time_now())["delivered"] == 1
    assert state(api, payment_id)[:3] == ("success", None, 2)

    now = time_now()
    receiver = Receiver(now=now)
    with receiver.client() as client:
        assert webhooks.run_once(api.engine, client, now)["delivered"] == 2
    assert [call["event"]["type"] for call in receiver.calls] == ["payment.pending",
                                                                  "payment.succeeded"]
    assert receiver.calls[1]["event"]["data"]["status"] == "success"


def _metric(api, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_callback_outcome_is_counted_once_in_the_status_changes_metric(api):
    """clearhouse_payments_total counts a payment at its create (here: pending_callback); the
    outcome a callback brings later is counted in clearhouse_payment_status_changes_total,
    once: a duplicate callback changes nothing and counts nothing."""
    name = "clearhouse_payment_status_changes_total"
    before = {s: _metric(api, name, channel=CHANNEL, status=s) for s in ("success", "failed")}
    paid, paid_ref = pending_payment(api)
    declined, declined_ref = pending_payment(api)
    for _ in range(2):
        post(api, {"channel_reference": paid_ref, "status": "succeeded"}, secret=secret_of(api))
    post(api, {"channel_reference": declined_ref, "status": "failed", "failure_code": "x"},
         secret=secret_of(api))
    post(api, {"channel_reference": declined_ref, "status": "succeeded"},  # 409, no change
         secret=secret_of(api))
    after = {s: _metric(api, name, channel=CHANNEL, status=s) for s in ("success", "failed")}
    assert {s: after[s] - before[s] for s in after} == {"success": 1.0, "failed": 1.0}
