"""Batch scoring a block at a time (ml.batch.score_payments) gives what scoring the whole
matrix of rows gives: the same scores, the same reasons from the review score on, the same rows
kept for the drift check - for compiled and scikit-learn models, on all features or a few."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from ml.batch import score_payments
from ml.compiled import CompiledModel, compiled_or_model
from ml.feature_sets import PAYMENTS
from ml.payment_features import FEATURES, batch_feature_rows, batch_features
from ml.scoring import reasons, to_score
from ml.train import fit, reference_values
from serving.fraud import Champion
from tests.ml.test_payment_features import frame, random_events

FEW = ["card_count_1h", "log_amount_usd", "new_device", "customer_declines_24h",
       "amount_vs_customer_30d"]  # not FEATURES' order: the block's columns are picked


@pytest.fixture(scope="module")
def payments() -> pl.DataFrame:
    # not in event order: the scores go back to the input's positions
    return frame(random_events(3_000, seed=21)).sample(fraction=1.0, shuffle=True, seed=3)


@pytest.fixture(scope="module")
def labelled(payments) -> pl.DataFrame:
    """The payments' features with a label they predict (bursts on a card, large amounts),
    flipped on 5 % of them: both classes, and scores that spread."""
    features = batch_features(payments)
    flip = np.random.default_rng(5).random(features.height) < 0.05
    fraud = ((features["card_count_1h"] > 1) | (features["log_amount_usd"] > 7.5)).to_numpy()
    return features.with_columns(is_fraud=pl.Series(fraud ^ flip).cast(pl.Int8))


def champion(labelled, name: str, features: list[str], compiled: bool) -> Champion:
    feature_set = dataclasses.replace(PAYMENTS, features=tuple(features))
    model = fit(name, labelled, feature_set)
    card = {"features": features, "reference": reference_values(labelled, feature_set)}
    if compiled:
        model = compiled_or_model(model, card)
        assert isinstance(model, CompiledModel)
    return Champion("v0001", model, features, card["reference"])


@pytest.mark.parametrize(("name", "features", "compiled"), [
    ("gbm", list(FEATURES), True), ("gbm", FEW, True), ("logistic", list(FEATURES), True),
    ("gbm", FEW, False)])
def test_blocks_score_as_the_whole_matrix(payments, labelled, name, features, compiled):
    scorer = champion(labelled, name, features, compiled)
    ids, rows = batch_feature_rows(payments)
    x = np.ascontiguousarray(rows[:, [FEATURES.index(f) for f in features]])
    # the whole matrix at once: for a compiled forest of 3,000 rows, the numpy walk - the
    # blocks are walked in machine code, and must agree bit for bit
    probability = scorer.model.predict_proba(x)[:, 1]
    want = to_score(probability)
    reasons_from = int(np.percentile(want, 90))
    high = np.flatnonzero(want >= reasons_from)
    why = reasons(scorer.model, x[high], features, scorer.reference, probability[high])
    keep = (payments["merchant_id"] == "mer_1").to_numpy()

    got = score_payments(payments, scorer, reasons_from, keep, block_rows=128)
    assert got.payment_id.to_list() == ids.to_list() == payments["payment_id"].to_list()
    assert np.array_equal(got.score, want)
    assert np.array_equal(got.explained, high) and got.reasons == why
    assert 0 < len(high) < len(want) and any(why)  # not vacuous
    assert np.array_equal(got.kept, rows[keep], equal_nan=True) and 0 < keep.sum() < len(keep)


def test_nothing_kept_and_no_payments(payments, labelled):
    scorer = champion(labelled, "gbm", list(FEATURES), True)
    got = score_payments(payments.head(300), scorer, reasons_from=100)  # no score reaches 100
    assert len(got.score) == 300 and len(got.explained) == 0 and got.reasons == []
    assert got.kept.shape == (0, len(FEATURES))
    none = score_payments(payments.head(0), scorer, reasons_from=0)
    assert len(none.score) == 0 and none.reasons == [] and none.payment_id.len() == 0
