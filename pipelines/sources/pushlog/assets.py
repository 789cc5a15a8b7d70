"""Push-log assets (group ``pushlog``): CloudListCurlLog records per calendar month in
PUSHLOG_TIMEZONE, refreshed incrementally while the month is open and pulled in full once
it has closed (see ``cursor.py``)."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pipelines import checks
from pipelines.loader import PartitionLoad, pump
from pipelines.partitions import pushlog_monthly
from pipelines.sources.pushlog import cursor, normalize, quality
from pipelines.sources.pushlog.client import PushLogResource
from pipelines.warehouse import WarehouseResource

PUSH_LOG_KEY = AssetKey(["core", "fact_push_log"])

# The open month is refreshed hourly; two missed refreshes warn.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=6), warn_window=timedelta(hours=2))

TIME_COLUMNS = ["create_time", "start_time", "end_time", "request_time"]
CHECKS = [
    "no_duplicate_keys",
    "no_rejects",
    "required_not_null",
    "known_push_types",
    "type_str_matches_type",
    "no_mass_disappearance",
]


def utc_now() -> datetime:
    """The pipeline's clock: decides whether the month is open (tests align it with the
    simulator's data clock)."""
    return datetime.now(UTC)


class PushLogPullConfig(Config):
    full: bool = Field(
        default=False,
        description="Pull the whole open month instead of what is new since the cursor (a closed month "
        "is always pulled in full).",
    )


def _span(lo: datetime, hi: datetime) -> str:
    return f"[{lo.isoformat()}, {hi.isoformat()})"


@asset(
    key=PUSH_LOG_KEY,
    group_name="pushlog",
    partitions_def=pushlog_monthly,
    pool="pushlog",
    kinds={"postgres"},
    freshness_policy=FRESHNESS,
    check_specs=checks.specs(PUSH_LOG_KEY, CHECKS, {**checks.DESCRIPTIONS, **quality.DESCRIPTIONS}),
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
    started = time.monotonic()
    window = context.partition_time_window
    window_t = (window.start, window.end)
    tz = ZoneInfo(pushlog_monthly.timezone)
    now = utc_now()
    overlap = timedelta(minutes=pushlog.overlap_minutes)
    fetched_at = datetime.now(UTC)

    async def run() -> tuple:
        client = pushlog.client()
        async with client.http, await warehouse.aconnect() as conn:
            async with PartitionLoad(
                conn,
                normalize.PUSH_LOGS,
                partition_key=context.partition_key,
                window=window_t,
                fetched_at=fetched_at,
                max_gone_share=pushlog.max_gone_share,
            ) as load:
                # JIT compiles the normalizing statement (many guarded casts and a PL/pgSQL
                # decoder) for longer than it runs: off for this transaction only.
                await conn.execute("SET LOCAL jit = off")
                # Read under the load's partition lock: a concurrent run of the month waits,
                # then sees this run's cursor.
                previous = await cursor.read_cursor(conn, context.partition_key)
                plan = cursor.plan_pull(window_t, now, previous, overlap, force_full=config.full)
                context.log.info(f"{plan.kind} pull of {_span(plan.lo, plan.hi)}: {plan.reason}")
                before = await _count(conn, window_t)
                await pump(client.pages(plan.lo, plan.hi, tz), load)
                # Every sub-window was walked to its short page (an error would have raised):
                # the pulled range is complete, so rows it no longer returned are marked gone.
                # Outside the range (an incremental pull) nothing is touched.
                await load.finish(complete=True, pulled_range=(plan.lo, plan.hi))
                after = await _count(conn, window_t)
                high_water = await cursor.write_cursor(
                    conn, context.partition_key, window_t, plan, fetched_at
                )
            return load.result, client.http.stats, plan, previous, high_water, before, after

    result, stats, plan, previous, high_water, before, after = asyncio.run(run())
    with warehouse.connect() as conn:
        check_results = [
            checks.no_duplicates(result),
            checks.no_rejects(
                conn, ["raw.pushlog", "core.fact_push_log"], context.partition_key, result.records_received
            ),
            checks.required_not_null(conn, "core.fact_push_log", TIME_COLUMNS, "create_time", window_t),
            quality.known_push_types(conn, window_t),
            quality.type_str_matches_type(conn, window_t),
            checks.no_mass_disappearance(result, "pushlog", (plan.lo, plan.hi)),
        ]
    return MaterializeResult(
        metadata={
            "window": _span(*window_t),
            "pull_kind": plan.kind,
            "final_pull": plan.final,
            "pull_reason": plan.reason,
            "pulled_range": _span(plan.lo, plan.hi),
            "previous_high_water": previous.high_water.isoformat() if previous else "none",
            "high_water": high_water.isoformat(),
            "api_total": "not reported (paging ends at a short page)",
            "rows_new": after - before,
            "dagster/row_count": MetadataValue.int(after),
            **result.as_metadata(),
            **stats.as_metadata(),
            "elapsed_s": round(time.monotonic() - started, 3),
        },
        check_results=check_results,
    )


async def _count(conn, window: tuple[datetime, datetime]) -> int:  # noqa: ANN001
    cur = await conn.execute(
        "SELECT count(*) FROM core.fact_push_log WHERE create_time >= %s AND create_time < %s", window
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


ASSETS = [fact_push_log]
