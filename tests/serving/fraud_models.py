"""Tiny picklable fraud "models" whose score the test chooses, for the live-scoring tests."""

from __future__ import annotations

import numpy as np

from ml.payment_features import FEATURES

AMOUNT = FEATURES.index("log_amount_usd")


class ScoreByAmount:
    """probability = the payment's amount in US dollars / 100 (so 70.00 USD scores 70),
    capped below 1; the other features do not matter."""

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        p = np.minimum(0.999, np.round(np.expm1(rows[:, AMOUNT]), 6) / 100)
        return np.column_stack([1 - p, p])


class ScoreByHistory:
    """A score that only the payment's history moves: 20 per earlier payment of the customer in
    the last hour, 10 per earlier payment of the merchant in the last hour, plus 1 when the
    customer's previous payment was on another device; every history feature the live summary
    feeds changes it. Capped below 1."""

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        points = (20 * rows[:, FEATURES.index("customer_count_1h")]
                  + 10 * rows[:, FEATURES.index("merchant_payments_1h")]
                  + rows[:, FEATURES.index("new_device")])
        p = np.minimum(0.999, points / 100)
        return np.column_stack([1 - p, p])


class Constant:
    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(rows), 1 - self.p), np.full(len(rows), self.p)])


def card(version_metrics: float, reference: dict | None = None) -> dict:
    return {"model": "test", "feature_set": "payments", "features": list(FEATURES),
            "holdout_sha256": "h", "metrics": {"pr_auc": version_metrics},
            "reference": reference or {name: 0.0 for name in FEATURES}}
