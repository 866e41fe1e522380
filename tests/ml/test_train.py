"""Metrics against values worked out by hand; the split; the models on planted fraud."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import average_precision_score

from ml.train import (
    calibration_cut,
    evaluate,
    fit,
    fit_rows,
    holdout_metrics,
    matrix,
    precision_at_k,
    recall_at_fpr,
    rule_flags,
    scores,
)

# 4 frauds, 200 legitimate events. By score: 0.95 legit, 0.9 FRAUD, 0.85 legit, 0.8 FRAUD,
# 0.5 FRAUD, 198 legit between 0.4 and 0.2, then 0.1 FRAUD.
Y = np.array([0, 1, 0, 1, 1] + [0] * 198 + [1])
S = np.array([0.95, 0.9, 0.85, 0.8, 0.5, *np.linspace(0.4, 0.2, 198), 0.1])


def test_recall_at_1pct_fpr_by_hand():
    # 1 % of 200 legitimate events = 2 false positives allowed: the threshold 0.5 flags 2 legit
    # and 3 of the 4 frauds; one step lower flags a 3rd legit event (1.5 %).
    assert recall_at_fpr(Y, S, 0.01) == 0.75
    assert recall_at_fpr(Y, S, 0.005) == 0.25  # 1 false positive allowed: only the 0.9 fraud
    assert recall_at_fpr(Y, S, 1.0) == 1.0


def test_precision_at_k_by_hand():
    assert precision_at_k(Y, S, 3) == pytest.approx(1 / 3)
    assert precision_at_k(Y, S, 5) == pytest.approx(3 / 5)
    assert precision_at_k(Y, S, 1000) == pytest.approx(4 / 204)  # fewer rows than k: all
    # equal scores: the earlier event is reviewed first
    assert precision_at_k(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.5]), 1) == 0.0


def test_pr_auc_is_average_precision():
    by_hand = (1 / 2 + 2 / 4 + 3 / 5 + 4 / 204) / 4
    assert average_precision_score(Y, S) == pytest.approx(by_hand)


def test_money_saved_by_hand():
    holdout = pl.DataFrame({
        "type": ["TRANSFER", "CASH_OUT", "PAYMENT", "TRANSFER", "CASH_OUT", "TRANSFER"],
        "amount": [500, 70, 40, 1_000, 2_000, 300],
        "oldbalanceOrg": [500, 70, 100, 5_000, 9_000, 0],
        "isFlaggedFraud": [0, 0, 0, 0, 0, 1],
        "isFraud": [0, 1, 0, 1, 1, 1]})
    # the rule: drains (rows 0 and 1) or PaySim's flag (row 5); the 0 balance does not "drain"
    assert rule_flags(holdout).tolist() == [True, True, False, False, False, True]
    score = np.array([0.1, 0.2, 0.0, 0.9, 0.8, 0.3])
    got = holdout_metrics(holdout, score, budget=2)
    # model reviews rows 3 and 4: fraud 1,000 + 2,000; the rule reviews rows 0 and 1 (arrival
    # order, budget 2): fraud 70
    assert got["fraud_caught_minor"] == 3_000 and got["rule_fraud_caught_minor"] == 70
    assert got["money_saved_minor"] == 2_930
    assert isinstance(got["money_saved_minor"], int)


def test_time_split_keeps_time_order(split):
    assert split.train["step"].max() < split.cut_step <= split.holdout["step"].min()
    assert split.train.height + split.holdout.height > 0
    assert split.holdout.height == pytest.approx(0.3 * (split.train.height + split.holdout.height),
                                                 rel=0.1)


def test_gbm_beats_a_random_score_on_planted_fraud(split, gbm):
    y = split.holdout["isFraud"].to_numpy()
    fraud_rate = y.mean()
    random_pr_auc = average_precision_score(y, np.random.default_rng(0).random(len(y)))
    metrics = holdout_metrics(split.holdout, scores(gbm, split.holdout))
    assert metrics["pr_auc"] > max(0.5, 5 * fraud_rate, 3 * random_pr_auc)
    assert metrics["recall_at_1pct_fpr"] > 0.4
    assert metrics["money_saved_minor"] > 0  # the planted fraud is not all caught by the rule


def test_evaluate_is_deterministic_and_reports_both_models(events):
    first, second = evaluate(events), evaluate(events)
    assert first == second
    assert set(first["models"]) == {"gbm", "logistic"}
    for metrics in first["models"].values():
        assert set(metrics) >= {"pr_auc", "recall_at_1pct_fpr", "precision_at_100",
                                "money_saved_minor"}


def test_fit_rows_keeps_every_fraud_and_samples_the_rest():
    y = np.array([0] * 900 + [1] * 30 + [0] * 70)
    assert fit_rows(y, 5_000).tolist() == list(range(1_000))  # under the cap: everything
    rows = fit_rows(y, 200)
    assert len(rows) == 200 and len(set(rows.tolist())) == 200
    assert y[rows].sum() == 30  # all frauds kept, 170 legitimate rows sampled
    assert (np.diff(rows) > 0).all()  # arrival order kept
    assert fit_rows(y, 200).tolist() == rows.tolist()  # seeded


def test_one_fitted_model_calibrated_on_the_latest_training_events(split, gbm):
    # One member (not an ensemble of folds): live scoring walks one set of trees.
    assert len(gbm.calibrated_classifiers_) == 1
    # calibrated on the last CALIBRATION_FRACTION of the training window: the sigmoid was fitted
    # on exactly those rows, so refitting it there gives the same parameters
    calibrator = gbm.calibrated_classifiers_[0].calibrators[0]
    x = matrix(split.train)[calibration_cut(split.train.height):]
    y = split.train["isFraud"].to_numpy()[calibration_cut(split.train.height):]
    again = CalibratedClassifierCV(gbm.calibrated_classifiers_[0].estimator,
                                   method="sigmoid").fit(x, y)
    assert again.calibrated_classifiers_[0].calibrators[0].a_ == pytest.approx(calibrator.a_)


def test_a_capped_fit_still_learns_the_planted_fraud(split):
    y = split.train["isFraud"].to_numpy()
    capped = fit("gbm", split.train, max_fit_rows=int(y.sum()) * 5)
    metrics = holdout_metrics(split.holdout, scores(capped, split.holdout))
    assert metrics["pr_auc"] > 0.5
    # and the probabilities are calibrated on the real mix: the mean predicted fraud rate on
    # the holdout is near the real one, not near the 1-in-5 the fit saw
    assert scores(capped, split.holdout).mean() < 3 * max(y.mean(), 0.01)
