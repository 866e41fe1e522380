"""Retraining on late labels, champion/challenger on the same holdout, batch scores in the
warehouse (DuckDB and Postgres), the drift check, and the Dagster asset's model card."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml import drift
from ml.feature_sets import label_payments
from ml.payment_features import FEATURES, batch_feature_rows
from ml.registry import Registry
from ml.simulate import history, write_history
from tests.quality.conftest import warehouse  # noqa: F401 - the two-engine warehouse fixture

START = date(2026, 9, 1)
DAYS = 24


@pytest.fixture(scope="module")
def archive():
    return history(START, DAYS, 300, seed=5)


def at(day: int) -> datetime:
    return datetime.combine(START + timedelta(days=day), datetime.min.time(), UTC)


def test_only_labels_known_at_the_cutoff_count(archive):
    events, labels = archive
    early, late = at(10), at(DAYS + 60)
    labelled_early = label_payments(events, labels, early)
    labelled_late = label_payments(events, labels, late)
    assert labelled_early.height == labelled_late.height == events.height
    known_early = set(labels.filter(pl.col("reported_at") <= early)["payment_id"])
    assert set(labelled_early.filter(pl.col("is_fraud") == 1)["payment_id"]) == known_early
    assert labelled_late["is_fraud"].sum() == labels["payment_id"].n_unique()
    assert labelled_early["is_fraud"].sum() < labelled_late["is_fraud"].sum()


def test_retrain_compares_the_champion_on_the_challengers_holdout(archive, make_settings):
    from ml.retrain import retrain

    settings = make_settings(ml_promotion_margin="0.0")
    write_history(settings.home_dir / "ml" / "history" / "seed", *archive)
    first = retrain(settings, at(DAYS), warehouse=False)
    assert (first.version, first.promoted, first.champion) == ("v0001", True, "v0001")
    assert first.card["data"]["frauds_known"] > 0 and first.pr_curve_path.read_bytes()[:4] == (
        b"\x89PNG")
    assert "| pr_auc |" in first.card_markdown and "champion" in first.card_markdown
    # Ten days later more labels are known: the challenger is trained on a different holdout,
    # and the champion is scored on that holdout too, so the rule compares like with like.
    second = retrain(settings, at(DAYS + 10), warehouse=False)
    compared = second.card["compared"]["v0001"]["pr_auc"]
    assert second.card["holdout_sha256"] != first.card["holdout_sha256"]
    assert second.promoted == (second.card["metrics"]["pr_auc"] >= compared)
    audit = Registry(settings, family="payments").audit_log()[-1]
    assert audit["champion_pr_auc"] == compared


def test_psi_is_small_on_the_training_data_and_large_after_a_shift():
    rng = np.random.default_rng(0)
    train = pl.DataFrame({"a": rng.normal(0, 1, 20_000), "b": rng.integers(0, 3, 20_000) * 1.0})
    ref = drift.reference(train, ["a", "b"])
    same = drift.feature_psi(ref, pl.DataFrame({"a": rng.normal(0, 1, 5_000),
                                                "b": rng.integers(0, 3, 5_000) * 1.0}))
    assert max(same.values()) < drift.MODERATE
    shifted = drift.feature_psi(ref, pl.DataFrame({"a": rng.normal(1.5, 1, 5_000),
                                                   "b": np.full(5_000, 2.0)}))
    assert shifted["a"] > drift.MAJOR and shifted["b"] > drift.MAJOR
    # By hand: two bins, 50/50 in training, 90/10 now.
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(
        0.4 * np.log(1.8) + (-0.4) * np.log(0.2))


def test_drift_compares_the_latest_day_with_enough_payments():
    """A day just begun (or a few calls of one merchant) is no sample: the latest day with
    MIN_ROWS payments is compared, or none."""
    days = pl.Series("day", [date(2026, 1, 1)] * 250 + [date(2026, 1, 2)] * 30
                     + [date(2025, 12, 31)] * 400)
    assert drift.latest_day(days) == (date(2026, 1, 1), 250)
    assert drift.latest_day(days, min_rows=300) == (date(2025, 12, 31), 400)
    assert drift.latest_day(days.head(200 - 1)) is None


def _fill_raw_payments(warehouse, events: pl.DataFrame) -> None:  # noqa: F811
    values = ",\n".join(
        f"('{r['payment_id']}', '{r['merchant_id']}', 'ref', {r['amount_minor']}, "
        f"'{r['currency']}', '{r['status']}', '{r['method']}', "
        f"'{r['created_at'].replace(tzinfo=None)}', '{r['created_at'].replace(tzinfo=None)}', "
        + ", ".join("NULL" if r[c] is None else f"'{r[c]}'" for c in (
            "customer_id", "card_fingerprint", "customer_ip", "device_id", "geo")) + ")"
        for r in events.iter_rows(named=True))
    warehouse.execute(
        "INSERT INTO raw.payments (id, merchant_id, merchant_reference, amount_minor, currency, "
        "status, payment_method_type, created_at, updated_at, customer_id, card_fingerprint, "
        f"customer_ip, device_id, customer_geo) VALUES {values}")


def test_batch_scores_land_in_the_warehouse_and_a_rerun_replaces_them(
        warehouse, archive, monkeypatch):  # noqa: F811
    from ml import batch
    from ml.retrain import retrain

    settings = warehouse.settings
    write_history(settings.home_dir / "ml" / "history" / "seed", *archive)
    assert batch.score_warehouse(settings).version is None  # no champion: an empty table
    retrain(settings, at(DAYS), warehouse=False)
    events = archive[0].filter(pl.col("created_at") >= at(DAYS - 3))
    _fill_raw_payments(warehouse, events)
    first = batch.score_warehouse(settings)
    again = batch.score_warehouse(settings)
    assert first.rows == again.rows == events.height and first.version == "v0001"
    assert first.psi is not None and set(first.psi) == set(
        Registry(settings, family="payments").card("v0001")["features"])
    compared = events.filter(pl.col("created_at").dt.date().cast(pl.Utf8) == first.drift_day)
    assert first.drift_rows == compared.height >= drift.MIN_ROWS
    from ingest.files.warehouse_io import open_files_writer
    from ml.warehouse import read_payments

    writer = open_files_writer(settings)
    try:
        rows = writer.fetchall("SELECT score, decision, reasons, model_version FROM "
                               "analytics.fct_fraud_scores")
        payments = read_payments(writer)
    finally:
        writer.close()
    # the drift check read the drift day's rows, kept while scoring the blocks: the same PSI
    # as the day's rows of the whole matrix give
    day = (payments["created_at"].dt.date().cast(pl.Utf8) == first.drift_day).to_numpy()
    whole = pl.DataFrame(batch_feature_rows(payments)[1][day], schema=list(FEATURES),
                         orient="row")
    assert first.psi == drift.feature_psi(
        Registry(settings, family="payments").card("v0001")["drift_reference"], whole)
    assert len(rows) == events.height
    for score, decision, reasons, version in rows:
        assert 0 <= score <= 99 and version == "v0001"
        expected = "block" if score >= 75 else "review" if score >= 65 else "approve"
        assert decision == expected
        assert (reasons != "") == (score >= 65)
    assert first.review + first.block == sum(1 for r in rows if r[1] != "approve")


def test_the_dagster_training_asset_carries_the_model_card(archive, make_settings):
    from orchestration.run import run_fraud_training

    settings = make_settings()
    write_history(settings.home_dir / "ml" / "history" / "seed", *archive)
    meta = run_fraud_training(settings, known_at=at(DAYS).isoformat(), ephemeral=True)
    assert meta["version"] == "v0001" and meta["promoted"] is True
    assert "# Fraud model v0001" in meta["model_card"]
    assert "data:image/png;base64," in meta["model_card"]
    assert 0 < meta["pr_auc"] <= 1


def test_chargebacks_on_psp_files_are_labels_known_the_day_after_the_file(
        warehouse):  # noqa: F811
    from ml.warehouse import open_warehouse, read_labels

    warehouse.execute(
        "INSERT INTO raw.fraud_reports (fraud_report_line_id, report_id, file_id, line_number, "
        "payment_id, kind, reported_at) VALUES ('f_fr:2', 'fr_1', 'f_fr', 2, 'pay_reported', "
        "'account_takeover', TIMESTAMP '2026-10-05 08:00:00')")
    warehouse.execute(
        "INSERT INTO raw.psp_lines (psp_line_id, file_id, format, line_number, settlement_date, "
        "record_type, merchant_reference, transaction_at, currency, gross_minor, superseded_by) "
        "VALUES "
        "('cb_1', 'f_1', 'clearhouse_psp_csv', 3, DATE '2026-10-03', 'chargeback', 'pay_cb', "
        " TIMESTAMP '2026-10-03 14:00:00', 'USD', -5000, NULL), "
        "('cb_old', 'f_0', 'clearhouse_psp_csv', 3, DATE '2026-10-02', 'chargeback', 'pay_re', "
        " TIMESTAMP '2026-10-02 09:00:00', 'USD', -700, 'cb_new'), "  # superseded by a re-send
        "('cap_1', 'f_1', 'clearhouse_psp_csv', 2, DATE '2026-10-03', 'capture', 'pay_ok', "
        " TIMESTAMP '2026-10-03 10:00:00', 'USD', 9000, NULL)")
    writer = open_warehouse(warehouse.settings)
    try:
        labels = read_labels(writer)
    finally:
        writer.close()
    assert labels.rows() == [
        ("pay_cb", "chargeback", datetime(2026, 10, 4, tzinfo=UTC)),  # the file's day + 1
        ("pay_reported", "account_takeover", datetime(2026, 10, 5, 8, tzinfo=UTC)),
    ]
    events = pl.DataFrame({"payment_id": ["pay_cb", "pay_ok", "pay_reported", "pay_re"]})
    known = label_payments(events, labels, datetime(2026, 10, 4, tzinfo=UTC))
    assert known["is_fraud"].to_list() == [1, 0, 0, 0]


def test_retrain_before_the_first_payment_says_what_there_is(warehouse, archive):  # noqa: F811
    from ml.retrain import NothingToTrainOn, retrain

    settings = warehouse.settings
    nothing = "no labelled payments known at 2026-08-01 00:00 UTC: none was created before it; "
    with pytest.raises(NothingToTrainOn, match=nothing + "there are no payments at all"):
        retrain(settings, datetime(2026, 8, 1, tzinfo=UTC))
    events = archive[0].filter(pl.col("created_at") >= at(DAYS - 3))
    _fill_raw_payments(warehouse, events)
    span = f"{events['created_at'].min():%Y-%m-%d} to {events['created_at'].max():%Y-%m-%d}"
    with pytest.raises(NothingToTrainOn, match=nothing + "the payments on hand run from " + span):
        retrain(settings, datetime(2026, 8, 1, tzinfo=UTC))


def test_the_pr_curve_steps_down_at_a_recall_rather_than_spiking_back_up():
    from ml.card import plot_order

    points = [(1.0, 0.2), (0.0, 1.0), (0.5, 0.8), (1.0, 0.6), (0.5, 0.7)]
    assert plot_order(points) == [(0.0, 1.0), (0.5, 0.8), (0.5, 0.7), (1.0, 0.6), (1.0, 0.2)]
