"""Udesk CRM assets (group ``crm``): call logs and recordings per day in CRM_TIMEZONE, the
hangup-reason dimension and the agents' IVR durations as snapshots."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines import checks
from pipelines.http import ordered_prefetch
from pipelines.loader import PartitionLoad, pump
from pipelines.partitions import crm_daily
from pipelines.settings import int_list
from pipelines.sources.crm import normalize
from pipelines.sources.crm.client import CrmResource
from pipelines.warehouse import WarehouseResource

CALL_KEY = AssetKey(["core", "fact_crm_call"])
RECORDING_KEY = AssetKey(["core", "fact_crm_call_recording"])
HANGUP_KEY = AssetKey(["core", "dim_crm_hangup_reason"])
IVR_KEY = AssetKey(["core", "fact_crm_call_ivr"])

# The open day is refreshed hourly by the schedule; two missed refreshes warn.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=6), warn_window=timedelta(hours=2))
DIM_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))

CALL_ENUMS = {
    "result": [1, 2, 3, 4, 5],
    "call_type": [1, 2, 3],
    "seat_type": [1, 2],
    "drop_side": [1, 2],
    "business_log_type": [1, 2, 3, 4],
}
# Documented not-null and always filled in the samples (agentName and customerName are
# documented not-null too, but the samples show null: those are not checked).
CALL_DOCUMENTED_NOT_NULL = ["duration", "result", "sp_number", "call_type"]
CALL_CHECKS = [
    "reconciles_with_api",
    "no_duplicate_keys",
    "no_rejects",
    "required_not_null",
    "known_enums",
    "no_mass_disappearance",
]


def _metadata(window: tuple[datetime, datetime], started: float, *parts: dict) -> dict:
    out: dict = {
        "window": f"[{window[0].isoformat()}, {window[1].isoformat()})",
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    for part in parts:
        out.update(part)
    return out


@asset(
    key=CALL_KEY,
    group_name="crm",
    partitions_def=crm_daily,
    pool="crm",
    kinds={"postgres"},
    freshness_policy=FRESHNESS,
    check_specs=checks.specs(CALL_KEY, CALL_CHECKS, checks.DESCRIPTIONS),
    description="Udesk CRM call logs (/v1/callLogs) of one day in CRM_TIMEZONE; raw.crm_call keeps them verbatim.",
)
def fact_crm_call(
    context: AssetExecutionContext, crm: CrmResource, warehouse: WarehouseResource
) -> MaterializeResult:
    started = time.monotonic()
    window = context.partition_time_window
    tz = str(window.start.tzinfo)
    reported: dict[str, int | None] = {"total": None}

    async def run() -> tuple:
        client = crm.client()
        async with client.http, await warehouse.aconnect() as conn:

            async def pages():  # noqa: ANN202
                async for page in client.call_log_pages(window.start, window.end):
                    if reported["total"] is None:
                        reported["total"] = page.total
                    yield page

            async with PartitionLoad(
                conn,
                normalize.CALL_LOGS,
                partition_key=context.partition_key,
                window=(window.start, window.end),
                fetched_at=datetime.now(UTC),
                params={"tz": tz},
                max_gone_share=crm.max_gone_share,
            ) as load:
                await pump(pages(), load)
                # Complete when the count reconciles: only then are rows the vendor no
                # longer returns are marked gone in core.
                complete = reported["total"] is not None and load.result.records_received >= reported["total"]
                await load.finish(complete=complete)
            return load.result, complete, client.http.stats

    result, complete, stats = asyncio.run(run())
    window_t = (window.start, window.end)
    with warehouse.connect() as conn:
        check_results = [
            checks.reconciles(result, reported["total"], checks.AssetCheckSeverity.WARN),
            checks.no_duplicates(result),
            checks.no_rejects(
                conn, ["raw.crm_call", "core.fact_crm_call"], context.partition_key, result.records_received
            ),
        ]
        rows, not_null, enums = checks.window_checks(
            conn, "core.fact_crm_call", CALL_DOCUMENTED_NOT_NULL, CALL_ENUMS, "created_at", window_t
        )
        check_results += [not_null, enums, checks.no_mass_disappearance(result, "crm", window_t)]
    return MaterializeResult(
        metadata=_metadata(
            window_t,
            started,
            {"api_total": reported["total"] if reported["total"] is not None else "not reported"},
            {"complete_pull": complete, "dagster/row_count": MetadataValue.int(int(rows))},
            result.as_metadata(),
            stats.as_metadata(),
        ),
        check_results=check_results,
    )


@asset(
    key=RECORDING_KEY,
    deps=[CALL_KEY],
    group_name="crm",
    partitions_def=crm_daily,
    pool="crm",
    kinds={"postgres"},
    freshness_policy=FRESHNESS,
    check_specs=checks.specs(RECORDING_KEY, ["no_rejects", "no_mass_disappearance"], checks.DESCRIPTIONS),
    description="Recordings of the day's calls, one /v1/callLogs/view request per call, fetched concurrently "
    "within the rate limit.",
)
def fact_crm_call_recording(
    context: AssetExecutionContext, crm: CrmResource, warehouse: WarehouseResource
) -> MaterializeResult:
    started = time.monotonic()
    window = context.partition_time_window
    window_t = (window.start, window.end)
    with warehouse.connect() as conn:
        call_ids = [
            r[0]
            for r in conn.execute(
                "SELECT call_id FROM core.fact_crm_call WHERE created_at >= %s AND created_at < %s ORDER BY id",
                window_t,
            )
        ]

    async def run() -> tuple:
        client = crm.client()
        async with client.http, await warehouse.aconnect() as conn:
            pages = ordered_prefetch(call_ids, client.call_detail, client.http.concurrency)
            async with PartitionLoad(
                conn,
                normalize.RECORDINGS,
                partition_key=context.partition_key,
                window=window_t,
                fetched_at=datetime.now(UTC),
                params={"tz": str(window.start.tzinfo)},
                max_gone_share=crm.max_gone_share,
            ) as load:
                await pump(pages, load)
                # Every call of the day was asked for (an error would have raised).
                await load.finish(complete=True)
            return load.result, client.http.stats

    result, stats = asyncio.run(run())
    with warehouse.connect() as conn:
        check_results = [
            checks.no_rejects(
                conn,
                ["raw.crm_call_detail", "core.fact_crm_call_recording"],
                context.partition_key,
                len(call_ids),
            ),
            checks.no_mass_disappearance(result, "crm", window_t),
        ]
    return MaterializeResult(
        metadata=_metadata(
            window_t,
            started,
            {
                "calls": len(call_ids),
                "dagster/row_count": MetadataValue.int(sum(result.rows_upserted.values())),
            },
            result.as_metadata(),
            stats.as_metadata(),
        ),
        check_results=check_results,
    )


@asset(
    key=HANGUP_KEY,
    group_name="crm",
    pool="crm",
    kinds={"postgres"},
    freshness_policy=DIM_FRESHNESS,
    check_specs=checks.specs(HANGUP_KEY, ["no_rejects", "no_mass_disappearance"], checks.DESCRIPTIONS),
    description="Outbound hangup reasons (/v1/hangupReasons), a snapshot: names trimmed, reasons the vendor "
    "stops listing are marked gone (_gone_at), never deleted.",
)
def dim_crm_hangup_reason(crm: CrmResource, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.monotonic()
    now = datetime.now(UTC)

    async def run() -> tuple:
        client = crm.client()
        async with client.http, await warehouse.aconnect() as conn:
            # A snapshot has no window: its "window" is the instant it was taken.
            async with PartitionLoad(
                conn,
                normalize.HANGUP_REASONS,
                partition_key="snapshot",
                window=(now, now),
                fetched_at=now,
                max_gone_share=crm.max_gone_share,
            ) as load:
                page = await client.hangup_reasons()
                await load.add(page.body, page.records)
                await load.finish(complete=True)
            return load.result, client.http.stats

    result, stats = asyncio.run(run())
    with warehouse.connect() as conn:
        check_results = [
            checks.no_rejects(
                conn,
                ["raw.crm_hangup_reason", "core.dim_crm_hangup_reason"],
                "snapshot",
                result.records_received,
            ),
            checks.no_mass_disappearance(result, "crm", f"snapshot {now.isoformat()}"),
        ]
        live = conn.execute(
            "SELECT count(*) FROM core.dim_crm_hangup_reason WHERE _gone_at IS NULL"
        ).fetchone()[0]
    return MaterializeResult(
        metadata=_metadata(
            (now, now),
            started,
            {"dagster/row_count": MetadataValue.int(int(live))},
            result.as_metadata(),
            stats.as_metadata(),
        ),
        check_results=check_results,
    )


@asset(
    key=IVR_KEY,
    group_name="crm",
    pool="crm",
    kinds={"postgres"},
    freshness_policy=DIM_FRESHNESS,
    check_specs=checks.specs(IVR_KEY, ["no_rejects"], checks.DESCRIPTIONS),
    description="IVR durations of the recent calls of the agents in CRM_AGENT_IDS (/v1/callLogs/search, the only "
    "endpoint that carries ivrDuration). Rows accumulate: the endpoint only lists recent calls.",
)
def fact_crm_call_ivr(crm: CrmResource, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.monotonic()
    now = datetime.now(UTC)
    agents = int_list("CRM_AGENT_IDS", crm.agent_ids, lo=1)
    tz = crm_daily.timezone
    per_agent: dict[str, int] = {}

    async def run() -> tuple:
        client = crm.client()
        async with client.http, await warehouse.aconnect() as conn, conn.transaction():
            # One transaction around every agent (each load is a savepoint inside it).
            for agent in agents:
                async with PartitionLoad(
                    conn,
                    normalize.AGENT_CALLS,
                    partition_key=f"agent-{agent}",
                    window=(now, now),
                    fetched_at=now,
                    params={"tz": tz, "master_user_id": agent},
                ) as load:
                    await pump(client.agent_call_pages(agent), load)
                    result = await load.finish(complete=True)
                    per_agent[str(agent)] = result.records_received
            return client.http.stats

    stats = asyncio.run(run())
    with warehouse.connect() as conn:
        check_results = [
            checks.no_rejects(
                conn,
                ["raw.crm_agent_call", "core.fact_crm_call_ivr"],
                [f"agent-{a}" for a in agents],
                sum(per_agent.values()),
            )
        ]
    return MaterializeResult(
        metadata=_metadata(
            (now, now),
            started,
            {"agents": MetadataValue.json(per_agent), "records": sum(per_agent.values())},
            stats.as_metadata(),
        ),
        check_results=check_results,
    )


ASSETS = [fact_crm_call, fact_crm_call_recording, dim_crm_hangup_reason, fact_crm_call_ivr]
