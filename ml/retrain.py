"""Retrain the payments fraud model on what is known at a cut-off, and register it.

Training data (`training_data`): payments created before `known_at` - from the warehouse
(raw.payments, extracted from the API) and from labelled history archives under
HOME/ml/history/<name>/ (events.parquet + labels.parquet, the layout of ml.simulate; the demo
seeds one, a real deployment imports its own) - labelled with the fraud reports known at
`known_at` (raw.fraud_reports and the archives' labels with reported_at <= known_at). A fraud
reported later counts as legitimate here, exactly as it did in production at that time.

`retrain` trains the challenger, scores the current champion on the challenger's holdout (so the
promotion rule compares like with like), registers the challenger with its card, markdown card
and PR-curve image, and promotes it when asked and when the rule allows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

import polars as pl

from ml import card as model_card
from ml.feature_sets import PAYMENTS, label_payments
from ml.registry import PromotionRefused, Registry
from warehouse.settings import Settings


class NothingToTrainOn(ValueError):
    """No payment was created before the cut-off: there is nothing labelled to train on."""


@dataclass
class Retrained:
    version: str
    card: dict
    card_markdown: str
    pr_curve_path: Path
    promoted: bool
    decision: str  # what the promotion rule said
    champion: str | None


def history_dirs(settings: Settings) -> list[Path]:
    root = settings.home_dir / "ml" / "history"
    return sorted(p for p in root.glob("*") if (p / "events.parquet").is_file()) \
        if root.is_dir() else []


def training_data(settings: Settings, known_at: datetime, *,
                  warehouse: bool = True) -> tuple[pl.DataFrame, dict]:
    """Labelled payments (event layout + is_fraud) created before known_at, and where they
    came from."""
    from ml.payment_features import EVENT_SCHEMA, LABEL_SCHEMA
    from ml.simulate import read_history
    from ml.warehouse import payments_span, read_labels, read_payments

    events = [pl.DataFrame(schema=EVENT_SCHEMA)]
    labels = [pl.DataFrame(schema=LABEL_SCHEMA)]
    sources: dict[str, int] = {}
    # (first, last created_at) per source: what there is, if nothing is known
    spans: list[tuple[datetime, datetime]] = []
    for directory in history_dirs(settings):
        e, lab = read_history(directory)
        events.append(e.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA))
        labels.append(lab.select(list(LABEL_SCHEMA)).cast(LABEL_SCHEMA))
        sources[f"history:{directory.name}"] = e.height
        if e.height:
            spans.append((cast(datetime, e["created_at"].min()),
                          cast(datetime, e["created_at"].max())))
    if warehouse:
        from ml.warehouse import open_warehouse

        writer = open_warehouse(settings)
        try:
            payments = read_payments(writer, before=known_at)
            events.append(payments)
            labels.append(read_labels(writer))
            sources["warehouse"] = payments.height
            if payments.is_empty() and (span := payments_span(writer)):
                spans.append(span)
        finally:
            writer.close()
    all_events = (pl.concat(events).filter(pl.col("created_at") < known_at)
                  .unique("payment_id", keep="last").sort("created_at", "payment_id"))
    if all_events.is_empty():
        held = (f"the payments on hand run from {min(s[0] for s in spans):%Y-%m-%d} to "
                f"{max(s[1] for s in spans):%Y-%m-%d}" if spans else "there are no payments "
                "at all (no history archive under HOME/ml/history/, none in the warehouse)")
        raise NothingToTrainOn(f"no labelled payments known at {known_at:%Y-%m-%d %H:%M} UTC: "
                               f"none was created before it; {held}")
    labelled = label_payments(all_events, pl.concat(labels), known_at)
    return labelled, {"known_at": known_at.isoformat(), "rows": labelled.height,
                      "frauds_known": int(labelled["is_fraud"].sum()), "sources": sources}


def retrain(settings: Settings, known_at: datetime, *, promote: bool = True,
            holdout_fraction: float = 0.3, warehouse: bool = True) -> Retrained:
    from ml.train import train_candidate

    data, provenance = training_data(settings, known_at, warehouse=warehouse)
    registry = Registry(settings, family="payments")
    champion = registry.champion()
    compare = {}
    if champion and registry.card(champion).get("features") == list(PAYMENTS.features):
        compare[champion] = registry.load(champion)
    model, fields = train_candidate(data, holdout_fraction, feature_set=PAYMENTS,
                                    compare_with=compare)
    fields["data"] = provenance
    png = model_card.pr_curve_png(
        fields["pr_curve"],
        f"precision-recall on the holdout (PR-AUC {fields['metrics']['pr_auc']:.3f})")
    version = registry.register(model, fields, extras={"pr_curve.png": png})
    promoted, decision = False, "not asked to promote"
    if promote:
        try:
            registry.promote(version)
            promoted, decision = True, "promoted: " + (
                f"beats {champion} on the same holdout" if champion else "first champion")
        except PromotionRefused as exc:
            decision = f"refused: {exc}"
    card = registry.card(version)
    markdown = model_card.markdown(card, registry.champion(), decision)
    (registry.root / version / "card.md").write_text(markdown)
    return Retrained(version, card, markdown, registry.root / version / "pr_curve.png",
                     promoted, decision, registry.champion())


def summary(result: Retrained) -> str:
    return json.dumps({"version": result.version, "promoted": result.promoted,
                       "decision": result.decision, "champion": result.champion,
                       "window": result.card["window"], "metrics": result.card["metrics"]})
