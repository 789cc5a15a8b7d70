"""iSales jobs, schedules and per-partition freshness checks; ``ASSETS``, ``JOBS``,
``SCHEDULES`` and ``FRESHNESS_CHECKS`` are what the Definitions wire in."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)

from pipelines.defs.sources.isales.assets import API_CALL_KEY, ASSETS, FILE_SERVER_KEY
from pipelines.defs.sources.isales.client import ISalesResource
from pipelines.defs.sources.isales.partitions import isales_weekly
from pipelines.lib.schedules import partition_freshness_checks, recent_partitions_schedule

isales_api_calls_job = define_asset_job(
    "isales_api_calls",
    selection=AssetSelection.assets(API_CALL_KEY),
    description="Open-API call logs of every VDN, one Monday-to-Monday week per run.",
)
isales_file_servers_job = define_asset_job(
    "isales_file_servers",
    selection=AssetSelection.assets(FILE_SERVER_KEY),
    description="File servers of every VDN (snapshot).",
)

SCHEDULES = [
    # The open week every 15 minutes from :03 (what is new since its high-water mark), and the
    # previous one (late records) at :03 each hour.
    recent_partitions_schedule(isales_api_calls_job, isales_weekly, "3-59/15 * * * *", lookback=2),
    ScheduleDefinition(
        job=isales_file_servers_job,
        cron_schedule="40 3 * * *",
        execution_timezone=isales_weekly.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
]
JOBS = [isales_api_calls_job, isales_file_servers_job]

# The latest partition must exist by Monday 06:00 (a backfill of an old week makes the
# asset-level policy look fresh; this looks at the latest partition itself). With the open
# week in the partition set, that is the week that began at 00:00, which the schedule
# creates at 00:03 in the same tick that finishes the week before.
FRESHNESS_CHECKS = partition_freshness_checks([API_CALL_KEY], "0 6 * * 1", isales_weekly.timezone)

# Loaded by pipelines/definitions.py (load_from_defs_folder): the folder's definitions and its
# resource, bound to the environment.
defs = Definitions(
    assets=ASSETS,
    asset_checks=FRESHNESS_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={ISalesResource.SOURCE: ISalesResource.from_env()},
)
