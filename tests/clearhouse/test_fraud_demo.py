"""The demo's fraud act: trains once per cut-off, and reports only the frauds known by now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from clearhouse import fraud_demo
from ingest.files.formats.fraud_reports import parse
from ml.registry import Registry
from tests.serving.helpers import make_api

DAY = date(2026, 10, 20)


def test_trains_once_per_cut_off(make_settings):
    settings = make_settings()
    first = fraud_demo.train_before_the_day(settings, DAY, 300, seed=3)
    assert first.trained and first.version == "v0001" and first.decision.startswith("promoted")
    again = fraud_demo.train_before_the_day(settings, DAY, 300, seed=3)
    assert not again.trained and again.version == "v0001"
    assert Registry(settings, family="payments").versions() == ["v0001"]
    card = Registry(settings, family="payments").card("v0001")
    assert card["data"]["known_at"] == "2026-10-20T00:00:00+00:00"
    assert card["data"]["sources"] == {"history:demo": 9000, "warehouse": 0}


def test_after_the_day_reports_what_is_known_and_counts_live_outcomes(tmp_path, make_settings):
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'oltp.sqlite'}")
    from warehouse.migrate import upgrade

    upgrade(settings.oltp_url)
    api = make_api(settings)
    _, key = api.merchant(kyc_tier=3)
    clock = {"Clearhouse-Test-Clock": "2026-10-20T12:00:00Z"}
    ids = [api.pay(key, amount="2500", headers=clock, customer={"id": f"c{i}"}).json()["id"]
           for i in range(3)]
    now = datetime(2026, 10, 25, tzinfo=UTC)
    planted = [(ids[0], "card_testing", now - timedelta(days=1)),  # known by now
               (ids[1], "friendly_fraud", now + timedelta(days=20)),  # not yet
               (ids[2], "account_takeover", None)]  # never reported
    act = fraud_demo.after_the_day(fraud_demo.FraudAct(), settings, api.engine, DAY, planted, now)
    assert (act.planted, act.reported, act.scored) == (3, 1, 0)  # no champion: nothing scored
    (written,) = (settings.landing_dir / "fraud_reports").glob("*.csv")
    (report,) = parse(written.read_bytes(), written.name).fraud_reports
    assert (report.payment_id, report.kind, report.amount_minor, report.currency) == (
        ids[0], "card_testing", 2500, "USD")


def test_after_the_day_tells_kyc_limit_refusals_from_fraud_ones(tmp_path, make_settings):
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'oltp.sqlite'}")
    from warehouse.migrate import upgrade

    upgrade(settings.oltp_url)
    api = make_api(settings)
    _, key = api.merchant(kyc_tier=1)  # single payments up to 500.00 in its currency
    clock = {"Clearhouse-Test-Clock": "2026-10-20T12:00:00Z"}
    over = api.pay(key, amount="60000", headers=clock, customer={"id": "c1"}).json()
    within = api.pay(key, amount="2500", headers=clock, customer={"id": "c2"}).json()
    assert over["risk"]["reasons"] == ["single_payment_limit_kyc_1"]
    assert within["risk"]["decision"] == "approve"
    act = fraud_demo.after_the_day(fraud_demo.FraudAct(), settings, api.engine, DAY, [],
                                   datetime(2026, 10, 21, tzinfo=UTC))
    assert (act.rejected, act.over_limit, act.reviewed) == (1, 1, 0)
