"""Train and evaluate the fraud models on a time-based split.

Split. Events are ordered by (step, seq). The holdout is the last `holdout_fraction` of the
events, cut at a step boundary: train on steps < cut_step, evaluate on steps >= cut_step; nothing
is shuffled across time. Features are computed once over the whole file: they only look back, so
a holdout event's features use the history that a live scorer would have had.

Models. A gradient-boosted model (HistGradientBoostingClassifier) and a logistic-regression
baseline (standardised inputs). Both weight the classes inversely to their frequency
(class_weight="balanced"), because fraud is rare, and both are calibrated with sigmoid scaling
(CalibratedClassifierCV) on time-ordered folds of the training window (TimeSeriesSplit), so the
scores are probabilities again after the re-weighting. Fixed random_state: the same file gives
the same model and the same metrics.

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
  the rule's. Negative means the rule did better.
  The rule (`rule_flags`): PaySim's own isFlaggedFraud, or a TRANSFER/CASH_OUT that moves the
  origin's whole balance (amount >= oldbalanceOrg > 0), the classic drain rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_curve
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.features import FEATURES, batch_features

RANDOM_STATE = 0
HOLDOUT_FRACTION = 0.3
TOP_K = 100
REVIEW_BUDGET = 100
TARGET_FPR = 0.01
CALIBRATION_FOLDS = 3
MODEL_NAMES = ("gbm", "logistic")


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame  # events with their features and labels
    holdout: pl.DataFrame
    cut_step: int

    def window(self) -> dict[str, int]:
        return {"train_first_step": int(self.train["step"].min()),
                "train_last_step": int(self.train["step"].max()),
                "holdout_first_step": int(self.holdout["step"].min()),
                "holdout_last_step": int(self.holdout["step"].max()),
                "train_rows": self.train.height, "holdout_rows": self.holdout.height,
                "train_frauds": int(self.train["isFraud"].sum()),
                "holdout_frauds": int(self.holdout["isFraud"].sum())}


def time_split(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION) -> Split:
    """Features for every event, then train = steps before the cut, holdout = the rest."""
    if not 0 < holdout_fraction < 1:
        raise ValueError("holdout_fraction must be between 0 and 1")
    data = events.join(batch_features(events), on="seq").sort("step", "seq")
    cut_step = int(data["step"][int(data.height * (1 - holdout_fraction))])
    train, holdout = data.filter(pl.col("step") < cut_step), data.filter(pl.col("step") >= cut_step)
    for name, part in (("training", train), ("holdout", holdout)):
        if part["isFraud"].n_unique() < 2:
            raise ValueError(f"the {name} window (cut at step {cut_step}) needs both fraud and "
                             "legitimate events")
    return Split(train, holdout, cut_step)


def matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(FEATURES).to_numpy().astype(np.float64)


def build_model(name: str):
    if name == "gbm":
        base = HistGradientBoostingClassifier(class_weight="balanced", random_state=RANDOM_STATE)
    elif name == "logistic":
        base = make_pipeline(StandardScaler(),
                             LogisticRegression(class_weight="balanced", max_iter=1000))
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return CalibratedClassifierCV(base, method="sigmoid",
                                  cv=TimeSeriesSplit(n_splits=CALIBRATION_FOLDS))


def fit(name: str, train: pl.DataFrame):
    return build_model(name).fit(matrix(train), train["isFraud"].to_numpy())


def scores(model, frame: pl.DataFrame) -> np.ndarray:
    return model.predict_proba(matrix(frame))[:, 1]


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


def rule_flags(frame: pl.DataFrame) -> np.ndarray:
    drains = ((pl.col("type").is_in(["TRANSFER", "CASH_OUT"])) & (pl.col("oldbalanceOrg") > 0)
              & (pl.col("amount") >= pl.col("oldbalanceOrg")))
    return frame.select((pl.col("isFlaggedFraud") == 1) | drains).to_series().to_numpy()


def fraud_caught_minor(frame: pl.DataFrame, reviewed: np.ndarray) -> int:
    """Exact sum of the fraud amounts (minor units) among the reviewed rows."""
    return int(frame[reviewed].filter(pl.col("isFraud") == 1)["amount"].sum())


def holdout_metrics(holdout: pl.DataFrame, score: np.ndarray,
                    budget: int = REVIEW_BUDGET) -> dict[str, float | int]:
    """holdout must be in arrival order (as Split gives it), score aligned with its rows."""
    y = holdout["isFraud"].to_numpy()
    model_caught = fraud_caught_minor(holdout, top_k(score, budget))
    rule_caught = fraud_caught_minor(holdout, np.flatnonzero(rule_flags(holdout))[:budget])
    return {"pr_auc": float(average_precision_score(y, score)),
            "recall_at_1pct_fpr": recall_at_fpr(y, score),
            "precision_at_100": precision_at_k(y, score, TOP_K),
            "fraud_caught_minor": model_caught,
            "rule_fraud_caught_minor": rule_caught,
            "money_saved_minor": model_caught - rule_caught}


def evaluate(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION) -> dict:
    """Both models on one time-based split: the window, the rule baseline and each model's
    holdout metrics."""
    split = time_split(events, holdout_fraction)
    holdout = split.holdout
    results = {name: holdout_metrics(holdout, scores(fit(name, split.train), holdout))
               for name in MODEL_NAMES}
    flags = rule_flags(holdout)
    y = holdout["isFraud"].to_numpy()
    rule = {"flagged": int(flags.sum()),
            "precision": float(y[flags].mean()) if flags.any() else 0.0,
            "recall": float(flags[y == 1].mean())}
    return {"window": split.window(), "fraud_rate": float(y.mean()), "rule": rule,
            "review_budget": REVIEW_BUDGET, "models": results}


def holdout_fingerprint(holdout: pl.DataFrame) -> str:
    """sha256 of the holdout's events and labels: two models are compared only on equal ones."""
    content = holdout.select("step", "type", "amount", "nameOrig", "nameDest", "isFraud")
    return hashlib.sha256(content.write_csv().encode()).hexdigest()


def train_candidate(events: pl.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION):
    """Fit the gradient-boosted model (the one the registry keeps) and evaluate it and the
    baseline on the holdout. Returns (model, card fields for ml.registry.register)."""
    split = time_split(events, holdout_fraction)
    model = fit("gbm", split.train)
    baseline = fit("logistic", split.train)
    return model, {
        "model": "gbm",
        "window": split.window(),
        "holdout_fraction": holdout_fraction,
        "holdout_sha256": holdout_fingerprint(split.holdout),
        "metrics": holdout_metrics(split.holdout, scores(model, split.holdout)),
        "baseline_metrics": {"logistic": holdout_metrics(split.holdout,
                                                         scores(baseline, split.holdout))},
        "random_state": RANDOM_STATE,
    }
