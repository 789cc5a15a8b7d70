"""CRM jobs, schedules and per-partition freshness checks."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)

from pipelines.defs.sources.crm.assets import ASSETS, CALL_KEY, HANGUP_KEY, IVR_KEY, RECORDING_KEY
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.defs.sources.crm.partitions import crm_daily
from pipelines.lib.schedules import partition_freshness_checks, recent_partitions_schedule

crm_facts_job = define_asset_job(
    "crm_facts",
    selection=AssetSelection.assets(CALL_KEY, RECORDING_KEY),
    description="Call logs and recordings.",
)
crm_dimensions_job = define_asset_job("crm_dimensions", selection=AssetSelection.assets(HANGUP_KEY))
crm_ivr_job = define_asset_job("crm_ivr", selection=AssetSelection.assets(IVR_KEY))

SCHEDULES = [
    # Today's day every 15 minutes from :10 (what is new since its high-water mark), and
    # yesterday's whole day at :10 each hour (the late-data pass).
    recent_partitions_schedule(crm_facts_job, crm_daily, "10-59/15 * * * *", lookback=2),
    ScheduleDefinition(
        job=crm_dimensions_job,
        cron_schedule="20 3 * * *",
        execution_timezone=crm_daily.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
    # The search lists only recent calls: pull hourly so none ages out unseen.
    ScheduleDefinition(
        job=crm_ivr_job,
        cron_schedule="30 * * * *",
        execution_timezone=crm_daily.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
]
JOBS = [crm_facts_job, crm_dimensions_job, crm_ivr_job]

# Yesterday's day must be materialized by 02:00 the next day (a backfill of an old day
# makes the asset-level policy look fresh; this looks at the latest partition itself).
FRESHNESS_CHECKS = partition_freshness_checks([CALL_KEY, RECORDING_KEY], "0 2 * * *", crm_daily.timezone)

# Loaded by pipelines/definitions.py (load_from_defs_folder): the folder's definitions and its
# resource, bound to the environment.
defs = Definitions(
    assets=ASSETS,
    asset_checks=FRESHNESS_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={CrmResource.SOURCE: CrmResource.from_env()},
)
