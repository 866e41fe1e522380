"""Fraud model assets: retraining with a model card, batch scores, and the feature-drift check.

- fraud_model (job fraud_training, weekly): retrain on payments and fraud reports known now,
  register, promote when the challenger beats the champion on the same holdout. Its metadata is
  the model card (markdown with the PR curve) the risk team reads in the UI.
- fct_fraud_scores (in the pipeline, after the marts are published, so it never competes with
  dbt for the DuckDB file): every payment scored 0-99 by the champion, with reasons for the
  ones at or above the review score; and the asset check fraud_feature_drift: PSI of each
  feature between the champion's training window and the latest day (ml/drift.py).
"""

import base64
from datetime import UTC, date, datetime

import dagster as dg

from ml.drift import MAJOR, MIN_ROWS, MODERATE
from orchestration.defs.ledger.assets import RAW_KEYS
from orchestration.defs.serving.assets import published_statements
from warehouse.settings import get_settings


class FraudTrainingConfig(dg.Config):
    known_at: str | None = None  # ISO day or timestamp (UTC); default: now
    promote: bool = True


def _instant(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dg.asset(group_name="fraud", deps=[RAW_KEYS["payments"], dg.AssetKey(["raw", "fraud_reports"])],
          kinds={"scikitlearn"})
def fraud_model(context: dg.AssetExecutionContext,
                config: FraudTrainingConfig) -> dg.MaterializeResult:
    """Retrain the payments fraud model on labels known now; promote it if it is better."""
    from ml.retrain import retrain

    try:
        result = retrain(get_settings(), _instant(config.known_at), promote=config.promote)
    except ValueError as exc:  # the data cannot train a model (none, or one class): say why
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"fraud model {result.version}: {result.decision}")
    png = result.pr_curve_path.read_bytes()
    card_md = (result.card_markdown + "\n![precision-recall curve](data:image/png;base64,"
               + base64.b64encode(png).decode() + ")\n")
    metrics = result.card["metrics"]
    return dg.MaterializeResult(metadata={
        "version": result.version,
        "champion": result.champion or "",
        "promoted": result.promoted,
        "decision": result.decision,
        "pr_auc": dg.MetadataValue.float(metrics["pr_auc"]),
        "recall_at_1pct_fpr": dg.MetadataValue.float(metrics["recall_at_1pct_fpr"]),
        "precision_at_100": dg.MetadataValue.float(metrics["precision_at_100"]),
        "training_rows": result.card["data"]["rows"],
        "frauds_known": result.card["data"]["frauds_known"],
        "model_card": dg.MetadataValue.md(card_md),
        "pr_curve": dg.MetadataValue.path(str(result.pr_curve_path)),
        "card_json": dg.MetadataValue.path(str(result.pr_curve_path.parent / "card.json")),
    })


@dg.asset(group_name="fraud", deps=[RAW_KEYS["payments"], published_statements],
          kinds={"scikitlearn", "sql"},
          check_specs=[dg.AssetCheckSpec("fraud_feature_drift", asset="fct_fraud_scores",
                                         description="PSI of each feature: champion's training "
                                         f"window vs the latest day with {MIN_ROWS} payments or "
                                         f"more (warn > {MODERATE}, fail > {MAJOR})")])
def fct_fraud_scores(context: dg.AssetExecutionContext):
    """analytics.fct_fraud_scores: every payment scored by the champion (0-99, decision,
    reasons)."""
    from ml import batch

    outcome = batch.score_warehouse(get_settings())
    context.log.info(outcome.summary())
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": outcome.rows,
        "model_version": outcome.version or "none",
        "review": outcome.review, "block": outcome.block,
        "summary": dg.MetadataValue.md(outcome.markdown()),
    })
    if outcome.psi is None:
        yield dg.AssetCheckResult(check_name="fraud_feature_drift", passed=True,
                                  description=f"not compared: {outcome.note}",
                                  metadata={"note": outcome.note})
        return
    worst = max(outcome.psi.values())
    from ml.drift import MAJOR, MODERATE

    table = "| feature | PSI |\n|---|---|\n" + "\n".join(
        f"| {name} | {value:.4f} |" for name, value in
        sorted(outcome.psi.items(), key=lambda kv: -kv[1]))
    shifted = [n for n, v in outcome.psi.items() if v > MODERATE]
    yield dg.AssetCheckResult(
        check_name="fraud_feature_drift", passed=worst <= MAJOR,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"max PSI {worst:.3f} on {outcome.drift_day} ({outcome.drift_rows} "
                     f"payments): {len(shifted)} of {len(outcome.psi)} features shifted "
                     f"(PSI > {MODERATE})"),
        metadata={"day": outcome.drift_day, "rows": outcome.drift_rows,
                  "max_psi": dg.MetadataValue.float(worst),
                  "shifted": shifted,
                  "psi": dg.MetadataValue.md(table)})


fraud_training_job = dg.define_asset_job(
    "fraud_training", selection=dg.AssetSelection.assets(fraud_model),
    description="Retrain the fraud model on the labels known now; promote it if it is better.")
fraud_training_schedule = dg.ScheduleDefinition(
    job=fraud_training_job, cron_schedule="0 3 * * 1", execution_timezone="UTC")

FRAUD_ASSETS = [fraud_model, fct_fraud_scores]
