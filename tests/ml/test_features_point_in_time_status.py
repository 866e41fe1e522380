"""Issue 7 item 2: "Features computed point-in-time correctly (only data before the payment ...)"
and "One feature definition serves training (batch) and live scoring (the API), so they cannot
drift apart".

A payment's status changes after it is created (a pending card payment whose channel callback
later says failed). The live risk check of a later payment sees the earlier one as pending (not a
decline); training reads raw.payments' *latest* status, so the same later payment gets a decline
in its history that was not known when it was scored: information from after the payment leaks
into its training features, and training and serving disagree on the same payment."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.ledger import extract_ledger
from ml.payment_features import EVENT_COLUMNS, batch_features, features_from
from ml.warehouse import open_warehouse, read_payments
from serving import fraud, risk
from serving.channel_simulator import deliver_pending_callbacks
from serving.routing import HEALTH, clear_config_cache
from tests.serving.helpers import make_api
from warehouse.migrate import upgrade
from warehouse.models import Payment

PENDING_THEN_DECLINED = "4000000000000341"  # serving/channels.py: pending, callback says failed


def clock(hh_mm: str) -> dict:
    return {"Clearhouse-Test-Clock": f"2026-11-20T{hh_mm}:00Z"}


def test_a_later_status_change_does_not_move_training_features(make_settings):
    HEALTH.reset()
    clear_config_cache()
    settings = make_settings()
    upgrade(settings.oltp_url)
    api = make_api(settings)
    try:
        _, key = api.merchant(kyc_tier=3)
        customer = {"id": "cus_pit", "device_id": "dev_1", "ip": "10.1.1.1", "geo": "US"}
        first = api.pay(key, amount="1500", customer=customer, headers=clock("10:00"),
                        method={"type": "card", "number": PENDING_THEN_DECLINED})
        assert first.status_code == 201 and first.json()["status"] != "failed", first.text
        second = api.pay(key, amount="2500", customer=customer, headers=clock("10:10"))
        assert second.status_code == 201, second.text
        second_id = second.json()["id"]

        # What the live risk check computed for the second payment, at its time.
        with Session(api.engine) as session:
            row = session.execute(fraud.select_events().where(Payment.id == second_id)).one()
            event = fraud.as_event(row)
            live = features_from(event, fraud.summary(session, event))
        assert live["customer_declines_24h"] == 0  # the first payment was pending then

        # 20 minutes later the channel's callback says the first payment failed.
        report = deliver_pending_callbacks(api.engine, api.client, datetime.now(UTC),
                                           test_clock=datetime(2026, 11, 20, 10, 30, tzinfo=UTC))
        assert report["delivered"] == 1, report
        with Session(api.engine) as session:
            assert session.scalar(select(Payment.status).where(
                Payment.id == first.json()["id"])) == "failed"

        # Training: the pipeline's extract, then the batch features of the same payment.
        extract_ledger(settings)
        writer = open_warehouse(settings)
        try:
            events = read_payments(writer)
        finally:
            writer.close()
        batch = batch_features(events.select(EVENT_COLUMNS))
        trained = batch.filter(pl.col("payment_id") == second_id).row(0, named=True)
        # Expected: the feature as known when the payment was scored (0); actual: 1.
        assert trained["customer_declines_24h"] == live["customer_declines_24h"]
    finally:
        risk.set_score_hook(None)
        HEALTH.reset()
        clear_config_cache()
