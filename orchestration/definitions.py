"""The one Definitions object: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.dbt.assets import clearhouse_dbt_assets, close_run_config, dbt_resource
from orchestration.defs.files.assets import FILE_ASSETS, FILE_CHECKS
from orchestration.defs.files.sensors import landing_zone_sensor
from orchestration.defs.fraud.assets import (
    FRAUD_ASSETS,
    fct_fraud_scores,
    fraud_training_job,
    fraud_training_schedule,
)
from orchestration.defs.ledger.assets import raw_ledger
from orchestration.defs.quality.checks import QUALITY_CHECKS
from orchestration.defs.serving.assets import DAILY, merchant_statement_files, published_statements

# Ledger -> dbt (staging, marts, tests as checks) -> published snapshots. Unpartitioned: each run
# extracts what changed and rebuilds the marts, so late data is always included.
pipeline_job = dg.define_asset_job(
    "clearhouse_pipeline",
    selection=dg.AssetSelection.assets(raw_ledger, published_statements, fct_fraud_scores,
                                       *FILE_ASSETS)
    | dg.AssetSelection.assets(clearhouse_dbt_assets),
    description="Extract the API database, load the landing zone, build the dbt project, "
    "publish statements, score payments for fraud.",
)
files_job = dg.define_asset_job(
    "ingest_files", selection=dg.AssetSelection.assets(*FILE_ASSETS),
    description="Load bank statements, PSP bills, chain logs and FX rates from the landing zone.",
)
statements_job = dg.define_asset_job(
    "merchant_statements", selection=dg.AssetSelection.assets(merchant_statement_files),
    partitions_def=DAILY, description="Write each merchant's statement CSV for a day.",
)

pipeline_schedule = dg.ScheduleDefinition(job=pipeline_job, cron_schedule="15 * * * *",
                                          execution_timezone="UTC")


@dg.schedule(job=pipeline_job, cron_schedule="5 0 * * *", execution_timezone="UTC",
             name="daily_close")
def daily_close_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """The daily close at 00:05 UTC: the pipeline with as_of = the new day, so yesterday's
    settlement periods close and reconciliation ages count to today. One run per day (run_key),
    so a missed tick is not doubled; replay a day with `clearhouse pipeline --as-of DAY`."""
    day = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(run_key=f"daily_close:{day}", tags={"clearhouse/as_of": day},
                         run_config=close_run_config(day))
# The day's statements, once the day is over (00:30 UTC the next morning).
statements_schedule = dg.build_schedule_from_partitioned_job(statements_job, hour_of_day=0,
                                                             minute_of_hour=30)

defs = dg.Definitions(
    assets=[raw_ledger, clearhouse_dbt_assets, published_statements, merchant_statement_files,
            *FILE_ASSETS, *FRAUD_ASSETS],
    asset_checks=[*FILE_CHECKS, *QUALITY_CHECKS],
    jobs=[pipeline_job, statements_job, files_job, fraud_training_job],
    schedules=[pipeline_schedule, daily_close_schedule, statements_schedule,
               fraud_training_schedule],
    sensors=[landing_zone_sensor],
    resources={"dbt": dbt_resource()},
)
