"""Run the Dagster jobs in process against the instance under HOME/dagster (so `make dev` shows
the runs afterwards)."""

from __future__ import annotations

import os
from datetime import date

from warehouse.settings import Settings

DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def dagster_instance(settings: Settings, *, ephemeral: bool = False):
    from dagster import DagsterInstance

    if ephemeral:
        return DagsterInstance.ephemeral()
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return DagsterInstance.get()


def run_pipeline(settings: Settings, *, days: list[date] = (), ephemeral: bool = False) -> dict:
    """Extract -> dbt build (with its tests as checks) -> publish; then statement files per day."""
    from orchestration.definitions import defs

    instance = dagster_instance(settings, ephemeral=ephemeral)
    main = defs.get_job_def("clearhouse_pipeline").execute_in_process(instance=instance)
    if not main.success:
        raise RuntimeError("the pipeline run failed: see `make dev` (Runs) or the log above")
    files = {}
    statements = defs.get_job_def("merchant_statements")
    for day in days:
        run = statements.execute_in_process(instance=instance, partition_key=day.isoformat())
        if not run.success:
            raise RuntimeError(f"writing the statements for {day} failed")
        mat = run.asset_materializations_for_node("merchant_statement_files")
        files[day] = mat[0].metadata["statements_written"].value if mat else 0
    extracted = sum(
        m.metadata["rows_extracted"].value
        for m in main.get_asset_materialization_events() and [
            e.event_specific_data.materialization for e in main.get_asset_materialization_events()]
        if "rows_extracted" in m.metadata)
    return {"rows_extracted": extracted, "statement_files": files, "run_id": main.run_id}
