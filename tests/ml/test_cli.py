"""`clearhouse ml ...` end to end on the generated PaySim-layout file, with a temporary HOME."""

from __future__ import annotations

import json

import pytest

from clearhouse.cli import main


def run(capsys, *argv) -> str:
    main(["ml", *argv])
    return capsys.readouterr().out


def test_evaluate_prints_the_metrics_of_both_models(paysim_file, make_settings, capsys):
    make_settings()
    result = json.loads(run(capsys, "evaluate", "--paysim", str(paysim_file)))
    assert set(result["models"]) == {"gbm", "logistic"}
    for metrics in result["models"].values():
        assert {"pr_auc", "recall_at_1pct_fpr", "precision_at_100",
                "money_saved_minor"} <= set(metrics)
    assert result["window"]["train_last_step"] < result["window"]["holdout_first_step"]


def test_train_promote_models_rollback(paysim_file, make_settings, capsys):
    settings = make_settings()
    first = json.loads(run(capsys, "train", "--paysim", str(paysim_file)))
    second = json.loads(run(capsys, "train", "--paysim", str(paysim_file)))
    assert (first["version"], second["version"]) == ("v0001", "v0002")
    assert first["metrics"] == second["metrics"]  # deterministic

    assert json.loads(run(capsys, "promote", "v0001", "--family", "paysim"))["outcome"] == "promoted"
    with pytest.raises(SystemExit, match="refused: v0002 PR-AUC .* does not beat"):
        run(capsys, "promote", "v0002", "--family", "paysim")  # equal is not better by the margin
    assert json.loads(run(capsys, "promote", "v0002", "--force", "--family", "paysim"))["forced"] is True

    listed = [json.loads(line) for line in run(capsys, "models", "--family", "paysim").splitlines()]
    assert [(m["version"], m["champion"]) for m in listed] == [("v0001", False), ("v0002", True)]
    assert all("pr_auc" in m["metrics"] for m in listed)

    assert json.loads(run(capsys, "rollback", "--family", "paysim"))["version"] == "v0001"
    with pytest.raises(SystemExit, match="no previous champion"):
        run(capsys, "rollback", "--family", "paysim")
    audit = (settings.home_dir / "models" / "paysim" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in audit] == [
        "promoted", "refused", "promoted", "rolled_back"]
    card = json.loads((settings.home_dir / "models" / "paysim" / "v0001" / "card.json").read_text())
    assert card["data"]["file"] == str(paysim_file.resolve()) and len(card["data"]["sha256"]) == 64


def test_a_malformed_file_is_a_clear_error(tmp_path, make_settings, capsys):
    make_settings()
    bad = tmp_path / "bad.csv"
    bad.write_text("step,type\n1,PAYMENT\n")
    with pytest.raises(SystemExit, match="missing column"):
        run(capsys, "evaluate", "--paysim", str(bad))


def test_retrain_before_the_first_payment_is_a_clear_error(make_settings, capfd):
    """Nothing was created before --known-at: a one-line reason naming the data's range, no
    Dagster traceback on the terminal (it stays in the run)."""
    from datetime import date

    from ml.simulate import history, write_history

    settings = make_settings()
    write_history(settings.home_dir / "ml" / "history" / "demo",
                  *history(date(2026, 11, 4), 3, 100, seed=5))
    with pytest.raises(SystemExit) as exited:
        main(["ml", "retrain", "--known-at", "2026-11-01", "--no-promote"])
    message = str(exited.value.code)
    assert message.startswith(
        "clearhouse ml retrain: fraud training failed: no labelled payments known at "
        "2026-11-01 00:00 UTC: none was created before it; the payments on hand run from "
        "2026-11-04 to 2026-11-06 (details: run ")
    assert len(message.splitlines()) == 1
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
