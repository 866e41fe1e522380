"""The landing sensor: files dropped into HOME/landing/<source>/ start a run of the pipeline for
today's partition, so a late file does not stop at the raw tables: it loads and the marts are
rebuilt with it (a late bank statement updates today's reconciliation; a late item of a closed
settlement period lands as an adjustment in the open one)."""


import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from ingest.files.loader import pending_files
from orchestration.defs.files.assets import FILE_SOURCES
from warehouse.settings import get_settings

PIPELINE_JOB = "clearhouse_pipeline"  # orchestration/definitions.py (it loads every source)


@dg.sensor(name="landing_zone_sensor", minimum_interval_seconds=30, job_name=PIPELINE_JOB,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Files dropped into HOME/landing/<source>/ start clearhouse_pipeline "
           "for today's partition: they load and the marts are rebuilt with them.")
def landing_zone_sensor(context: dg.SensorEvaluationContext):
    settings = get_settings()
    waiting = sorted(path for source in FILE_SOURCES
                     for _s, path in pending_files(settings, list(source.sources)))
    if not waiting:
        context.update_cursor(None)
        yield dg.SkipReason("no new files in the landing zone")
        return
    # The run key names exactly this set of waiting files (path, size, mtime): the same
    # waiting set never starts two runs; a new or changed file starts the next one.
    fingerprint = hashlib.sha256("\n".join(
        f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in waiting).encode()
    ).hexdigest()[:24]
    if context.cursor and json.loads(context.cursor) == fingerprint:
        yield dg.SkipReason(f"{len(waiting)} file(s) waiting; their run is already requested")
        return
    context.update_cursor(json.dumps(fingerprint))
    yield dg.RunRequest(run_key=f"landing:{fingerprint}",
                        partition_key=datetime.now(UTC).date().isoformat(),
                        tags={"clearhouse/files": str(len(waiting))})
