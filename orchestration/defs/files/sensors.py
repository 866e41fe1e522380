"""The landing sensor: a new file in HOME/landing/<source>/ starts a run of its source's asset."""


import hashlib
import json

import dagster as dg

from ingest.files.loader import pending_files
from orchestration.defs.files.assets import ASSET_BY_NAME, FILE_SOURCES
from warehouse.settings import get_settings


@dg.sensor(name="landing_zone_sensor", minimum_interval_seconds=30,
           asset_selection=dg.AssetSelection.assets(*ASSET_BY_NAME.values()),
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Loads files dropped into HOME/landing/<source>/.")
def landing_zone_sensor(context: dg.SensorEvaluationContext):
    settings = get_settings()
    seen = json.loads(context.cursor) if context.cursor else {}
    fired = False
    for source in FILE_SOURCES:
        files = pending_files(settings, list(source.sources))
        if not files:
            seen.pop(source.asset_name, None)
            continue
        # The run key names exactly this set of waiting files (path, size, mtime): the same
        # waiting set never starts two runs; a new or changed file starts the next one.
        fingerprint = hashlib.sha256("\n".join(
            f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for _s, p in files).encode()
        ).hexdigest()[:24]
        if seen.get(source.asset_name) == fingerprint:
            continue
        seen[source.asset_name] = fingerprint
        fired = True
        yield dg.RunRequest(run_key=f"{source.asset_name}:{fingerprint}",
                            asset_selection=list(ASSET_BY_NAME[source.asset_name].keys),
                            tags={"clearhouse/files": str(len(files))})
    context.update_cursor(json.dumps(seen))
    if not fired:
        yield dg.SkipReason("no new files in the landing zone")
