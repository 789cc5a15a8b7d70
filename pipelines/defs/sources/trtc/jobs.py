"""TRTC jobs, schedules and freshness checks.

The vendor forgets calls after 7 days, so freshness here protects data, not just dashboards:
the open week is refreshed every 15 minutes and the previous one pulled every hour, and a check that runs on its own
schedule (not only after materializations) escalates when pulls stop.
"""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)

from pipelines.defs.sources.trtc import assets
from pipelines.defs.sources.trtc.client import TrtcResource
from pipelines.defs.sources.trtc.partitions import trtc_weekly
from pipelines.lib.schedules import partition_freshness_checks, recent_partitions_schedule

trtc_calls_job = define_asset_job(
    "trtc_calls",
    selection=AssetSelection.assets(assets.CALL_KEY, assets.CALLEE_KEY),
    description="TRTC call records and callees of one week.",
)
# Runs the retention check alone, so a stalled pipeline is noticed without a materialization.
trtc_retention_watch_job = define_asset_job(
    "trtc_retention_watch",
    selection=AssetSelection.checks(*assets.ASSET_CHECKS),
    description="Warns when TRTC pulls stop; fails before unpulled calls expire at the vendor.",
)

SCHEDULES = [
    # The open week every 15 minutes from :05 (what is new since its high-water mark), the
    # previous one (late records, and Monday's just-closed week) at :05 each hour.
    recent_partitions_schedule(trtc_calls_job, trtc_weekly, "5-59/15 * * * *", lookback=2),
    ScheduleDefinition(
        job=trtc_retention_watch_job,
        cron_schedule="35 * * * *",
        execution_timezone=trtc_weekly.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
]
JOBS = [trtc_calls_job, trtc_retention_watch_job]
ASSETS = assets.ASSETS

# Per partition (a backfill of an old week makes the asset-level policy look fresh): with
# the open week a partition too, the week that opens on Monday must have been pulled by
# Monday 02:00 (the schedule pulls it from 00:05, with the week just closed).
# Plus the raw-recency check, which its own hourly job runs (trtc_retention_watch): not being
# a per-partition check, it stays out of the shared freshness_checks job.
FRESHNESS_CHECKS = [
    *partition_freshness_checks([assets.CALL_KEY, assets.CALLEE_KEY], "0 2 * * 1", trtc_weekly.timezone),
    *assets.ASSET_CHECKS,
]

# Loaded by pipelines/definitions.py (load_from_defs_folder): the folder's definitions and its
# resource, bound to the environment.
defs = Definitions(
    assets=ASSETS,
    asset_checks=FRESHNESS_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={TrtcResource.SOURCE: TrtcResource.from_env()},
)
