"""Batch scoring: every payment in the warehouse scored by the payments champion.

The same features (ml.payment_features.batch_feature_rows over all payments, so each sees its
own history), the same model and the same score and reason rules (ml.scoring) as the live API. The
decision follows the API's thresholds (CLEARHOUSE_ML_REVIEW_SCORE / _BLOCK_SCORE). The result
replaces analytics.fct_fraud_scores (ml.warehouse), and the latest day's features are compared
with the champion's training window (ml.drift).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from warehouse.settings import Settings


@dataclass
class Outcome:
    rows: int = 0
    version: str | None = None
    review: int = 0
    block: int = 0
    psi: dict[str, float] | None = None
    drift_day: str = ""
    drift_rows: int = 0  # the drift day's payments
    note: str = ""
    top: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        if self.version is None:
            return f"no fraud scores: {self.note}"
        return (f"{self.rows} payments scored by {self.version}: {self.review} to review, "
                f"{self.block} to block")

    def markdown(self) -> str:
        lines = [self.summary(), ""]
        if self.top:
            lines += ["Highest scores, one row per score and reasons (a burst of one pattern is "
                      "one row):", "",
                      "| score | decision | reasons | payments | e.g. payment |",
                      "|---|---|---|---|---|"]
            lines += [f"| {r['score']} | {r['decision']} | {r['reasons']} | {r['payments']} | "
                      f"{r['example']} |" for r in self.top]
        return "\n".join(lines) + "\n"


def top_patterns(scores: pl.DataFrame, n: int = 10) -> list[dict]:
    """The n highest (score, decision, reasons) with how many payments share each and the
    first payment id: the risk team sees n patterns, not n rows of one card-testing burst."""
    return (scores.group_by("score", "decision", "reasons")
            .agg(payments=pl.len(), example=pl.col("payment_id").min())
            .sort(["score", "payments", "example"], descending=[True, True, False])
            .head(n).to_dicts())


def score_frame(payments: pl.DataFrame, champion, settings: Settings,
                scored_at: datetime) -> tuple[pl.DataFrame, np.ndarray]:
    """(scores in SCORES_COLUMNS, every payment's FEATURES as rows) for payments in the event
    layout, in their order."""
    from ml.payment_features import FEATURES, batch_feature_rows
    from ml.scoring import score_rows

    _, rows = batch_feature_rows(payments)
    matrix = rows if tuple(champion.features) == FEATURES else np.ascontiguousarray(
        rows[:, [FEATURES.index(name) for name in champion.features]])
    score, reasons = score_rows(champion.model, matrix, champion.features, champion.reference,
                                reasons_from=settings.ml_review_score)
    decision = np.where(score >= settings.ml_block_score, "block",
                        np.where(score >= settings.ml_review_score, "review", "approve"))
    scores = payments.select("payment_id", "merchant_id", "created_at").with_columns(
        score=pl.Series(score, dtype=pl.Int32),
        decision=pl.Series(decision, dtype=pl.Utf8),
        reasons=pl.Series([",".join(r) for r in reasons], dtype=pl.Utf8),
        model_version=pl.lit(champion.version),
        scored_at=pl.lit(scored_at).dt.cast_time_unit("us"))
    return scores, rows


def score_warehouse(settings: Settings, now: datetime | None = None) -> Outcome:
    from ml.compiled import compiled_or_model
    from ml.drift import MIN_ROWS, feature_psi, latest_day
    from ml.registry import Registry
    from ml.warehouse import NO_SCORES, open_warehouse, read_payments, write_scores
    from serving.fraud import Champion

    registry = Registry(settings, family="payments")
    version = registry.champion()
    writer = open_warehouse(settings)
    try:
        if version is None:
            write_scores(writer, NO_SCORES)
            return Outcome(note="no champion model yet (clearhouse ml retrain, or the "
                           "fraud_training job)")
        card = registry.card(version)
        # compiled as the API serves it: the same probabilities, its trees walked in machine code
        champion = Champion(version, compiled_or_model(registry.load(version), card),
                            card["features"], card["reference"])
        payments = read_payments(writer)
        scores, rows = score_frame(payments, champion, settings, now or datetime.now(UTC))
        write_scores(writer, scores)
    finally:
        writer.close()
    outcome = Outcome(rows=scores.height, version=version,
                      review=int((scores["decision"] == "review").sum()),
                      block=int((scores["decision"] == "block").sum()),
                      top=top_patterns(scores))
    days = payments["created_at"].dt.date()
    found = latest_day(days) if payments.height else None
    if "drift_reference" not in card:
        outcome.note = "no drift reference in the champion's card"
    elif found is None:
        outcome.note = f"no day with {MIN_ROWS} payments yet to compare with the training window"
    else:
        from ml.payment_features import FEATURES

        day, outcome.drift_rows = found
        latest = pl.DataFrame(rows[(days == day).to_numpy()], schema=list(FEATURES),
                              orient="row")
        outcome.psi, outcome.drift_day = feature_psi(card["drift_reference"], latest), str(day)
    return outcome
