"""Batch scoring: every payment in the warehouse scored by the payments champion.

The same features (ml.payment_features.batch_feature_blocks over all payments, so each sees its
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


@dataclass(frozen=True)
class Scored:
    """score_payments' answer, each in the input's order."""

    payment_id: pl.Series
    score: np.ndarray  # 0-99 (ml.scoring.to_score)
    explained: np.ndarray  # the positions of the scores >= reasons_from, ascending ...
    reasons: list[list[str]]  # ... and their reasons (a list per payment would be a million
    # Python objects for the garbage collector to walk, ~0.8 s at a million rows)
    kept: np.ndarray  # the FEATURES rows of the payments `keep` asked for


def score_payments(payments: pl.DataFrame, champion, reasons_from: int,
                   keep: np.ndarray | None = None, block_rows: int | None = None) -> Scored:
    """Every payment (event layout) scored by `champion` (serving.fraud.Champion): its features
    (ml.payment_features.batch_feature_blocks) scored a block at a time on the thread that wrote
    them, while they are in cache - the whole matrix is never built. A compiled model walks
    each block in machine code on that thread (predict_proba(here=True)); a model that did not
    compile is scikit-learn's, block by block. The block's rows scoring >= reasons_from are
    explained there too (ml.scoring.reasons: a probe row per feature, as the live API explains
    a review - 25 probes each, so a few MB of fresh memory per block instead of hundreds for
    all); the rows `keep` (a bool per payment, input order) marks are copied out - the drift
    check's day."""
    from ml.compiled import CompiledModel
    from ml.payment_features import BLOCK_ROWS, FEATURES, batch_feature_blocks
    from ml.scoring import reasons, to_score

    features = list(champion.features)
    columns = None if tuple(features) == FEATURES else [FEATURES.index(f) for f in features]
    model = (_OnThisThread(champion.model) if isinstance(champion.model, CompiledModel)
             else champion.model)
    score = np.empty(payments.height, dtype=np.int64)
    explained: list[tuple[np.ndarray, list[list[str]]]] = []  # (positions, their reasons)
    kept: list[tuple[np.ndarray, np.ndarray]] = []  # (positions, FEATURES rows)

    def consume(rows: np.ndarray, positions: np.ndarray) -> None:
        x = rows if columns is None else rows[:, columns]
        p = model.predict_proba(x)[:, 1]
        score[positions] = block_score = to_score(p)
        high = np.flatnonzero(block_score >= reasons_from)
        # list.append is atomic: the blocks' threads share the lists
        if len(high):
            explained.append((positions[high], reasons(model, x[high], features,
                                                       champion.reference, p[high])))
        if keep is not None and (mine := np.flatnonzero(keep[positions])).size:
            kept.append((positions[mine], rows[mine]))

    ids = batch_feature_blocks(payments, consume, block_rows or BLOCK_ROWS)
    at, order = _input_order([positions for positions, _ in explained])
    found = [why for _, part in explained for why in part]
    _, kept_order = _input_order([positions for positions, _ in kept])
    kept_rows = (np.concatenate([rows for _, rows in kept])[kept_order] if kept
                 else np.zeros((0, len(FEATURES))))
    return Scored(ids, score, at, [found[i] for i in order.tolist()], kept_rows)


class _OnThisThread:
    """A compiled model as scikit-learn's interface, each call walked on the calling thread."""

    def __init__(self, model):
        self.model = model

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x, here=True)


def _input_order(positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(the blocks' positions joined and sorted, the order that sorts them)."""
    if not positions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    joined = np.concatenate(positions)
    order = np.argsort(joined, kind="stable")
    return joined[order], order


def score_frame(payments: pl.DataFrame, champion, settings: Settings, scored_at: datetime,
                keep: np.ndarray | None = None) -> tuple[pl.DataFrame, np.ndarray]:
    """(scores in SCORES_COLUMNS, the FEATURES rows of the payments `keep` marks) for payments
    in the event layout, in their order."""
    scored = score_payments(payments, champion, settings.ml_review_score, keep)
    score = pl.col("score")
    scores = payments.select("payment_id", "merchant_id", "created_at").with_columns(
        score=pl.Series(scored.score, dtype=pl.Int32)).with_columns(
        decision=pl.when(score >= settings.ml_block_score).then(pl.lit("block"))
        .when(score >= settings.ml_review_score).then(pl.lit("review"))
        .otherwise(pl.lit("approve")),
        reasons=pl.repeat("", payments.height, dtype=pl.Utf8, eager=True).scatter(
            scored.explained, [",".join(r) for r in scored.reasons]),
        model_version=pl.lit(champion.version),
        scored_at=pl.lit(scored_at).dt.cast_time_unit("us"))
    return scores, scored.kept


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
        days = payments["created_at"].dt.date()
        found = latest_day(days) if payments.height else None
        # the drift check's day: its rows are kept while scoring
        keep = (days == found[0]).to_numpy() if found else None
        scores, kept = score_frame(payments, champion, settings, now or datetime.now(UTC), keep)
        write_scores(writer, scores)
    finally:
        writer.close()
    outcome = Outcome(rows=scores.height, version=version,
                      review=int((scores["decision"] == "review").sum()),
                      block=int((scores["decision"] == "block").sum()),
                      top=top_patterns(scores))
    if "drift_reference" not in card:
        outcome.note = "no drift reference in the champion's card"
    elif found is None:
        outcome.note = f"no day with {MIN_ROWS} payments yet to compare with the training window"
    else:
        from ml.payment_features import FEATURES

        day, outcome.drift_rows = found
        latest = pl.DataFrame(kept, schema=list(FEATURES), orient="row")
        outcome.psi, outcome.drift_day = feature_psi(card["drift_reference"], latest), str(day)
    return outcome
