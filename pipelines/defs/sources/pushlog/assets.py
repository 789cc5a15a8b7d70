"""Push-log assets (group ``pushlog``): CloudListCurlLog records per calendar month in
PUSHLOG_TIMEZONE, refreshed incrementally while the month is open and pulled in full once
it has closed (see ``cursor.py``)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dagster import AssetExecutionContext, AssetKey, FreshnessPolicy, MaterializeResult, asset
from pydantic import Field

from models import pushlog
from pipelines.defs.sources.pushlog import cursor, normalize, quality
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.defs.sources.pushlog.partitions import pushlog_monthly
from pipelines.lib.ingest import OWNERS, Ingest, IngestConfig, Load, RunContext, TableChecks
from pipelines.lib.schema import table_metadata
from pipelines.lib.warehouse import WarehouseResource

PUSH_LOG_KEY = AssetKey(["core", "fact_push_log"])

# The open month is refreshed hourly; two missed refreshes warn.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=6), warn_window=timedelta(hours=2))


def utc_now() -> datetime:
    """The pipeline's clock: decides whether the month is open (tests align it with the
    simulator's data clock)."""
    return datetime.now(UTC)


class PushLogPullConfig(IngestConfig):
    full: bool = Field(
        default=False,
        description="Pull the whole open month instead of what is new since the cursor (a closed month "
        "is always pulled in full).",
    )


def _span(lo: datetime, hi: datetime) -> str:
    return f"[{lo.isoformat()}, {hi.isoformat()})"


async def _count(conn, window: tuple[datetime, datetime]) -> int:  # noqa: ANN001
    cur = await conn.execute(
        "SELECT count(*) FROM core.fact_push_log WHERE create_time >= %s AND create_time < %s AND _gone_at IS NULL",
        window,
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _month(run: RunContext) -> Iterator[Load]:
    overlap = timedelta(minutes=run.resource.overlap_minutes)
    force_full = bool(run.config and run.config.full)

    async def fetch(conn, tally):  # noqa: ANN001, ANN202
        # Read under the load's partition lock: a concurrent run of the month waits, then
        # sees this run's cursor.
        previous = await cursor.read_cursor(conn, run.partition_key)
        plan = cursor.plan_pull(run.window, utc_now(), previous, overlap, force_full=force_full)
        # Every sub-window is walked to its short page (an error would raise): the pulled
        # range is complete; outside it (an incremental pull) nothing is touched.
        tally.pulled_range = (plan.lo, plan.hi)
        tally.extra.update(
            pull_kind=plan.kind,
            final_pull=plan.final,
            pull_reason=plan.reason,
            pulled_range=_span(plan.lo, plan.hi),
            previous_high_water=previous.high_water.isoformat() if previous else "none",
            rows_before=await _count(conn, run.window),
            plan=plan,
        )
        async for page in run.client.pages(plan.lo, plan.hi, ZoneInfo(pushlog_monthly.timezone)):
            yield page

    async def after(conn, tally, load) -> None:  # noqa: ANN001
        plan = tally.extra.pop("plan")
        high_water = await cursor.write_cursor(conn, run.partition_key, run.window, plan, load.fetched_at)
        tally.extra["high_water"] = high_water.isoformat()
        tally.extra["rows_new"] = await _count(conn, run.window) - tally.extra.pop("rows_before")

    yield Load(normalize.PUSH_LOGS, run.partition_key, fetch, after=after)


PUSH_LOGS = Ingest(
    "pushlog",
    _month,
    TableChecks(
        "core.fact_push_log",
        ("raw.pushlog", "core.fact_push_log"),
        time_column="create_time",
        not_null=("create_time", "start_time", "end_time", "request_time"),
    ),
    extra_checks=lambda conn, run: [quality.known_push_types(conn, run.window)],
    extra_descriptions=quality.DESCRIPTIONS,
    describe=lambda conn, run: quality.type_str_disagreements(conn, run.window),
)


@asset(
    key=PUSH_LOG_KEY,
    metadata=table_metadata(pushlog.fact_push_log),
    group_name="pushlog",
    partitions_def=pushlog_monthly,
    pool="pushlog",
    kinds={"postgres", "alibabacloud"},
    owners=OWNERS,
    freshness_policy=FRESHNESS,
    check_specs=PUSH_LOGS.check_specs(PUSH_LOG_KEY),
    description="Push (webhook) logs (Alibaba Cloud VMS CloudListCurlLog) of one calendar month in "
    "PUSHLOG_TIMEZONE: incremental from the cursor (raw.pushlog_cursor) while the month is open, a complete "
    "final pull once it has closed; raw.pushlog keeps the records verbatim.",
)
def fact_push_log(
    context: AssetExecutionContext,
    config: PushLogPullConfig,
    pushlog: PushLogResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    return PUSH_LOGS.materialize(context, pushlog, warehouse, config)


ASSETS = [fact_push_log]
