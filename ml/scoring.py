"""Scores and reasons from a fitted model: one rule for batch scoring and the live API.

Score: the model's fraud probability on a 0-99 scale, floor(100 * p) capped at 99, so 75 means
"at least 75 %".

Reasons: the features that pushed this payment's probability up the most. A feature's
contribution is p(payment) - p(payment with that feature set to its training median, the card's
`reference`); the top REASONS positive ones are named, largest first, as "ml:<feature>". It
costs one extra prediction row per feature, so batch scoring computes reasons only for scores at
or above the review threshold, and so does the live API (`score_one`: the payment's row, then,
for a review or a block, one probe per feature that differs from its reference).
"""

from __future__ import annotations

import numpy as np

REASONS = 3


def to_score(probability: np.ndarray) -> np.ndarray:
    return np.minimum(99, np.floor(probability * 100)).astype(np.int64)


def reasons(model, rows: np.ndarray, features: list[str], reference: dict[str, float],
            base: np.ndarray | None = None, top: int = REASONS) -> list[list[str]]:
    """The top contributions of each row of `rows` (already in model column order)."""
    if len(rows) == 0:
        return []
    neutral = _neutral(rows, features, reference)
    if base is None:
        base = model.predict_proba(rows)[:, 1]
    return _top(base, model.predict_proba(neutral)[:, 1], features, top)


def score_one(model, row: np.ndarray, features: list[str], reference: dict[str, float],
              reasons_from: int = 0) -> tuple[int, list[str]]:
    """The live path: one row's score, and its reasons when the score is >= reasons_from (as
    batch scoring gives them). The reasons' probes go in a second predict call, only for the
    features whose value differs from the reference: the others' contribution is 0 by
    definition (the probe would be the row itself), and a reason needs a positive one."""
    probability = model.predict_proba(row)[:, 1]
    score = int(to_score(probability)[0])
    if score < reasons_from:
        return score, []
    ref = np.array([reference[name] for name in features])
    differs = np.flatnonzero(row[0] != ref)
    probes = np.repeat(row, len(differs), axis=0)
    probes[np.arange(len(differs)), differs] = ref[differs]
    lowered = np.full(len(features), probability[0])  # unprobed: contribution exactly 0
    if len(differs):
        lowered[differs] = model.predict_proba(probes)[:, 1]
    return score, _top(probability, lowered, features, REASONS)[0]


def _neutral(rows: np.ndarray, features: list[str], reference: dict[str, float]) -> np.ndarray:
    """Row i * k + j: row i with feature j replaced by its reference value."""
    n, k = rows.shape
    neutral = np.repeat(rows, k, axis=0)
    diagonal = np.arange(k)  # row i's k copies as a k x k block: set the block's diagonal
    neutral.reshape(n, k, k)[:, diagonal, diagonal] = [reference[name] for name in features]
    return neutral


def _top(base: np.ndarray, lowered: np.ndarray, features: list[str],
         top: int) -> list[list[str]]:
    n, k = len(base), len(features)
    contribution = base[:, None] - lowered.reshape(n, k)
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :top]
    raised = np.take_along_axis(contribution, order, axis=1) > 0
    names = [f"ml:{name}" for name in features]
    return [[names[j] for j, up in zip(row, ups, strict=True) if up]
            for row, ups in zip(order.tolist(), raised.tolist(), strict=True)]
