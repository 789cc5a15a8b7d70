"""The mart's jobs, schedules and resource: the folder's ``Definitions``."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from pipelines.defs.mart import assets
from pipelines.defs.mart.pii import CustomersResource

mart_job = define_asset_job(
    "mart",
    selection=AssetSelection.groups(assets.GROUP) - AssetSelection.assets(assets.KPI_KEY),
    description="Identity map, customer keys, then the mart views' reporting zone, row counts and checks.",
)
mart_daily_kpis_job = define_asset_job(
    "mart_daily_kpis",
    selection=AssetSelection.assets(assets.KPI_KEY),
    description="One reporting day's KPIs (calls, answer rate, push success rate) as metadata.",
)

SCHEDULES = [
    # Every 15 minutes, after the sources' refreshes (at :03, :05, :07 and :10 of each quarter
    # hour): a call is in the mart within about half an hour, new customers keyed with it.
    ScheduleDefinition(
        job=mart_job,
        cron_schedule="14-59/15 * * * *",
        execution_timezone=assets.reporting_daily.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
    # The day that just closed, once its late records are in.
    build_schedule_from_partitioned_job(
        mart_daily_kpis_job, hour_of_day=2, minute_of_hour=0, default_status=DefaultScheduleStatus.RUNNING
    ),
]
JOBS = [mart_job, mart_daily_kpis_job]
ASSETS = assets.ASSETS

defs = Definitions(
    assets=ASSETS, jobs=JOBS, schedules=SCHEDULES, resources={"customers": CustomersResource.from_env()}
)
