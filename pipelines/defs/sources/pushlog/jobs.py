"""Push-log jobs, schedules and per-partition freshness checks.

- Every 15 minutes: the open month, an incremental pull (what is new since its high-water mark).
- 02:00 on days 1-3: the month that just closed, until it has had its complete final pull
  (a failed run on the 1st is retried on the 2nd and 3rd; a month already final is skipped).
"""

from collections.abc import Iterator

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from pipelines.defs.sources.pushlog.assets import ASSETS, PUSH_LOG_KEY
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.defs.sources.pushlog.partitions import pushlog_monthly
from pipelines.lib import refresh
from pipelines.lib.schedules import partition_freshness_checks, recent_partitions_schedule
from pipelines.lib.warehouse import WarehouseResource

pushlog_job = define_asset_job(
    "pushlog_push_log",
    selection=AssetSelection.assets(PUSH_LOG_KEY),
    description="Push logs of one month: incremental while open, a complete final pull once closed.",
)

refresh_open_month = recent_partitions_schedule(
    pushlog_job, pushlog_monthly, "7-59/15 * * * *", lookback=1, name="pushlog_open_month"
)


@schedule(
    job=pushlog_job,
    cron_schedule="0 2 1-3 * *",
    execution_timezone=pushlog_monthly.timezone,
    name="pushlog_closed_month_final_pull",
    default_status=DefaultScheduleStatus.RUNNING,
    description="The final, complete pull of the month that just closed (days 1-3 until it is done).",
)
def final_pull_schedule(
    context: ScheduleEvaluationContext, warehouse: WarehouseResource
) -> Iterator[RunRequest | SkipReason]:
    keys = pushlog_monthly.get_partition_keys(current_time=context.scheduled_execution_time)
    if len(keys) < 2:
        yield SkipReason("no closed month yet")
        return
    key = keys[-2]  # keys[-1] is the open month
    with warehouse.connect() as conn:
        closed_at = pushlog_monthly.time_window_for_partition_key(key).end
        if refresh.last_pull(conn, "raw.pushlog", key, closed_at=closed_at) is not None:
            yield SkipReason(f"{key} already had its final pull")
            return
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    yield RunRequest(run_key=f"final-{key}@{tick}", partition_key=key)


JOBS = [pushlog_job]
SCHEDULES = [refresh_open_month, final_pull_schedule]

# The closed month must have been materialized (its final pull) by 03:00 on the 1st; a backfill
# of an older month would make the asset-level policy look fresh.
FRESHNESS_CHECKS = partition_freshness_checks([PUSH_LOG_KEY], "0 3 1 * *", pushlog_monthly.timezone)

# Loaded by pipelines/definitions.py (load_from_defs_folder): the folder's definitions and its
# resource, bound to the environment.
defs = Definitions(
    assets=ASSETS,
    asset_checks=FRESHNESS_CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={PushLogResource.SOURCE: PushLogResource.from_env()},
)
