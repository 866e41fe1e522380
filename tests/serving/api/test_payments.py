"""Payments API on SQLite and Postgres: money JSON, idempotency, refunds, tenancy, bad input."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.serving.helpers import make_api
from warehouse.models import IdempotencyKey, LedgerEntry, OutboxEvent, Payment, Refund


@pytest.fixture
def api(oltp_url, make_settings):
    return make_api(make_settings(database_url=oltp_url))


def count(api, model) -> int:
    with Session(api.engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_create_payment_returns_strings_and_writes_balanced_ledger(api):
    # Risk limits are in the merchant's currency: an ETH merchant at KYC tier 3 takes 123 ETH.
    _, key = api.merchant(settlement_currency="ETH", kyc_tier=3)
    resp = api.pay(key, amount=123456789012345678901, currency="ETH",
                   method={"type": "crypto"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["amount_minor"] == "123456789012345678901"
    assert body["status"] == "success" and body["id"].startswith("pay_")
    assert body["channel"] == "ch_crypto_sim" and re.fullmatch(r"0x[0-9a-f]{64}", body["channel_reference"])
    assert body["created_at"].endswith("Z")
    with Session(api.engine) as s:
        legs = s.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == body["id"])).all()
        assert sorted(leg.amount_minor for leg in legs) == [-123456789012345678901,
                                                              123456789012345678901]
        stored = s.get(Payment, body["id"])
        assert stored.amount_minor == 123456789012345678901  # exact above 2^63
    assert count(api, OutboxEvent) == 1


def test_get_and_list_payments(api):
    _, key = api.merchant()
    ids = [api.pay(key, amount=str(100 + i)).json()["id"] for i in range(3)]
    auth = {"Authorization": f"Bearer {key}"}
    got = api.client.get(f"/api/v1/payments/{ids[0]}", headers=auth)
    assert got.status_code == 200 and got.json()["amount_minor"] == "100"
    page = api.client.get("/api/v1/payments?limit=2", headers=auth).json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = api.client.get(f"/api/v1/payments?limit=2&starting_after={ids[1]}", headers=auth).json()
    assert [p["id"] for p in rest["data"]] == [ids[0]] and rest["has_more"] is False


def test_declined_card_is_recorded_as_failed_without_ledger(api):
    _, key = api.merchant()
    resp = api.pay(key, method={"type": "card", "number": "4000000000000002"})
    assert resp.status_code == 201
    assert resp.json()["status"] == "failed" and resp.json()["failure_code"] == "card_declined"
    assert count(api, LedgerEntry) == 0


def test_idempotent_replay_and_reuse_with_other_body(api):
    _, key = api.merchant()
    card = {"type": "card", "number": "4242424242424242"}
    first = api.pay(key, amount="500", idem="k-1", method=card)
    again = api.pay(key, amount="500", idem="k-1", method=card)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.pay(key, amount="501", idem="k-1", method=card)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_compares_the_parameters_not_their_spelling(api):
    """1000 and "1000" are one amount, and a default sent is the default left out: a retry that
    spells the same request differently replays it instead of failing with a 409."""
    _, key = api.merchant()
    card = {"type": "card", "number": "4242424242424242"}
    first = api.pay(key, amount="500", idem="k-2", method=card)
    assert first.status_code == 201, first.text
    for spelling in ({"amount": 500}, {"amount": "500", "confirm": True}):
        again = api.pay(key, idem="k-2", method=card, **spelling)
        assert again.status_code == 201 and again.json() == first.json(), spelling
        assert again.headers["Idempotent-Replayed"] == "true"
    refund = api.refund(key, first.json()["id"], amount="100", idem="r-2")
    assert refund.status_code == 201, refund.text
    again = api.refund(key, first.json()["id"], amount=100, idem="r-2")
    assert again.status_code == 201 and again.json() == refund.json()
    assert api.refund(key, first.json()["id"], amount=101, idem="r-2").status_code == 409
    assert count(api, Payment) == 1


def test_keys_past_their_ttl_are_pruned_and_then_start_a_new_payment(api):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from serving.services.idempotency import prune_expired

    _, key = api.merchant()
    card = {"type": "card", "number": "4242424242424242"}
    old = api.pay(key, amount="500", idem="k-old", method=card).json()
    fresh = api.pay(key, amount="500", idem="k-fresh", method=card).json()
    now = datetime.now(UTC)
    with Session(api.engine) as s:
        s.execute(update(IdempotencyKey).where(IdempotencyKey.key == "k-old")
                  .values(created_at=now - timedelta(hours=25)))
        s.commit()
    with Session(api.engine) as s, s.begin():
        assert prune_expired(s, now, ttl_hours=24) == 1
    with Session(api.engine) as s, s.begin():
        assert prune_expired(s, now, ttl_hours=24) == 0  # nothing else is old enough
    with Session(api.engine) as s:
        assert set(s.scalars(select(IdempotencyKey.key))) == {"k-fresh"}
    # within the TTL the key replays; after it, the same key is a new request
    assert api.pay(key, amount="500", idem="k-fresh", method=card).json() == fresh
    again = api.pay(key, amount="500", idem="k-old", method=card)
    assert again.status_code == 201 and again.json()["id"] != old["id"]
    assert "Idempotent-Replayed" not in again.headers and count(api, Payment) == 3


def test_same_key_for_two_merchants_is_two_payments(api):
    _, key_a = api.merchant("A")
    _, key_b = api.merchant("B")
    assert api.pay(key_a, idem="shared").json()["id"] != api.pay(key_b, idem="shared").json()["id"]


def test_concurrent_duplicates_make_one_payment(api):
    _, key = api.merchant()
    results = []

    def hit():
        results.append(api.pay(key, amount="777", idem="race",
                               method={"type": "card", "number": "4242424242424242"}))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert count(api, Payment) == 1 and count(api, LedgerEntry) == 2


@pytest.mark.parametrize("amount,code", [
    (12.5, "float_amount"), ("12.50", "float_amount"), ("1e3", "float_amount"),
    (-5, "amount_not_positive"), (0, "amount_not_positive"), (True, "invalid_money"),
])
def test_bad_amounts_are_422_and_write_nothing(api, amount, code):
    _, key = api.merchant()
    resp = api.pay(key, amount=amount)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["details"]["field"] == "amount_minor"
    assert "amount_minor" in error["message"]
    assert count(api, Payment) == 0 and count(api, IdempotencyKey) == 0


def test_unknown_and_disabled_currency(api):
    _, key = api.merchant(pricing=[{"currency": "USD", "rate_bps": 250}])
    unknown = api.pay(key, currency="XXX1")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_currency"
    disabled = api.pay(key, currency="EUR")
    assert disabled.status_code == 422
    assert disabled.json()["error"]["code"] == "currency_not_enabled"
    assert count(api, Payment) == 0


def test_without_an_idempotency_key_each_request_is_its_own(api):
    # api.md: money POSTs "accept" Idempotency-Key; as with Stripe a request without one is
    # served, and sending it again is a new request (the client chose not to be deduplicated).
    _, key = api.merchant()
    body = {"amount_minor": "1", "currency": "USD", "merchant_reference": "x",
            "payment_method": {"type": "card", "number": "4242424242424242"}}
    first, second = (api.client.post("/api/v1/payments", json=body,
                                     headers={"Authorization": f"Bearer {key}"})
                     for _ in range(2))
    assert first.status_code == second.status_code == 201, first.text
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in first.headers and "Idempotent-Replayed" not in second.headers
    assert count(api, Payment) == 2
    blank = api.client.post("/api/v1/payments", json=body,
                            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": " "})
    assert blank.status_code == 201 and count(api, Payment) == 3


def test_bad_credentials(api):
    body = {"amount_minor": "1", "currency": "USD", "merchant_reference": "x",
            "payment_method": {"type": "card", "number": "4242424242424242"}}
    bad = api.client.post("/api/v1/payments", json=body,
                          headers={"Authorization": "Bearer sk_test_nope", "Idempotency-Key": "a"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    none = api.client.post("/api/v1/payments", json=body, headers={"Idempotency-Key": "a"})
    assert none.status_code == 401
    assert count(api, Payment) == 0


def test_merchant_cannot_see_another_merchants_payment(api):
    _, key_a = api.merchant("A")
    _, key_b = api.merchant("B")
    payment_id = api.pay(key_a).json()["id"]
    resp = api.client.get(f"/api/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {key_b}"})
    assert resp.status_code == 404
    listed = api.client.get("/api/v1/payments", headers={"Authorization": f"Bearer {key_b}"}).json()
    assert listed["data"] == []
    admin = api.client.get(f"/api/v1/payments/{payment_id}",
                           headers={"Authorization": f"Bearer {api.admin_token}"})
    assert admin.status_code == 200


def test_refunds_partial_full_and_never_above_captured(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    part = api.refund(key, payment_id, amount="300")
    assert part.status_code == 201 and part.json()["amount_minor"] == "300"
    too_much = api.refund(key, payment_id, amount="701")
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "refund_exceeds_captured"
    # the amount the details name travels with its currency (api.md)
    assert too_much.json()["error"]["details"] == {
        "field": "amount_minor", "remaining_minor": "700", "currency": "USD"}
    rest = api.refund(key, payment_id)
    assert rest.json()["amount_minor"] == "700"
    with Session(api.engine) as s:
        payment = s.get(Payment, payment_id)
        assert payment.status == "refunded" and payment.refunded_minor == 1000
        assert s.scalar(select(func.count()).select_from(Refund)) == 2
        total = sum(e.amount_minor for e in s.scalars(select(LedgerEntry)))
        assert total == 0
    again = api.refund(key, payment_id, amount="1")
    assert again.status_code == 409 and again.json()["error"]["code"] == "payment_not_refundable"


def test_refund_replay_does_not_refund_twice(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="1000").json()["id"]
    idem = uuid.uuid4().hex
    assert api.refund(key, payment_id, amount="400", idem=idem).status_code == 201
    replay = api.refund(key, payment_id, amount="400", idem=idem)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert count(api, Refund) == 1


def test_refund_error_is_replayed_and_writes_nothing(api):
    _, key = api.merchant()
    payment_id = api.pay(key, amount="100").json()["id"]
    first = api.refund(key, payment_id, amount="101", idem="r")
    second = api.refund(key, payment_id, amount="101", idem="r")
    assert first.status_code == second.status_code == 422
    assert count(api, Refund) == 0 and count(api, LedgerEntry) == 2


def test_test_clock_sets_business_time(api):
    _, key = api.merchant()
    resp = api.pay(key, headers={"Clearhouse-Test-Clock": "2026-11-20T09:30:00Z"})
    assert resp.json()["created_at"] == "2026-11-20T09:30:00.000Z"
    assert resp.json()["captured_at"] == "2026-11-20T09:30:00.000Z"


def test_health_and_openapi(api):
    assert api.client.get("/health").json()["status"] == "ok"
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/payments" in spec["paths"]
    assert api.client.get("/docs").status_code == 200


def test_a_key_taken_under_a_test_clock_lives_its_24_hours_in_real_time(api):
    """A key is dated by the wall clock on every path: Postgres's one-round-trip create dated it
    by the test clock's business time (days back on a replayed day), so the next pruning
    dropped it and a retry made a second payment."""
    from datetime import UTC, datetime

    from serving.services.idempotency import prune_expired

    _, key = api.merchant()
    card = {"type": "card", "number": "4242424242424242"}
    clock = {"Clearhouse-Test-Clock": "2026-11-20T12:00:00Z"}
    first = api.pay(key, amount="500", idem="k-clock", method=card, headers=clock)
    assert first.status_code == 201
    with Session(api.engine) as s, s.begin():
        assert prune_expired(s, datetime.now(UTC), ttl_hours=24) == 0
    again = api.pay(key, amount="500", idem="k-clock", method=card, headers=clock)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and count(api, Payment) == 1
