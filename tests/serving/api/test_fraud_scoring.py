"""Live fraud scoring in the payments API: thresholds, reasons, promotion without a restart,
and the live feature query agreeing with the batch features (SQLite and Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy.orm import Session

from ml.payment_features import (
    EVENT_COLUMNS,
    FEATURES,
    batch_features,
    event_features,
    features_from,
    summarize,
)
from ml.registry import Registry
from serving import fraud, risk
from serving.routing import HEALTH, clear_config_cache
from tests.serving.fraud_models import Constant, ScoreByAmount, card
from tests.serving.helpers import make_api


@pytest.fixture
def api(oltp_url, make_settings):
    HEALTH.reset()
    clear_config_cache()
    yield make_api(make_settings(database_url=oltp_url))
    risk.set_score_hook(None)
    HEALTH.reset()
    clear_config_cache()


def promote(settings, model, pr_auc: float) -> str:
    registry = Registry(settings, family="payments")
    version = registry.register(model, card(pr_auc))
    registry.promote(version, force=True)
    return version


def clock(minutes: int) -> dict:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(minutes=minutes)
    return {"Clearhouse-Test-Clock": at.isoformat().replace("+00:00", "Z")}


def test_without_a_champion_the_rules_decide_alone(api):
    _, key = api.merchant(kyc_tier=3)
    body = api.pay(key, amount="9000").json()
    assert body["status"] == "success" and body["risk"]["score"] is None
    assert not risk.score_hook_installed()  # the Postgres fast path stays available


def test_scores_review_at_65_and_block_at_75_then_a_promotion_is_picked_up(api):
    api.client.app.state.fraud_scorer.recheck_seconds = 0
    version = promote(api.settings, ScoreByAmount(), 0.5)
    assert risk.score_hook_installed()
    _, key = api.merchant(kyc_tier=3)
    low, review, block = (api.pay(key, amount=a, customer={"id": f"cus_{a}"}).json()
                          for a in ("1000", "7000", "8000"))
    assert (low["status"], low["risk"]["decision"], low["risk"]["score"]) == (
        "success", "approve", 10)
    assert (review["status"], review["risk"]["decision"], review["risk"]["score"]) == (
        "auth_required", "review", 70)
    assert (block["status"], block["failure_code"], block["risk"]["score"]) == (
        "failed", "risk_rejected", 80)
    # Reasons name the feature that raised the score and the model version.
    assert block["risk"]["reasons"] == ["ml_score", "ml:log_amount_usd", f"ml_model:{version}"]
    assert review["risk"]["reasons"][0] == "ml_score"
    # 64.99 is below the review threshold; 65.00 reviews.
    edge = [api.pay(key, amount=a, customer={"id": f"cus_e{a}"}).json()["risk"]["decision"]
            for a in ("6499", "6500")]
    assert edge == ["approve", "review"]

    # A promotion (here a model that scores everything 90) applies without a restart ...
    second = promote(api.settings, Constant(0.9), 0.6)
    after = api.pay(key, amount="100", customer={"id": "cus_after"}).json()
    assert after["risk"]["score"] == 90 and after["status"] == "failed"
    assert f"ml_model:{second}" in after["risk"]["reasons"]
    # ... and so does a rollback.
    Registry(api.settings, family="payments").rollback()
    back = api.pay(key, amount="100", customer={"id": "cus_back"}).json()
    assert back["risk"]["score"] == 1 and back["status"] == "success"


def test_thresholds_are_configurable(oltp_url, make_settings):
    settings = make_settings(database_url=oltp_url, ml_review_score=20, ml_block_score=50)
    promote(settings, ScoreByAmount(), 0.5)
    try:
        api = make_api(settings)
        _, key = api.merchant(kyc_tier=3)
        got = [api.pay(key, amount=a, customer={"id": f"c{a}"}).json()["risk"]["decision"]
               for a in ("1000", "3000", "6000")]
        assert got == ["approve", "review", "reject"]
    finally:
        risk.set_score_hook(None)


def test_live_features_equal_batch_features_on_the_api_database(api):
    """Training-serving skew, end to end: the API's payments, read back as the pipeline reads
    them, give the same features in batch as the live query + event_features gave."""
    _, key = api.merchant(kyc_tier=3)
    cards = [{"type": "card", "number": n} for n in ("4242424242424242", "4000056655665556")]
    plan = [(0, "cus_a", cards[0], "dev_1", "US", "1500"), (20, "cus_a", cards[0], "dev_1", "US",
                                                            "2500"),
            (30, "cus_b", cards[0], "dev_1", "DE", "900"), (45, "cus_a", cards[1], "dev_2", "JP",
                                                            "99000"),
            (50, "cus_a", {"type": "card", "number": "4000000000000002"}, "dev_2", "JP", "500"),
            (70, "cus_a", cards[1], "dev_2", "JP", "1200"), (60 * 26, "cus_a", cards[0], "dev_1",
                                                             "US", "1800")]
    for minutes, customer, method, device, geo, amount in plan:
        response = api.pay(key, amount=amount, method=method, headers=clock(minutes),
                           customer={"id": customer, "device_id": device, "geo": geo,
                                     "ip": "10.0.0.1"})
        assert response.status_code == 201, response.text
    with Session(api.engine) as session:
        rows = [fraud.as_event(r) for r in session.execute(fraud.select_events())]
        assert len(rows) == len(plan)
        assert {r["status"] for r in rows} >= {"success", "failed"}
        events = pl.DataFrame(rows).select(EVENT_COLUMNS)
        batch = batch_features(events)
        for row, expected in zip(rows, batch.iter_rows(named=True), strict=True):
            # the live path: SQL aggregates; and the Python definition over the same rows
            live = features_from(row, fraud.summary(session, row))
            assert [live[n] for n in FEATURES] == pytest.approx([expected[n] for n in FEATURES])
            from_rows = event_features(row, fraud.history(session, row))
            assert [from_rows[n] for n in FEATURES] == pytest.approx(
                [expected[n] for n in FEATURES])
            assert fraud.summary(session, row) == summarize(row, fraud.history(session, row))
        # The history query itself: the customer's 30 days and the IP's 24 hours, strictly
        # before the instant (the customer's payment of 11-21 12:00 is later; cus_b's 11-20
        # 10:30 payment shares the IP but is more than 24 h old).
        later = {"created_at": datetime(2026, 11, 21, 10, 40, tzinfo=UTC), "customer_id": "cus_a",
                 "card_fingerprint": None, "customer_ip": "10.0.0.1", "device_id": None}
        seen = {r["customer_id"] for r in fraud.history(session, later)}
        assert len(fraud.history(session, later)) == 5 and seen == {"cus_a"}


def test_the_sql_summary_equals_the_python_definition_on_random_payments(api):
    """Many keys, repeated instants, exact window boundaries, NULL keys, several currencies:
    the live SQL aggregates give the Summary that ml.payment_features computes from the rows
    and the features batch_features gives."""
    from sqlalchemy import insert

    from tests.ml.test_payment_features import random_events
    from warehouse.models import Merchant, Payment

    rows = random_events(400, seed=11)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with Session(api.engine) as session, session.begin():
        session.execute(insert(Merchant), [{"id": f"mer_{k}", "name": f"m{k}", "kyc_tier": 3,
                                            "created_at": now, "updated_at": now}
                                           for k in range(3)])
        session.execute(insert(Payment), [
            {"id": r["payment_id"], "merchant_id": r["merchant_id"],
             "merchant_reference": r["payment_id"], "amount_minor": r["amount_minor"],
             "currency": r["currency"], "status": r["status"], "payment_method_type": r["method"],
             "customer_id": r["customer_id"], "customer": {"geo": r["geo"]},
             "customer_ip": r["customer_ip"], "device_id": r["device_id"],
             "card_fingerprint": r["card_fingerprint"], "risk_decision": "approve",
             "refunded_minor": 0, "created_at": r["created_at"], "failed_at": r["failed_at"],
             "updated_at": now}
            for r in rows])
    batch = batch_features(pl.DataFrame(rows).select(EVENT_COLUMNS))
    with Session(api.engine) as session:
        for row, expected in zip(rows, batch.iter_rows(named=True), strict=True):
            got = fraud.summary(session, row)
            assert got == summarize(row, rows), row["payment_id"]
            live = features_from(row, got)
            assert [live[n] for n in FEATURES] == pytest.approx(
                [expected[n] for n in FEATURES], rel=1e-9, abs=1e-9), row["payment_id"]
