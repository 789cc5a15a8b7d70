"""The mart's jobs, schedules, sensor and resource: the folder's ``Definitions``.

- ``mart`` (every 15 minutes): the identity map, the customers of new calls keyed, the view files
  applied, the reporting days that loads touched found (``days_touched`` on ``mart/calls``)
  and what changed checked.
- ``mart_days``: the tables kept by day, for a stretch of days. The ``mart_days`` sensor runs
  it after each successful ``mart`` run for the days that run found; a full rebuild is a
  backfill of every partition of ``mart_days`` (one run: ``BackfillPolicy.single_run``).
- ``mart_full_scan`` (weekly): every check over every row.
- ``mart_daily_kpis`` (daily): the day that closed, as metadata the UI plots.

A sensor rather than an automation condition: the facts' partitions (a CRM day, a TRTC week,
a push-log month) hold rows of other reporting days too (late records, a reload's deletions),
and ``AutomationCondition.eager()`` looks at the latest day only; the rows' own ``_loaded_at``
and ``_gone_at`` say exactly which days changed, and the sensor turns them into partitions.
"""

from collections.abc import Iterator

from dagster import (
    AssetSelection,
    DagsterEventType,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
    run_status_sensor,
)

from pipelines.defs.mart import assets, days, tables
from pipelines.defs.mart.pii import CustomersResource

TABLE_KEYS = [assets.view_key(table) for table in days.TABLES]
VIEW_KEYS = [assets.view_key(view) for view in assets.VIEW_DEPS]
# A run over a stretch of partitions (what a single-run backfill sets).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

mart_job = define_asset_job(
    "mart",
    selection=AssetSelection.assets(assets.IDENTITY_KEY, assets.CUSTOMER_KEY_KEY, *VIEW_KEYS),
    description="Identity map, the customers of new calls keyed, the view files applied, the reporting days "
    "that loads touched found and what changed checked (the mart_days sensor then writes those days).",
)
mart_days_job = define_asset_job(
    "mart_days",
    selection=AssetSelection.assets(*TABLE_KEYS),
    partitions_def=assets.reporting_daily,
    description="The KPI tables and mart.customers for a stretch of reporting days, each day in one "
    "transaction. A backfill of every partition rebuilds them (after a mapping or identity-map change).",
)
mart_full_scan_job = define_asset_job(
    "mart_full_scan",
    selection=AssetSelection.assets(*VIEW_KEYS),
    config={"ops": {"mart_views": {"config": {"full_scan": True}}}},
    description="The mart's checks over every row: unkeyed customers, unlisted codes, phone-number-like text.",
)


def _days_found(context: RunStatusSensorContext) -> list[str]:
    for entry in context.instance.all_logs(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == assets.view_key("calls"):
            return list(materialization.metadata["days_touched"].value)
    return []


@run_status_sensor(
    name="mart_days",
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[mart_job],
    request_job=mart_days_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="After each successful mart run: the reporting days it found touched, one mart_days run "
    "per stretch of consecutive days.",
)
def mart_days_sensor(context: RunStatusSensorContext) -> Iterator[RunRequest]:
    keys = assets.reporting_daily.get_partition_keys()
    run_id = context.dagster_run.run_id
    found = _days_found(context)
    outside = sorted(set(found) - set(keys))
    if outside:
        context.log.warning(
            f"{len(outside)} reporting days touched are not partitions (from {outside[0]} to {outside[-1]}): "
            "not written (before MART_START_DATE, or after today)."
        )
    for first, last in days.day_ranges(found, keys):
        if first == last:
            yield RunRequest(run_key=f"{run_id}:{first}", partition_key=first)
        else:
            yield RunRequest(run_key=f"{run_id}:{first}", tags={RANGE_START: first, RANGE_END: last})


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
    # Every check over every row, weekly (Sunday night).
    ScheduleDefinition(
        job=mart_full_scan_job,
        cron_schedule="30 3 * * 0",
        execution_timezone=assets.reporting_daily.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
    ),
    # The day that just closed, once its late records are in.
    build_schedule_from_partitioned_job(
        mart_daily_kpis_job, hour_of_day=2, minute_of_hour=0, default_status=DefaultScheduleStatus.RUNNING
    ),
]
JOBS = [mart_job, mart_days_job, mart_full_scan_job, mart_daily_kpis_job]
SENSORS = [mart_days_sensor]
ASSETS = [*assets.ASSETS, tables.mart_tables]

defs = Definitions(
    assets=ASSETS,
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={"customers": CustomersResource.from_env()},
)
