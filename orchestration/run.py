"""Run the Dagster jobs in process (the demo, the CLI, tests) against the instance under
HOME/dagster, so `make dev` shows the runs afterwards."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime

from warehouse.settings import Settings

# One run at a time: every run writes the warehouse, and a DuckDB file takes one writer (a
# backfill's runs then go through the queue in day order).
ONE_RUN_AT_A_TIME = "concurrency:\n  runs:\n    max_concurrent_runs: 1\n"
DAGSTER_YAML = "telemetry:\n  enabled: false\n" + ONE_RUN_AT_A_TIME


def dagster_instance(settings: Settings, *, ephemeral: bool = False):
    from dagster import DagsterInstance

    if ephemeral:
        return DagsterInstance.ephemeral()
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    elif "concurrency:" not in (text := config.read_text()):  # a HOME from before the limit
        config.write_text(text.rstrip("\n") + "\n" + ONE_RUN_AT_A_TIME)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return DagsterInstance.get()


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# A failure's traceback stays in the run (`make dev`); the caller prints why (failure_reason).
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def pipeline_run_config(verbose: bool) -> dict:
    """Quiet unless verbose: Dagster's console at WARNING and dbt's log lines not printed (a
    failure still shows, with dbt's errors)."""
    if verbose:
        return {}
    return {**QUIET, "ops": {"clearhouse_dbt_assets": {"config": {"print_dbt_log": False}}}}


def run_pipeline(settings: Settings, *, days: Sequence[date] = (), ephemeral: bool = False,
                 verbose: bool = False, as_of: date | None = None) -> dict:
    """Extract -> dbt build (with its tests as checks) -> publish; then statement files per day.
    The run is the job's partition `as_of` (default today, UTC): the books as of that day,
    settlement periods ending before it closed, breaks aged to it."""
    today = datetime.now(UTC).date()
    day = as_of or today
    if day > today:  # no partition yet, and closing a day before it ended would freeze it early
        raise ValueError(f"as_of {day} is after today ({today}, UTC): a day is closed once it "
                         "has ended, by the next day's run")
    unfinished = sorted({d for d in days if d >= today})
    if unfinished:  # refused before the run, not after it: the job's partitions are finished days
        raise ValueError(f"statement files are written for a finished day, and {unfinished[0]} "
                         f"has not ended (today is {today}, UTC); run without --day and "
                         "download today's open statement from GET /api/v1/settlements/"
                         "{merchant_id}?period=" + today.isoformat())
    from orchestration.definitions import defs

    instance = dagster_instance(settings, ephemeral=ephemeral)
    run_config = {} if verbose else SILENT  # a refusal is raised with its reason
    main = defs.resolve_job_def("clearhouse_pipeline").execute_in_process(
        instance=instance, run_config=pipeline_run_config(verbose),
        partition_key=day.isoformat(), raise_on_error=False)
    if not main.success:
        raise RuntimeError(f"the pipeline run failed: {pipeline_failure(main)}; see run "
                           f"{main.run_id} in `make dev`, or rerun with --verbose")
    extracted = sum(_int_metadata(event, "rows_extracted")
                    for event in main.get_asset_materialization_events())
    from orchestration.defs.files.assets import FILE_SOURCES

    first_table = {source.tables[0]: source.asset_name for source in FILE_SOURCES}
    landed = {}
    for event in main.get_asset_materialization_events():
        meta = event.materialization.metadata
        name = first_table.get(_asset_name(event))
        if name and "loaded" in meta:
            landed[name] = {k: meta[k].value for k in
                            ("loaded", "quarantined", "duplicates", "rows")}
    # What finance sees on each mart in the UI (orchestration/defs/dbt/metadata.py).
    marts = {_asset_name(event): {k: v.value for k, v in
                                        event.materialization.metadata.items()
                                        if k in ("dagster/row_count", "summary")}
             for event in main.get_asset_materialization_events()
             if "summary" in event.materialization.metadata}
    files = {day: write_statement_files(instance, day, run_config) for day in days}
    return {"rows_extracted": extracted, "statement_files": files, "landed_files": landed,
            "marts": marts, "run_id": main.run_id}


def write_statement_files(instance, day: date, run_config: dict) -> int:
    """The merchant_statements job for `day`: how many statement files it wrote. A refusal
    (books not closed through the day) is a RuntimeError saying why, not Dagster's traceback."""
    from orchestration.definitions import defs

    run = defs.resolve_job_def("merchant_statements").execute_in_process(
        instance=instance, partition_key=day.isoformat(), run_config=run_config,
        raise_on_error=False)
    if not run.success:
        raise RuntimeError(f"no statement files for {day}: {failure_reason(run)}")
    (event,) = run.get_asset_materialization_events()
    return _int_metadata(event, "statements_written")


def _asset_name(event) -> str:
    """The last part of a materialization event's asset key."""
    key = event.asset_key
    assert key is not None  # a materialization always names its asset
    return key.path[-1]


def _int_metadata(event, key: str) -> int:
    """A materialization's integer metadata entry (0 without one)."""
    entry = event.materialization.metadata.get(key)
    return entry.value if entry is not None and isinstance(entry.value, int) else 0


def run_fraud_training(settings: Settings, *, known_at: str | None = None, promote: bool = True,
                       ephemeral: bool = False) -> dict:
    """The fraud_training job in process: retrain, register, promote if better. Returns the
    fraud_model materialization's metadata (version, decision, metrics, model card)."""
    from orchestration.definitions import defs

    instance = dagster_instance(settings, ephemeral=ephemeral)
    config = {"ops": {"fraud_model": {"config": {"known_at": known_at, "promote": promote}}}}
    run = defs.resolve_job_def("fraud_training").execute_in_process(
        instance=instance, run_config={**SILENT, **config}, raise_on_error=False)
    if not run.success:
        raise RuntimeError(f"fraud training failed: {failure_reason(run)} (details: run "
                           f"{run.run_id} in `make dev`)")
    (event,) = run.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def pipeline_failure(run) -> str:
    """Why a pipeline run failed: each failed blocking check (asset, check, its description:
    for the quality suites the failed expectations with their row counts), else the step's
    failure (failure_reason)."""
    failed = [e.asset_check_evaluation_data for e in run.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"
              and not e.asset_check_evaluation_data.passed
              and e.asset_check_evaluation_data.severity.value == "ERROR"]
    if failed:
        return "blocking check(s) failed, nothing downstream was built: " + " | ".join(
            f"{c.asset_key.to_user_string()}:{c.check_name} {c.description or ''}".strip()
            for c in failed)
    return failure_reason(run)


def failure_reason(run) -> str:
    """Why a run failed, in one line: a step's dg.Failure description, else its error (the user
    code's, under Dagster's wrapper)."""
    for event in run.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            return data.user_failure_data.description
        error = data.error.cause or data.error
        return error.message.strip().splitlines()[0]
    return "the run did not finish"
