"""Train and evaluate the fraud models on a time-based split.

Every function takes a feature set (ml.feature_sets: PaySim-layout data or Clearhouse
payments; PaySim by default) that names the key, time order, label, amounts and rule.

Split. Events are ordered by arrival (PaySim: step, seq; payments: created_at, payment_id). The
holdout is the last `holdout_fraction` of the events, cut at a period boundary (PaySim: a step;
payments: a UTC day): train before the cut, evaluate from it; nothing is shuffled across time. Features are computed once over the whole file: they only look back, so
a holdout event's features use the history that a live scorer would have had.

Models. A gradient-boosted model (HistGradientBoostingClassifier) and a logistic-regression
baseline (standardised inputs). Both weight the classes inversely to their frequency
(class_weight="balanced"), because fraud is rare. Each is fitted once, on the earlier
1 - CALIBRATION_FRACTION of the training window, and calibrated with sigmoid scaling on the
latest CALIBRATION_FRACTION (CalibratedClassifierCV on the frozen model), so the scores are
probabilities again after the re-weighting and the calibration data is later than the fit data,
as the holdout is. One fitted model per prediction keeps live scoring to one tree walk.
Above MAX_FIT_ROWS events, the fit keeps every fraud and a seeded uniform sample of the
legitimate events: with balanced class weights the objective is the same in expectation, and
the calibration slice is never sampled, so the probabilities stay those of the real mix. Fixed
random_state: the same file gives the same model and the same metrics.

Metrics on the holdout (`holdout_metrics`):
- pr_auc: average precision (sklearn.metrics.average_precision_score).
- recall_at_1pct_fpr: the largest recall of any score threshold whose false-positive rate is
  <= 1 % (events with equal scores are flagged together).
- precision_at_100: the share of fraud among the 100 highest scores (ties broken by arrival
  order; all events when the holdout has fewer than 100).
- money_saved_minor: the analysts can review REVIEW_BUDGET (100) events of the holdout window.
  The model sends its 100 highest scores; the rules-only baseline sends the events its rule
  flags, in arrival order, until the budget is spent (it has no ranking). Money saved = fraud
  amount (integer minor units) among the model's reviewed events minus the fraud amount among
  the rule's. Negative means the rule did better. For payments in many currencies the three
  amounts are per currency ({"USD": ..., "EUR": ...}): minor units of different currencies are
  never added up.
  The rules (ml.feature_sets): PaySim's flag or the balance-drain rule; for payments the live
  API's velocity and geo rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.feature_sets import PAYSIM, FeatureSet, feature_matrix

RANDOM_STATE = 0
HOLDOUT_FRACTION = 0.3
TOP_K = 100
REVIEW_BUDGET = 100
TARGET_FPR = 0.01
CALIBRATION_FRACTION = 0.2
MAX_FIT_ROWS = 2_000_000
MODEL_NAMES = ("gbm", "logistic")


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame  # events with their features and labels
    holdout: pl.DataFrame
    cut: int  # the first period of the holdout
    feature_set: FeatureSet = PAYSIM

    @property
    def cut_step(self) -> int:
        return self.cut

    def window(self) -> dict:
        fs, train, holdout = self.feature_set, self.train, self.holdout
        first, last = ("step", "step") if fs is PAYSIM else ("created_at", "created_at")
        names = ("train_first_step", "train_last_step", "holdout_first_step",
                 "holdout_last_step") if fs is PAYSIM else (
            "train_from", "train_to", "holdout_from", "holdout_to")
        values = (train[first].min(), train[last].max(), holdout[first].min(),
                  holdout[last].max())
        return {**{name: _plain(value) for name, value in zip(names, values, strict=True)},
                "train_rows": train.height, "holdout_rows": holdout.height,
                "train_frauds": int(train[fs.label].sum()),
                "holdout_frauds": int(holdout[fs.label].sum())}


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else int(value)


def time_split(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION, *,
               feature_set: FeatureSet = PAYSIM) -> Split:
    """Features for every event, then train = periods before the cut, holdout = the rest."""
    fs = feature_set
    if not 0 < holdout_fraction < 1:
        raise ValueError("holdout_fraction must be between 0 and 1")
    if events.is_empty():
        raise ValueError("no events to train on")
    data = (fs.with_period(events).join(fs.compute(events), on=fs.key)
            .sort(*fs.order))
    cut = int(data[fs.period][int(data.height * (1 - holdout_fraction))])
    train = data.filter(pl.col(fs.period) < cut)
    holdout = data.filter(pl.col(fs.period) >= cut)
    for name, part in (("training", train), ("holdout", holdout)):
        if part[fs.label].n_unique() < 2:
            raise ValueError(f"the {name} window (cut at {fs.period} {cut}) needs both fraud "
                             "and legitimate events")
    return Split(train, holdout, cut, fs)


def matrix(frame: pl.DataFrame, feature_set: FeatureSet = PAYSIM) -> np.ndarray:
    return feature_matrix(frame, feature_set.features)


def build_model(name: str):
    """The uncalibrated model `name` (fit() calibrates it)."""
    if name == "gbm":
        return HistGradientBoostingClassifier(class_weight="balanced", random_state=RANDOM_STATE)
    if name == "logistic":
        return make_pipeline(StandardScaler(),
                             LogisticRegression(class_weight="balanced", max_iter=1000))
    raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")


def fit(name: str, train: pl.DataFrame, feature_set: FeatureSet = PAYSIM, *,
        max_fit_rows: int = MAX_FIT_ROWS):
    """Model `name` fitted on the earlier part of `train` (in arrival order) and calibrated on
    its latest CALIBRATION_FRACTION: a CalibratedClassifierCV holding one frozen model."""
    x, y = matrix(train, feature_set), train[feature_set.label].to_numpy()
    cut = calibration_cut(len(y))
    for part, labels in (("fit", y[:cut]), ("calibration", y[cut:])):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {part} part of the training window ({len(labels)} events) "
                             "needs both fraud and legitimate events")
    rows = fit_rows(y[:cut], max_fit_rows)
    model = build_model(name).fit(x[rows], y[rows])
    return CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(x[cut:], y[cut:])


def calibration_cut(n: int) -> int:
    """Training rows [0, cut) fit the model, [cut, n) calibrate it."""
    return int(n * (1 - CALIBRATION_FRACTION))


def fit_rows(y: np.ndarray, limit: int) -> np.ndarray:
    """Row indices to fit on: all of them up to `limit`; above it every fraud and a seeded
    uniform sample of the legitimate rows, `limit` in all, in their original order."""
    if len(y) <= limit:
        return np.arange(len(y))
    fraud, legit = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
    keep = max(0, limit - len(fraud))
    sampled = np.random.default_rng(RANDOM_STATE).choice(legit, size=keep, replace=False)
    return np.sort(np.concatenate([fraud, sampled]))


def scores(model, frame: pl.DataFrame, feature_set: FeatureSet = PAYSIM) -> np.ndarray:
    return model.predict_proba(matrix(frame, feature_set))[:, 1]


# --- metrics -------------------------------------------------------------------------------


def recall_at_fpr(y: np.ndarray, score: np.ndarray, max_fpr: float = TARGET_FPR) -> float:
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores; among equal scores the earlier event first."""
    return np.argsort(-score, kind="stable")[:k]


def precision_at_k(y: np.ndarray, score: np.ndarray, k: int = TOP_K) -> float:
    chosen = top_k(score, k)
    return float(y[chosen].mean()) if len(chosen) else 0.0


def rule_flags(frame: pl.DataFrame, feature_set: FeatureSet = PAYSIM) -> np.ndarray:
    return feature_set.rule(frame)


def fraud_caught_minor(frame: pl.DataFrame, reviewed: np.ndarray,
                       feature_set: FeatureSet = PAYSIM) -> int | dict[str, int]:
    """Exact sum of the fraud amounts (minor units) among the reviewed rows; per currency when
    the feature set has several."""
    fs = feature_set
    fraud = frame[reviewed].filter(pl.col(fs.label) == 1)
    if fs.currency is None:
        return int(fraud[fs.amount].sum())
    return {code: int(total) for code, total in fraud.group_by(fs.currency)
            .agg(pl.col(fs.amount).sum()).sort(fs.currency).iter_rows()}


def _minus(a: int | dict[str, int], b: int | dict[str, int]) -> int | dict[str, int]:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    if isinstance(a, dict) and isinstance(b, dict):
        return {code: a.get(code, 0) - b.get(code, 0) for code in sorted(set(a) | set(b))}
    raise TypeError("both amounts must be totals, or both per currency")


def holdout_metrics(holdout: pl.DataFrame, score: np.ndarray, budget: int = REVIEW_BUDGET, *,
                    feature_set: FeatureSet = PAYSIM) -> dict:
    """holdout must be in arrival order (as Split gives it), score aligned with its rows."""
    fs = feature_set
    y = holdout[fs.label].to_numpy()
    model_caught = fraud_caught_minor(holdout, top_k(score, budget), fs)
    rule_caught = fraud_caught_minor(holdout, np.flatnonzero(fs.rule(holdout))[:budget], fs)
    return {"pr_auc": float(average_precision_score(y, score)),
            "recall_at_1pct_fpr": recall_at_fpr(y, score),
            "precision_at_100": precision_at_k(y, score, TOP_K),
            "fraud_caught_minor": model_caught,
            "rule_fraud_caught_minor": rule_caught,
            "money_saved_minor": _minus(model_caught, rule_caught)}


def pr_curve(holdout: pl.DataFrame, score: np.ndarray, feature_set: FeatureSet = PAYSIM,
             points: int = 101) -> list[tuple[float, float]]:
    """(recall, precision) pairs of the holdout's precision-recall curve, thinned to about
    `points` for the model card."""
    precision, recall, _ = precision_recall_curve(holdout[feature_set.label].to_numpy(), score)
    step = max(1, len(recall) // points)
    return [(round(float(r), 4), round(float(p), 4))
            for r, p in zip(recall[::step], precision[::step], strict=True)]


def evaluate(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION, *,
             feature_set: FeatureSet = PAYSIM) -> dict:
    """Both models on one time-based split: the window, the rule baseline and each model's
    holdout metrics."""
    fs = feature_set
    split = time_split(events, holdout_fraction, feature_set=fs)
    holdout = split.holdout
    results = {name: holdout_metrics(holdout, scores(fit(name, split.train, fs), holdout, fs),
                                     feature_set=fs)
               for name in MODEL_NAMES}
    flags = fs.rule(holdout)
    y = holdout[fs.label].to_numpy()
    rule = {"flagged": int(flags.sum()),
            "precision": float(y[flags].mean()) if flags.any() else 0.0,
            "recall": float(flags[y == 1].mean())}
    return {"window": split.window(), "fraud_rate": float(y.mean()), "rule": rule,
            "review_budget": REVIEW_BUDGET, "models": results}


def holdout_fingerprint(holdout: pl.DataFrame, feature_set: FeatureSet = PAYSIM) -> str:
    """sha256 of the holdout's events and labels: two models are compared only on equal ones."""
    content = holdout.select(feature_set.identity)
    return hashlib.sha256(content.write_csv().encode()).hexdigest()


def train_candidate(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION, *,
                    feature_set: FeatureSet = PAYSIM, compare_with: dict | None = None):
    """Fit the gradient-boosted model (the one the registry keeps) and evaluate it, the
    baseline and any `compare_with` models ({version: fitted model}, e.g. the champion) on the
    same holdout. Returns (model, card fields for ml.registry.register)."""
    from ml import drift

    fs = feature_set
    split = time_split(events, holdout_fraction, feature_set=fs)
    model = fit("gbm", split.train, fs)
    baseline = fit("logistic", split.train, fs)
    holdout_scores = scores(model, split.holdout, fs)
    return model, {
        "model": "gbm",
        "feature_set": fs.name,
        "features": list(fs.features),
        "window": split.window(),
        "holdout_fraction": holdout_fraction,
        "fit": _fit_summary(split.train[fs.label].to_numpy()),
        "holdout_sha256": holdout_fingerprint(split.holdout, fs),
        "metrics": holdout_metrics(split.holdout, holdout_scores, feature_set=fs),
        "baseline_metrics": {"logistic": holdout_metrics(
            split.holdout, scores(baseline, split.holdout, fs), feature_set=fs)},
        "compared": {version: holdout_metrics(split.holdout, scores(other, split.holdout, fs),
                                              feature_set=fs)
                     for version, other in (compare_with or {}).items()},
        "pr_curve": pr_curve(split.holdout, holdout_scores, fs),
        "reference": reference_values(split.train, fs),
        "drift_reference": drift.reference(split.train, list(fs.features)),
        "random_state": RANDOM_STATE,
    }


def _fit_summary(y: np.ndarray) -> dict:
    cut = calibration_cut(len(y))
    rows = fit_rows(y[:cut], MAX_FIT_ROWS)
    return {"fit_rows": len(rows), "fit_frauds": int(y[rows].sum()),
            "legit_sampled": cut > MAX_FIT_ROWS, "calibration_rows": len(y) - cut,
            "calibration": "sigmoid"}


def reference_values(train: pl.DataFrame, feature_set: FeatureSet = PAYSIM) -> dict[str, float]:
    """Each feature's median over the training window: the "ordinary" value that reasons are
    measured against (ml.scoring) and the drift check's reference."""
    return {name: float(cast(float, train[name].median())) for name in feature_set.features}
