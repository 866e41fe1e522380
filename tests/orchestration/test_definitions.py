"""The Dagster definitions load, wire dbt to the raw tables and carry the dbt tests as checks."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster_dbt import get_asset_key_for_model

from orchestration.definitions import defs
from orchestration.defs.dbt.assets import ClearhouseTranslator, clearhouse_dbt_assets
from orchestration.defs.ledger.assets import RAW_KEYS


def test_definitions_load_with_every_layer():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw/payments", "raw/ledger_entries", "stg_clearhouse__payments", "fct_payments",
            "fct_settlement_statements", "fct_settlement_statement_lines", "rpt_merchant_daily",
            "published_statements", "merchant_statement_files"} <= keys


def test_dbt_sources_are_the_extracts_raw_tables():
    graph = defs.resolve_asset_graph()
    staging = get_asset_key_for_model([clearhouse_dbt_assets], "stg_clearhouse__payments")
    assert RAW_KEYS["payments"] in graph.get(staging).parent_keys
    assert ClearhouseTranslator().get_asset_key(
        {"resource_type": "source", "name": "refunds", "source_name": "clearhouse"}
    ) == dg.AssetKey(["raw", "refunds"])


def test_dbt_assets_sit_in_their_layers_group():
    graph = defs.resolve_asset_graph()

    def group(model: str) -> str | None:
        return graph.get(get_asset_key_for_model([clearhouse_dbt_assets], model)).group_name

    assert group("stg_clearhouse__payments") == "staging"
    assert group("fct_settlement_statements") == "finance"
    assert group("ref_currencies") == "reference"  # a seed, not `default`


def test_dbt_tests_become_asset_checks():
    checks = defs.resolve_asset_graph().asset_check_keys
    statement = get_asset_key_for_model([clearhouse_dbt_assets], "fct_settlement_statements")
    assert sum(1 for c in checks if c.asset_key == statement) >= 3


def test_jobs_partitions_and_schedules():
    assert defs.resolve_job_def("clearhouse_pipeline") is not None
    statements = defs.resolve_job_def("merchant_statements")
    assert statements.partitions_def is not None
    assert "2026-11-20" in statements.partitions_def.get_partition_keys(
        current_time=__import__("datetime").datetime(2026, 11, 21))
    names = {s.name for s in defs.schedules}
    assert len(names) == 4 and {"daily_close", "fraud_training_schedule"} <= names
    assert defs.resolve_job_def("fraud_training") is not None


def test_every_singular_dbt_test_is_an_asset_check():
    """A singular test naming no single model (several refs, or none) is not attached by
    dagster-dbt: it ran as an observation, a WARNING block per test in every run's output (the
    demo's). Each one names its asset with meta.dagster.ref."""
    from pathlib import Path

    from orchestration.defs.dbt.assets import DBT_PROJECT_DIR

    singular = {p.stem for p in Path(DBT_PROJECT_DIR, "tests").glob("*.sql")}
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert singular and singular <= checks, singular - checks


def test_the_finance_tie_out_is_an_asset_check_on_platform_revenue():
    """settlement.md's tie-out runs as a dbt test that Dagster attaches to fct_platform_revenue:
    a day that does not tie out fails the run before anything is published."""
    import dagster as dg

    from orchestration.definitions import defs

    keys = defs.resolve_asset_graph().asset_check_keys
    assert dg.AssetCheckKey(dg.AssetKey(["fct_platform_revenue"]), "assert_finance_tie_out") in keys


def test_the_daily_close_closes_to_the_new_day_once():
    """00:05 UTC: one run per day (run_key) of the new day's partition, which the dbt step turns
    into dbt vars; a malformed day is refused with a clear message."""
    from datetime import UTC, datetime

    from orchestration.defs.dbt.assets import dbt_build_args

    schedule = defs.get_schedule_def("daily_close")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 21, 0, 5, tzinfo=UTC),
        repository_def=defs.get_repository_def())
    request = schedule.evaluate_tick(context).run_requests[0]
    assert (request.run_key, request.partition_key) == ("daily_close:2026-11-21", "2026-11-21")
    args = dbt_build_args("2026-11-21")
    assert args[:2] == ["build", "--vars"] and '"settlement_as_of": "2026-11-21"' in args[2]
    with pytest.raises(dg.Failure, match="as_of must be a day"):
        dbt_build_args("21/11/2026")


def test_the_pipeline_is_partitioned_by_the_day_the_books_are_taken_as_of():
    """The dbt assets and the pipeline job share daily UTC partitions that include today (the
    hourly runs refresh it); the extract and file loads stay whole; one run at a time."""
    from datetime import UTC, datetime

    from orchestration.run import DAGSTER_YAML

    job = defs.resolve_job_def("clearhouse_pipeline")
    now = datetime(2026, 11, 21, 14, 15, tzinfo=UTC)
    keys = job.partitions_def.get_partition_keys(current_time=now)
    assert keys[0] == "2020-01-01" and keys[-1] == "2026-11-21"
    graph = defs.resolve_asset_graph()
    statements = get_asset_key_for_model([clearhouse_dbt_assets], "fct_settlement_statements")
    assert graph.get(statements).partitions_def == job.partitions_def
    assert graph.get(dg.AssetKey(["raw", "payments"])).partitions_def is None
    hourly = defs.get_schedule_def("clearhouse_pipeline_schedule")
    request = hourly.evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=now, repository_def=defs.get_repository_def())).run_requests[0]
    assert request.partition_key == "2026-11-21"
    assert "max_concurrent_runs: 1" in DAGSTER_YAML
    # a run's steps share one process: two at once would fight over the DuckDB file's lock
    assert job.executor_def.name == dg.in_process_executor.name


def test_a_quiet_pipeline_run_keeps_dbt_s_log_lines_off_stdout(capsys):
    """dagster-dbt prints every dbt log line while it pulls the next event; without --verbose
    the run config turns that off (valid for the job), and only the pull is muted."""
    from orchestration.defs.dbt.assets import without_stdout
    from orchestration.run import pipeline_run_config

    job = defs.resolve_job_def("clearhouse_pipeline")
    quiet = pipeline_run_config(verbose=False)
    assert dg.validate_run_config(job, quiet)["ops"]["clearhouse_dbt_assets"]["config"] == {
        "print_dbt_log": False}
    assert pipeline_run_config(verbose=True) == {}  # Dagster's and dbt's logs, as by default

    def dbt_events():
        for node in ("stg_a", "fct_b"):
            print(f"1 of 2 OK created sql table model analytics.{node}")
            yield node
        print("Failure in test unique_fct_b_id")
        raise RuntimeError("dbt build failed: Failure in test unique_fct_b_id")

    seen = []
    with pytest.raises(RuntimeError, match="Failure in test unique_fct_b_id"):
        for event in without_stdout(dbt_events()):
            print(f"consumer got {event}")
            seen.append(event)
    assert seen == ["stg_a", "fct_b"]
    assert capsys.readouterr().out == "consumer got stg_a\nconsumer got fct_b\n"
    print("stdout is back")
    assert capsys.readouterr().out == "stdout is back\n"
