"""The one Definitions object: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.dbt.assets import clearhouse_dbt_assets, dbt_resource
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
from orchestration.defs.serving.assets import merchant_statement_files, published_statements
from orchestration.partitions import BOOK_DAYS, STATEMENT_DAYS

# Ledger -> dbt (staging, marts, tests as checks) -> published snapshots, partitioned by the day
# the books are taken as of (orchestration/partitions.py). The extract, the file loads and the
# fraud scores are not day slices: each run takes what changed, so late data always counts.
pipeline_job = dg.define_asset_job(
    "clearhouse_pipeline",
    selection=dg.AssetSelection.assets(raw_ledger, published_statements, fct_fraud_scores,
                                       *FILE_ASSETS)
    | dg.AssetSelection.assets(clearhouse_dbt_assets),
    partitions_def=BOOK_DAYS,
    description="Extract the API database, load the landing zone, build the dbt project as of "
    "the partition's day, publish statements, score payments for fraud.",
)
files_job = dg.define_asset_job(
    "ingest_files", selection=dg.AssetSelection.assets(*FILE_ASSETS),
    description="Load bank statements, PSP bills, chain logs and FX rates from the landing zone.",
)
statements_job = dg.define_asset_job(
    "merchant_statements", selection=dg.AssetSelection.assets(merchant_statement_files),
    partitions_def=STATEMENT_DAYS, description="Write each merchant's statement CSV for a day.",
)


@dg.schedule(job=pipeline_job, cron_schedule="15 * * * *", execution_timezone="UTC",
             name="clearhouse_pipeline_schedule")
def pipeline_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every hour at minute 15 (UTC): today's partition again, with what came in since."""
    day = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(partition_key=day)


@dg.schedule(job=pipeline_job, cron_schedule="5 0 * * *", execution_timezone="UTC",
             name="daily_close")
def daily_close_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """The daily close at 00:05 UTC: the new day's first run, so yesterday's settlement periods
    close and reconciliation ages count to today. One run per day (run_key), so a missed tick
    is not doubled; replay a day with `clearhouse pipeline --as-of DAY` or a backfill."""
    day = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(run_key=f"daily_close:{day}", partition_key=day)


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
    # Steps one after another in the run's process: most of them open the warehouse to write,
    # and a DuckDB file takes one writing process (the multiprocess default fails on its lock).
    executor=dg.in_process_executor,
)
