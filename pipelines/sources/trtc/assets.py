"""TRTC call-record assets (group ``trtc``): one fetch per Monday-to-Monday week fills
``core/fact_trtc_call`` and ``core/fact_trtc_call_callee`` in one transaction, plus a
check, not tied to a materialization, that the pulls keep up with the vendor's 7-day memory."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset_check,
    multi_asset,
)

from pipelines import checks
from pipelines.loader import LoadResult, PartitionLoad, pump
from pipelines.partitions import trtc_weekly
from pipelines.sources.trtc import normalize, plan
from pipelines.sources.trtc.client import TrtcResource
from pipelines.sources.trtc.paging import Pull
from pipelines.warehouse import WarehouseResource

CALL_KEY = AssetKey(["core", "fact_trtc_call"])
CALLEE_KEY = AssetKey(["core", "fact_trtc_call_callee"])
CALL_TABLE, CALLEE_TABLE, RAW_TABLE = "core.fact_trtc_call", "core.fact_trtc_call_callee", "raw.trtc_call"

# The open week is refreshed hourly; the vendor forgets after 7 days, so a day without a
# materialization already eats into the margin.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=24), warn_window=timedelta(hours=3))
PULL_WARN_AFTER = timedelta(days=1)
PULL_FAIL_AFTER = timedelta(days=5)  # two days before calls made after the last pull expire

CALL_ENUMS = {
    "call_result": normalize.CALL_RESULTS,
    "call_type": normalize.CALL_TYPES,
    "media_type": normalize.MEDIA_TYPES,
}
CALL_DOCUMENTED = ["media_type", "caller", "call_type", "call_result", "ended_at"]
DESCRIPTIONS = {
    **checks.DESCRIPTIONS,
    "known_enums": "callResult, callType and mediaType hold only documented values; lists the others "
    "(offline is seen in the wild).",
    "within_vendor_retention": "The whole week was still within the vendor's 7-day retention; otherwise "
    "names the part that could not be fetched (its rows from earlier pulls are kept unchanged).",
    "callees_match_calls": "core.fact_trtc_call_callee holds exactly the callees of the week's calls.",
}
CALL_CHECKS = [
    "reconciles_with_api",
    "no_duplicate_keys",
    "no_rejects",
    "required_not_null",
    "known_enums",
    "within_vendor_retention",
    "no_mass_disappearance",
]


def _iso(r: tuple[datetime, datetime] | None) -> str:
    return f"[{r[0].isoformat()}, {r[1].isoformat()})" if r else "none"


async def _load(
    trtc: TrtcResource, warehouse: WarehouseResource, pull: Pull, partition_key: str
) -> tuple[LoadResult, bool, dict]:
    client = trtc.client()
    async with client.http, await warehouse.aconnect() as conn:
        async with PartitionLoad(
            conn,
            normalize.CALLS,
            partition_key=partition_key,
            window=pull.plan.window,
            fetched_at=datetime.now(UTC),
            params={"sdk_app_id": trtc.sdkappid.strip()},
            max_gone_share=trtc.max_gone_share,
        ) as load:
            await pump(client.pages(pull), load)
            complete = pull.complete
            # Mark gone only within what was asked for: rows past the vendor's retention stay as they are.
            await load.finish(complete=complete, pulled_range=pull.plan.requested)
        return load.result, complete, client.http.stats.as_metadata()


def _retention_check(conn: psycopg.Connection, pull: Pull) -> tuple[AssetCheckResult, int]:
    expired = pull.plan.expired
    kept = 0
    if expired:
        kept = conn.execute(
            "SELECT count(*) FROM core.fact_trtc_call WHERE started_at >= %s AND started_at < %s", expired
        ).fetchone()[0]
    return (
        AssetCheckResult(
            asset_key=CALL_KEY,
            check_name="within_vendor_retention",
            passed=expired is None,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "not_fetched": _iso(expired),
                "rows_kept_from_earlier_pulls": int(kept),
                "vendor_now": pull.plan.now.isoformat(),
            },
            description=None
            if expired is None
            else f"{_iso(expired)} is past the vendor's 7-day retention: not requested; "
            f"{kept} rows pulled earlier are kept unchanged.",
        ),
        int(kept),
    )


def _callee_check(conn: psycopg.Connection, window: tuple[datetime, datetime]) -> AssetCheckResult:
    # Both sides as sets of (call, callee): a difference means the two tables drifted apart.
    row = conn.execute(
        """
        WITH want AS (SELECT DISTINCT f.sdk_app_id, f.call_id, u.callee FROM core.fact_trtc_call f,
                      unnest(f.callees) u(callee)
                      WHERE f.started_at >= %(lo)s AND f.started_at < %(hi)s AND u.callee IS NOT NULL),
             have AS (SELECT sdk_app_id, call_id, callee FROM core.fact_trtc_call_callee
                      WHERE started_at >= %(lo)s AND started_at < %(hi)s)
        SELECT (SELECT count(*) FROM (SELECT * FROM want EXCEPT SELECT * FROM have) a),
               (SELECT count(*) FROM (SELECT * FROM have EXCEPT SELECT * FROM want) b),
               (SELECT count(*) FROM have)
        """,
        {"lo": window[0], "hi": window[1]},
    ).fetchone()
    missing, extra, rows = (int(n) for n in row)
    return AssetCheckResult(
        asset_key=CALLEE_KEY,
        check_name="callees_match_calls",
        passed=missing == 0 and extra == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"missing": missing, "extra": extra, "rows": rows},
    )


@multi_asset(
    name="trtc_call_records",
    specs=[
        AssetSpec(
            CALL_KEY,
            group_name="trtc",
            kinds={"postgres"},
            freshness_policy=FRESHNESS,
            description="Tencent TRTC call records (/v1/records/get_records_by_filter) placed in one "
            "Monday-to-Monday week of TRTC_TIMEZONE; raw.trtc_call keeps them verbatim, for good: the "
            "vendor forgets after 7 days.",
        ),
        AssetSpec(
            CALLEE_KEY,
            group_name="trtc",
            kinds={"postgres"},
            freshness_policy=FRESHNESS,
            description="One row per call and callee of core.fact_trtc_call, for joins on a user id.",
        ),
    ],
    partitions_def=trtc_weekly,
    pool="trtc",
    check_specs=[
        *checks.specs(CALL_KEY, CALL_CHECKS, DESCRIPTIONS),
        *checks.specs(CALLEE_KEY, ["callees_match_calls"], DESCRIPTIONS),
    ],
)
def trtc_call_records(context: AssetExecutionContext, trtc: TrtcResource, warehouse: WarehouseResource):  # noqa: ANN201
    started = time.monotonic()
    window = context.partition_time_window
    window_t = (window.start, window.end)
    pull = Pull(plan.plan_pull(window.start, window.end, plan.vendor_now(), skew_s=trtc.retention_skew_s))
    if pull.plan.expired:
        context.log.warning(
            f"TRTC keeps calls 7 days: {_iso(pull.plan.expired)} of partition {context.partition_key} is past "
            "that and was not requested; rows pulled from it earlier are kept unchanged."
        )
    if pull.plan.sub_windows:
        result, complete, stats = asyncio.run(_load(trtc, warehouse, pull, context.partition_key))
    else:  # nothing the vendor still holds: touch nothing, not even the partition's rejects
        result, complete, stats = LoadResult(), False, {"requests": 0, "pages": 0}

    with warehouse.connect() as conn:
        retention, kept = _retention_check(conn, pull)
        call_checks = [
            checks.reconciles(result, pull.api_total, AssetCheckSeverity.WARN),
            checks.no_duplicates(result),
            checks.no_rejects(
                conn, [RAW_TABLE, CALL_TABLE, CALLEE_TABLE], context.partition_key, result.records_received
            ),
            checks.required_not_null(conn, CALL_TABLE, CALL_DOCUMENTED, "started_at", window_t),
            checks.known_enums(conn, CALL_TABLE, CALL_ENUMS, "started_at", window_t),
            retention,
            checks.no_mass_disappearance(result, "trtc", pull.plan.requested or window_t),
        ]
        callee_check = _callee_check(conn, window_t)
        calls, callees = conn.execute(
            "SELECT (SELECT count(*) FROM core.fact_trtc_call WHERE started_at >= %(lo)s AND started_at < %(hi)s),"
            " (SELECT count(*) FROM core.fact_trtc_call_callee WHERE started_at >= %(lo)s AND started_at < %(hi)s)",
            {"lo": window.start, "hi": window.end},
        ).fetchone()

    common = {
        "window": _iso(window_t),
        "requested_range": _iso(pull.plan.requested),
        "not_fetched_past_retention": _iso(pull.plan.expired),
        "rows_kept_from_earlier_pulls": kept,
        "api_total": pull.api_total if pull.api_total is not None else "not reported",
        "complete_pull": complete,
        "request_windows": len(pull.windows),
        "edge_splits": pull.splits,
        "walk_stops": MetadataValue.json(pull.stops()),
        **result.as_metadata(),
        **stats,
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    yield MaterializeResult(
        asset_key=CALL_KEY,
        metadata={**common, "dagster/row_count": MetadataValue.int(int(calls))},
        check_results=[_for(CALL_KEY, c) for c in call_checks],
    )
    yield MaterializeResult(
        asset_key=CALLEE_KEY,
        metadata={**common, "dagster/row_count": MetadataValue.int(int(callees))},
        check_results=[callee_check],
    )


def _for(key: AssetKey, result: AssetCheckResult) -> AssetCheckResult:
    """The shared checks leave asset_key unset; a multi-asset must name it."""
    if result.asset_key is not None:
        return result
    return AssetCheckResult(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        metadata=result.metadata,
        description=result.description,
    )


@asset_check(
    asset=CALL_KEY,
    name="pulls_keep_up_with_retention",
    description="The newest fetched_at in raw.trtc_call: warns after a day without a successful pull, "
    "fails after 5 days, when calls placed after that pull are about to expire at the vendor unpulled.",
)
def pulls_keep_up_with_retention(warehouse: WarehouseResource) -> AssetCheckResult:
    with warehouse.connect() as conn:
        newest = conn.execute("SELECT max(fetched_at) FROM raw.trtc_call").fetchone()[0]
    now = datetime.fromtimestamp(plan.vendor_now(), UTC)
    if newest is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            metadata={"last_pull": "never"},
            description="No TRTC call has been pulled yet.",
        )
    age = now - newest
    severity = AssetCheckSeverity.ERROR if age > PULL_FAIL_AFTER else AssetCheckSeverity.WARN
    at_risk_from = newest + timedelta(seconds=plan.RETENTION_S)
    return AssetCheckResult(
        passed=age <= PULL_WARN_AFTER,
        severity=severity,
        metadata={
            "last_pull": MetadataValue.timestamp(newest),
            "age_hours": round(age.total_seconds() / 3600, 2),
            "unpulled_calls_expire_from": at_risk_from.isoformat(),
            # Read by Dagster's freshness-check sensor: re-evaluate once this has passed.
            "dagster/fresh_until_timestamp": MetadataValue.float((newest + PULL_WARN_AFTER).timestamp()),
        },
        description=None
        if age <= PULL_WARN_AFTER
        else f"Last successful pull {age} ago; calls placed since then expire at the vendor from "
        f"{at_risk_from.isoformat()}.",
    )


ASSETS = [trtc_call_records]
ASSET_CHECKS = [pulls_keep_up_with_retention]
