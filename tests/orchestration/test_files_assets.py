"""The landing zone in Dagster: file assets feed the dbt staging, the sensor fires once per new
set of waiting files, the loader asset materializes with metadata and its checks run."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from orchestration.definitions import defs, pipeline_job
from orchestration.defs.dbt.assets import clearhouse_dbt_assets
from orchestration.defs.files.assets import ASSET_BY_NAME, FILE_CHECKS
from orchestration.defs.files.sensors import landing_zone_sensor


def test_file_assets_feed_the_staging_models():
    graph = defs.resolve_asset_graph()
    for model, raw in (("stg_files__bank_statement_lines", "bank_statement_lines"),
                       ("stg_files__psp_lines", "psp_lines"),
                       ("stg_files__chain_transfers", "chain_logs"),
                       ("stg_files__fx_rates", "fx_rates")):
        key = get_asset_key_for_model([clearhouse_dbt_assets], model)
        assert dg.AssetKey(["raw", raw]) in graph.get(key).parent_keys
    checks = {c.name for c in graph.asset_check_keys if c.asset_key.path[0] == "raw"}
    assert {"balance_continuity", "channel_files_on_time", "no_duplicate_logs"} <= checks


def test_sensor_fires_once_per_new_set_of_files(make_settings):
    settings = make_settings()
    (settings.landing_dir / "fx").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(next(iter(landing_zone_sensor(context))), dg.SkipReason)

        (settings.landing_dir / "fx" / "eurofxref.csv").write_text(
            "Date, USD, JPY, \n30 October 2026, 1.1172, 175.68, \n")
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        requests = [r for r in landing_zone_sensor(context) if isinstance(r, dg.RunRequest)]
        assert len(requests) == 1
        # the whole pipeline for today: the file loads and the marts rebuilt with them
        assert landing_zone_sensor.job_name == "clearhouse_pipeline"
        assert requests[0].partition_key == datetime.now(UTC).date().isoformat()
        assert requests[0].asset_selection is None
        assert set(ASSET_BY_NAME["fx_rates"].keys) <= pipeline_job.selection.resolve(
            defs.resolve_asset_graph())

        # The same waiting file: no second run.
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        assert not [r for r in landing_zone_sensor(context) if isinstance(r, dg.RunRequest)]


def test_loader_asset_materializes_with_metadata_and_checks(make_settings):
    settings = make_settings()
    (settings.landing_dir / "fx").mkdir(parents=True, exist_ok=True)
    (settings.landing_dir / "fx" / "eurofxref.csv").write_text(
        "Date, USD, JPY, \n30 October 2026, 1.1172, 175.68, \n")
    result = dg.materialize([ASSET_BY_NAME["fx_rates"]],
                            selection=[ASSET_BY_NAME["fx_rates"]])
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["loaded"].value == 1 and meta["rows"].value == 2
    fx_checks = [c for c in FILE_CHECKS if any(k.asset_key == dg.AssetKey(["raw", "fx_rates"])
                                               for k in c.check_keys)]
    checked = dg.materialize([ASSET_BY_NAME["fx_rates"], *fx_checks])
    evaluations = checked.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
