"""The demo's fraud act: seed a labelled history, train and promote through Dagster, and after
the day report the planted frauds that are known by now.

1. Before the day: 30 simulated days before it (ml.simulate, the same planner and fraud patterns
   as the live day) become the archive HOME/ml/history/demo/ - the labelled history a platform
   starts its first model from.
2. The fraud_training job (orchestration/run.py) trains on what is known at the start of the
   day, registers the model with its card and promotes it (the first one becomes champion; a
   re-run with the same data finds the champion already trained on it and trains nothing).
3. The API, started afterwards, scores every payment of the day live with the champion.
4. After the day: the planted frauds reported by now go to landing/fraud_reports/ as a fraud
   report file (ingested by the pipeline); most arrive days later, as in life.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from serving.risk import KYC_LIMIT_REASONS
from warehouse.models import Payment
from warehouse.settings import Settings

HISTORY_DAYS = 30


@dataclass
class FraudAct:
    version: str = ""
    decision: str = ""
    pr_auc: float = 0.0
    trained: bool = False
    planted: int = 0
    flagged: int = 0  # planted payments the live check sent to review or rejected
    scored: int = 0  # payments of the day with a model score
    reviewed: int = 0
    rejected: int = 0
    over_limit: int = 0  # of the rejected, those a KYC limit refused (not a fraud signal)
    reported: int = 0  # reports written so far (the rest come later)


def train_before_the_day(settings: Settings, day: date, payments_per_day: int,
                         seed: int) -> FraudAct:
    from ml.registry import Registry
    from ml.simulate import history, write_history
    from orchestration.run import run_fraud_training

    archive = settings.home_dir / "ml" / "history" / "demo"
    if not (archive / "events.parquet").is_file():
        events, labels = history(day - timedelta(days=HISTORY_DAYS), HISTORY_DAYS,
                                 payments_per_day, seed=seed)
        write_history(archive, events, labels)
    known_at = datetime.combine(day, datetime.min.time(), UTC)
    registry = Registry(settings, family="payments")
    champion = registry.champion()
    if champion and registry.card(champion).get("data", {}).get("known_at") == known_at.isoformat():
        card = registry.card(champion)
        return FraudAct(version=champion, decision="champion already trained on this data",
                        pr_auc=card["metrics"]["pr_auc"])
    meta = run_fraud_training(settings, known_at=known_at.isoformat())
    return FraudAct(version=meta["version"], decision=meta["decision"], pr_auc=meta["pr_auc"],
                    trained=True)


def after_the_day(act: FraudAct, settings: Settings, engine: Engine, day: date,
                  planted: list[tuple[str, str, datetime | None]], now: datetime) -> FraudAct:
    from ingest.files.formats.fraud_reports import write_fraud_reports

    start = datetime.combine(day, datetime.min.time(), UTC)
    ids = {payment_id: (kind, reported_at) for payment_id, kind, reported_at in planted}
    reports = []
    with Session(engine) as session:
        for p in session.scalars(select(Payment).where(
                Payment.created_at >= start, Payment.created_at < start + timedelta(days=1))):
            act.scored += p.risk_score is not None
            act.reviewed += p.risk_decision == "review"
            act.rejected += p.risk_decision == "reject"
            act.over_limit += p.risk_decision == "reject" and any(
                reason.startswith(KYC_LIMIT_REASONS) for reason in p.risk_reasons or ())
            if p.id not in ids:
                continue
            act.planted += 1
            act.flagged += p.risk_decision in ("review", "reject")
            kind, reported_at = ids[p.id]
            if reported_at is not None and reported_at <= now:
                reports.append({"report_id": f"fr_{p.id}", "payment_id": p.id,
                                "merchant_id": p.merchant_id, "kind": kind,
                                "source": "chargeback", "reported_at": reported_at,
                                "amount_minor": int(p.amount_minor), "currency": p.currency})
    write_fraud_reports(settings.landing_dir, now.date(), reports)
    act.reported = len(reports)
    return act
