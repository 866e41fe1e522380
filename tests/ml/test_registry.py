"""The registry: versions with cards, promotion only past the margin, rollback, the audit."""

from __future__ import annotations

import json

import pytest

from ml.features import FEATURES
from ml.registry import PromotionRefused, Registry, RegistryError


def fields(pr_auc: float, holdout: str = "h1") -> dict:
    return {"model": "gbm", "feature_set": "paysim", "features": list(FEATURES),
            "window": {"train_first_step": 0}, "holdout_sha256": holdout,
            "metrics": {"pr_auc": pr_auc}}


@pytest.fixture
def registry(make_settings):
    return Registry(make_settings(ml_promotion_margin="0.02"))


def test_register_writes_a_card_and_a_checked_artifact(registry):
    version = registry.register({"weights": [1, 2]}, fields(0.5))
    assert version == "v0001" and registry.register({}, fields(0.6)) == "v0002"
    card = registry.card("v0001")
    assert card["features"] == list(FEATURES) and card["metrics"] == {"pr_auc": 0.5}
    assert card["family"] == "payments" and registry.root.name == "payments"
    with pytest.raises(RegistryError, match="needs the fields"):
        registry.register({}, {"model": "gbm"})
    assert set(card["libraries"]) >= {"python", "scikit-learn", "polars", "numpy", "joblib"}
    assert len(card["artifact_sha256"]) == 64
    assert registry.load("v0001") == {"weights": [1, 2]}
    assert sorted(p.name for p in registry.root.iterdir()) == [".lock", "v0001", "v0002"]
    (registry.root / "v0001" / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match the sha256"):
        registry.load("v0001")
    with pytest.raises(RegistryError, match="no model version 'v0009'"):
        registry.card("v0009")


def test_promotion_needs_the_margin_on_the_same_holdout(registry):
    first = registry.register({}, fields(0.50))
    close = registry.register({}, fields(0.515))  # better, but by less than 0.02
    other = registry.register({}, fields(0.90, holdout="h2"))
    better = registry.register({}, fields(0.53))

    registry.promote(first)  # no champion yet: the first one is promoted
    with pytest.raises(PromotionRefused, match="does not beat the champion v0001"):
        registry.promote(close)
    with pytest.raises(PromotionRefused, match="different holdouts"):
        registry.promote(other)
    with pytest.raises(PromotionRefused, match="already the champion"):
        registry.promote(first)
    assert registry.champion() == first
    registry.promote(better)
    assert registry.champion() == better
    registry.promote(close, force=True)  # forced: no comparison, but audited as forced
    assert registry.champion() == close

    assert registry.rollback()["version"] == better
    assert registry.rollback()["version"] == first
    assert registry.champion() == first
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()

    audit = registry.audit_log()
    assert [(a["action"], a["version"], a["outcome"]) for a in audit] == [
        ("promote", first, "promoted"), ("promote", close, "refused"),
        ("promote", other, "refused"), ("promote", first, "refused"),
        ("promote", better, "promoted"), ("promote", close, "promoted"),
        ("rollback", better, "rolled_back"), ("rollback", first, "rolled_back")]
    assert audit[1]["champion_pr_auc"] == 0.5 and audit[1]["margin"] == 0.02
    assert audit[5]["forced"] is True and audit[5]["previous"] == better
    assert all(a["at"] and a["by"] for a in audit)
    # the pointer was replaced by rename: no temporary files left
    pointer = json.loads((registry.root / "champion.json").read_text())
    assert pointer == {"champion": first, "history": []}
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".tmp")
                or p.name.startswith(".champion")]
