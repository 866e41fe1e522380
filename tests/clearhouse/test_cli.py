"""The operator commands: bootstrap an admin, register a merchant, and use both credentials."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from clearhouse.cli import main
from serving.app import create_app


def run(capsys, *argv) -> dict:
    main(list(argv))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bootstrap_and_merchant_create_give_working_credentials(make_settings, capsys):
    settings = make_settings()
    admin = run(capsys, "admin", "bootstrap")
    merchant = run(capsys, "merchants", "create", "Corner Shop")
    assert admin["role"] == "platform_admin" and merchant["id"].startswith("mer_")
    assert merchant["api_key"].startswith("sk_test_")
    client = TestClient(create_app(settings))
    mine = client.get(f"/api/v1/merchants/{merchant['id']}",
                      headers={"Authorization": f"Bearer {merchant['api_key']}"})
    assert mine.status_code == 200 and mine.json()["name"] == "Corner Shop"
    by_admin = client.get(f"/api/v1/merchants/{merchant['id']}",
                          headers={"Authorization": f"Bearer {admin['token']}"})
    assert by_admin.status_code == 200
    forged = client.get(f"/api/v1/merchants/{merchant['id']}",
                        headers={"Authorization": f"Bearer {admin['token']}x"})
    assert forged.status_code == 401
    # The admin registers a second merchant through the API; the first merchant cannot.
    body = {"name": "Second", "settlement_currency": "EUR"}
    created = client.post("/api/v1/merchants", json=body,
                          headers={"Authorization": f"Bearer {admin['token']}"})
    assert created.status_code == 201 and created.json()["api_key"].startswith("sk_test_")
    refused = client.post("/api/v1/merchants", json=body,
                          headers={"Authorization": f"Bearer {merchant['api_key']}"})
    assert refused.status_code == 403


def test_pipeline_through_backfills_one_close_per_day_in_order(make_settings, capsys,
                                                               monkeypatch):
    """`clearhouse pipeline --as-of A --through B` runs the job's partitions A..B in day order,
    one JSON line each; a range that runs backwards is refused before anything runs."""
    import orchestration.run

    make_settings()
    closes = []

    def fake_run(settings, *, days, verbose, as_of):
        closes.append(as_of.isoformat())
        return {"rows_extracted": 0, "statement_files": {}, "run_id": f"run-{as_of}"}

    monkeypatch.setattr(orchestration.run, "run_pipeline", fake_run)
    main(["pipeline", "--as-of", "2026-11-29", "--through", "2026-12-01"])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert closes == ["2026-11-29", "2026-11-30", "2026-12-01"]
    assert [line["as_of"] for line in lines] == closes
    assert lines[-1]["run_id"] == "run-2026-12-01"
    with pytest.raises(SystemExit, match="--through needs --as-of"):
        main(["pipeline", "--as-of", "2026-12-02", "--through", "2026-12-01"])
    assert len(closes) == 3


def test_pipeline_refuses_to_close_a_day_that_has_not_begun(make_settings):
    """A day after today has no partition yet, and closing it early would freeze it."""
    from datetime import UTC, datetime, timedelta

    make_settings()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    with pytest.raises(SystemExit, match=f"as_of {tomorrow} is after today"):
        main(["pipeline", "--as-of", tomorrow])


def test_a_failed_pipeline_run_ends_with_one_line_not_a_traceback(make_settings, monkeypatch):
    """The run's own log (stderr) has said what failed; the command ends with where to look."""
    import orchestration.run

    make_settings()

    def failed_run(settings, *, days, verbose, as_of):
        raise RuntimeError("the pipeline run failed (a dbt test or a step): see run r-1 in "
                           "`make dev`, or rerun with --verbose")

    monkeypatch.setattr(orchestration.run, "run_pipeline", failed_run)
    with pytest.raises(SystemExit, match=r"^clearhouse pipeline: the pipeline run failed .* "
                       "see run r-1 in `make dev`, or rerun with --verbose$"):
        main(["pipeline"])


def test_pipeline_refuses_statement_files_for_a_day_not_over_before_running(make_settings,
                                                                            monkeypatch):
    """`--day` names a finished day (the merchant_statements job's partitions): today's is
    refused in one line before the pipeline runs, not with a traceback after it."""
    from datetime import UTC, datetime

    import dagster as dg

    make_settings()
    monkeypatch.setattr(dg.JobDefinition, "execute_in_process",
                        lambda *a, **k: pytest.fail("nothing may run"))
    today = datetime.now(UTC).date().isoformat()
    with pytest.raises(SystemExit, match=rf"^clearhouse pipeline: statement files are written "
                       rf"for a finished day, and {today} has not ended"):
        main(["pipeline", "--day", today])


@pytest.mark.parametrize("argv", [["pipeline", "--day", "2026-13-01"],
                                  ["pipeline", "--as-of", "yesterday"],
                                  ["pipeline", "--as-of", "2026-11-01", "--through", "x"],
                                  ["chain", "export", "--day", "2026-11-31"],
                                  ["demo", "--day", "bad"]])
def test_a_malformed_day_is_a_usage_error_not_a_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "not a day (YYYY-MM-DD)" in capsys.readouterr().err


def test_dev_defaults_sigint_and_sigterm_before_exec(make_settings, monkeypatch):
    """Started in the background by a shell without job control, the command inherits SIGINT
    ignored; the exec'd `dagster dev` must get Ctrl-C and SIGTERM back, or it never stops."""
    import os
    import signal

    settings = make_settings()
    seen = {}

    def fake_exec(file, argv):
        seen["argv"] = argv
        seen["int"] = signal.getsignal(signal.SIGINT)
        seen["term"] = signal.getsignal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(os, "execvp", fake_exec)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # restored afterwards
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        main(["dev", "--port", "3999"])
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert seen["int"] is signal.SIG_DFL and seen["term"] is signal.SIG_DFL
    assert seen["argv"][-4:] == ["--host", "127.0.0.1", "--port", "3999"]


@pytest.mark.parametrize(("env", "argv", "port"), [
    ({}, [], "3000"),
    ({"dagster_port": 3311}, [], "3311"),  # CLEARHOUSE_DAGSTER_PORT, as CLEARHOUSE_API_PORT
    ({"dagster_port": 3311}, ["--port", "3999"], "3999"),  # the flag wins
])
def test_dev_port_comes_from_the_flag_then_the_environment(make_settings, monkeypatch, env,
                                                           argv, port):
    import os
    import signal

    settings = make_settings(**env)
    seen = {}
    monkeypatch.setattr(os, "execvp", lambda file, args: seen.setdefault("argv", args))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        main(["dev", *argv])
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert seen["argv"][-2:] == ["--port", port]
