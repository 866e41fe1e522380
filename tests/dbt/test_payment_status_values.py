"""The statuses dbt accepts for a payment are the API's state machine's, no more, no fewer."""

from __future__ import annotations

from pathlib import Path

import yaml

from serving.services.state_machine import TRANSITIONS

MODELS_YML = (Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "staging"
              / "clearhouse" / "_clearhouse__models.yml")


def test_stg_payments_accepts_exactly_the_state_machines_statuses():
    models = {m["name"]: m for m in yaml.safe_load(MODELS_YML.read_text())["models"]}
    (status,) = [c for c in models["stg_clearhouse__payments"]["columns"]
                 if c["name"] == "status"]
    (accepted,) = [t["accepted_values"] for t in status["data_tests"]
                   if isinstance(t, dict) and "accepted_values" in t]
    known = {s for s in TRANSITIONS if s} | {t for nxt in TRANSITIONS.values() for t in nxt}
    assert sorted(accepted["arguments"]["values"]) == sorted(known)
