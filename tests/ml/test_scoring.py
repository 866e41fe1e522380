"""Scores and reasons: the live path (one row, probes only where the row differs from the
reference) agrees with the batch path (a probe for every feature)."""

from __future__ import annotations

import numpy as np

from ml.compiled import compile_model
from ml.feature_sets import PAYSIM
from ml.scoring import reasons, score_one, to_score
from ml.train import matrix, reference_values


def test_live_score_and_reasons_equal_batch_ones(split, gbm):
    features = list(PAYSIM.features)
    reference = reference_values(split.train)
    rows = matrix(split.holdout)[:300]
    # a few rows equal to the reference in some or all features (no probe needed there)
    ref = np.array([reference[name] for name in features])
    rows[0] = ref
    rows[1, : len(features) // 2] = ref[: len(features) // 2]
    # batch scoring's rules (ml.batch): to_score, and a probe for every feature
    batch_scores = to_score(gbm.predict_proba(rows)[:, 1])
    batch_reasons = reasons(gbm, rows, features, reference)
    compiled = compile_model(gbm, rows[:5])
    for model in (gbm, compiled):
        live = [score_one(model, row[None, :], features, reference) for row in rows]
        assert [s for s, _ in live] == batch_scores.tolist()
        assert [why for _, why in live] == batch_reasons
    # reasons from a threshold on, as batch scoring gives them
    threshold = int(np.percentile(batch_scores, 90))
    batch_high = [why if score >= threshold else []
                  for score, why in zip(batch_scores, batch_reasons, strict=True)]
    live_high = [score_one(compiled, row[None, :], features, reference, threshold)[1]
                 for row in rows]
    assert live_high == batch_high and any(live_high) and not all(live_high)
    assert batch_reasons[0] == []  # the reference row itself: nothing raised its score
    assert any(batch_reasons)  # and the check is not vacuous


def test_score_is_the_floor_of_the_percentage_capped_at_99():
    p = np.array([0.0, 0.0099, 0.01, 0.649999, 0.65, 0.75, 0.999, 1.0])
    assert to_score(p).tolist() == [0, 0, 1, 64, 65, 75, 99, 99]


def test_the_summary_shows_patterns_not_one_burst_ten_times():
    import polars as pl

    from ml.batch import Outcome, top_patterns

    burst = [(f"pay_b{i:02d}", 83, "block", "ml:card_count_1h") for i in range(12)]
    others = [("pay_x", 83, "block", "ml:km_from_customer_prev"),
              ("pay_y", 70, "review", "ml:new_device"), ("pay_z", 10, "approve", "")]
    scores = pl.DataFrame(burst + others, schema=["payment_id", "score", "decision", "reasons"],
                          orient="row")
    top = top_patterns(scores, n=3)
    assert [(t["score"], t["reasons"], t["payments"], t["example"]) for t in top] == [
        (83, "ml:card_count_1h", 12, "pay_b00"), (83, "ml:km_from_customer_prev", 1, "pay_x"),
        (70, "ml:new_device", 1, "pay_y")]
    page = Outcome(rows=15, version="v0001", review=1, block=13, top=top).markdown()
    assert "| 83 | block | ml:card_count_1h | 12 | pay_b00 |" in page
