"""iSales jobs, schedules and per-partition freshness checks; ``ASSETS``, ``JOBS``,
``SCHEDULES`` and ``FRESHNESS_CHECKS`` are what the Definitions wire in."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    build_time_partition_freshness_checks,
    define_asset_job,
)

from pipelines.partitions import isales_weekly
from pipelines.schedules import recent_partitions_schedule
from pipelines.sources.isales.assets import API_CALL_KEY, ASSETS, FILE_SERVER_KEY

isales_api_calls_job = define_asset_job(
    "isales_api_calls",
    selection=AssetSelection.assets(API_CALL_KEY),
    partitions_def=isales_weekly,
    description="Open-API call logs of every VDN, one Monday-to-Monday week per run.",
)
isales_file_servers_job = define_asset_job(
    "isales_file_servers",
    selection=AssetSelection.assets(FILE_SERVER_KEY),
    description="File servers of every VDN (snapshot).",
)

SCHEDULES = [
    # The open week and the previous one (late records), every hour at :15.
    recent_partitions_schedule(isales_api_calls_job, isales_weekly, "15 * * * *", lookback=2),
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
# week in the partition set, that is the week that began at 00:00, which the hourly schedule
# creates at 00:15 in the same tick that finishes the week before.
FRESHNESS_CHECKS = build_time_partition_freshness_checks(
    assets=[API_CALL_KEY], deadline_cron="0 6 * * 1", timezone=isales_weekly.timezone
)

__all__ = ["ASSETS", "FRESHNESS_CHECKS", "JOBS", "SCHEDULES"]
