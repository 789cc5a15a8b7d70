"""Huawei CC-iSales assets (group ``isales``): the open-API call logs per Monday-to-Monday week
in ISALES_TIMEZONE, and the file servers as a daily snapshot.

The VDN dimension. A deployment has several VDNs (ISALES_VDN_IDS) and every VDN is pulled
on each run; rows carry ``vdn_id``. The VDN is deliberately *not* a Dagster partition
dimension: a multi-partition (week x VDN) would change the partition keys, so
``dagster asset materialize --select group:isales --partition <monday>`` and the weekly
schedules would stop working, and a VDN added to the setting would need a partition-set
change. Instead each materialization reports the VDN dimension in its metadata:

* ``per_vdn``: a table with, per VDN, the rows in core for the window, the API's ``count``,
  the records received, pages and requests;
* ``vdn_<id>_rows``, ``vdn_<id>_api_count``, ``vdn_<id>_pages``: the same as flat numbers, so
  the UI plots each VDN's series over materializations;
* ``reconciles_with_api`` compares landed rows with ``count`` per VDN and lists the VDNs
  that disagree.

Atomicity: all VDNs load in one outer transaction (each VDN is a nested ``PartitionLoad``,
a savepoint), so a failure on any VDN leaves the warehouse as it was. Each VDN lands under
the raw partition key ``<partition>/vdn-<id>``, and its prune (or gone-marking) is limited to
that VDN's rows (``CoreTarget.scope_sql``).
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines import checks
from pipelines.loader import LoadResult, PartitionLoad, pump
from pipelines.partitions import isales_weekly
from pipelines.settings import SettingError
from pipelines.sources.isales import normalize
from pipelines.sources.isales.client import ISalesResource, VdnPull
from pipelines.warehouse import WarehouseResource

API_CALL_KEY = AssetKey(["core", "fact_isales_api_call"])
FILE_SERVER_KEY = AssetKey(["core", "dim_isales_file_server"])

# The open week is refreshed hourly; two missed refreshes warn.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=6), warn_window=timedelta(hours=2))
DIM_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))

TYPE_VALUES = ["GET", "POST", "PUT", "DELETE"]
# Every documented field of a log; request is not here (NULL when it does not parse).
API_CALL_NOT_NULL = ["url", "type", "http_status", "result_code", "result_desc"]
API_CALL_CHECKS = [
    "reconciles_with_api",
    "no_duplicate_keys",
    "no_rejects",
    "required_not_null",
    "known_enums",
    "no_mass_disappearance",
]
DESCRIPTIONS = {
    **checks.DESCRIPTIONS,
    "reconciles_with_api": "Per VDN, distinct records landed equal the count the API reported for the window.",
    "known_enums": "type holds only GET, POST, PUT or DELETE.",
}


def vdn_partition_key(partition_key: str, vdn: int) -> str:
    return f"{partition_key}/vdn-{vdn}"


def _zone_guard(isales: ISalesResource) -> None:
    # Partitions are built from ISALES_TIMEZONE when definitions load; a resource in another
    # zone would format request times differently from the partition windows.
    if isales.timezone != isales_weekly.timezone:
        raise SettingError(
            f"ISALES_TIMEZONE is {isales.timezone!r} for the client but the partitions were built in "
            f"{isales_weekly.timezone!r}: set ISALES_TIMEZONE the same for both and reload the definitions"
        )


async def _rejected(load: PartitionLoad) -> bool:
    """Whether any record of this load went to raw.rejects (flushes first)."""
    await load.flush()
    tables = [load.spec.raw_table, *(t.table for t in load.spec.targets)]
    cur = await load.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM raw.rejects WHERE source_table = ANY(%s) AND partition_key = %s)",
        (tables, load.partition_key),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


def _reconciles(pulls: dict[int, tuple[LoadResult, VdnPull]]) -> AssetCheckResult:
    per_vdn = {
        str(v): {"rows_landed": r.rows_landed, "api_count": p.api_count} for v, (r, p) in pulls.items()
    }
    off = [v for v, d in per_vdn.items() if d["api_count"] is not None and d["rows_landed"] != d["api_count"]]
    missing = [v for v, d in per_vdn.items() if d["api_count"] is None]
    return AssetCheckResult(
        check_name="reconciles_with_api",
        passed=not off,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "per_vdn": MetadataValue.json(per_vdn),
            "vdns_off": ", ".join(off) or "none",
            "vdns_without_count": ", ".join(missing) or "none",
        },
    )


def _per_vdn_metadata(rows: dict[int, dict[str, Any]], plotted: tuple[str, ...]) -> dict[str, Any]:
    """A per-VDN table, plus ``vdn_<id>_<name>`` numbers for the ``plotted`` columns (the UI
    plots numeric metadata across materializations: one series per VDN)."""
    names = list(next(iter(rows.values())).keys()) if rows else []
    table = ["| vdn | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    table += [f"| {v} | " + " | ".join(str(d[n]) for n in names) + " |" for v, d in rows.items()]
    out: dict[str, Any] = {
        "vdns": ", ".join(str(v) for v in rows),
        "per_vdn": MetadataValue.md("\n".join(table)),
    }
    for vdn, data in rows.items():
        for name, value in data.items():
            if name in plotted and isinstance(value, int):
                out[f"vdn_{vdn}_{name}"] = MetadataValue.int(value)
    return out


@asset(
    key=API_CALL_KEY,
    group_name="isales",
    partitions_def=isales_weekly,
    pool="isales",
    kinds={"postgres"},
    freshness_policy=FRESHNESS,
    check_specs=checks.specs(API_CALL_KEY, API_CALL_CHECKS, DESCRIPTIONS),
    description="Huawei CC-iSales open-API call logs (/campaigns/{vdnId}/calllogs) of one Monday-to-Monday week "
    "in ISALES_TIMEZONE, for every VDN of ISALES_VDN_IDS; raw.isales_api_call keeps them verbatim. "
    "Per-VDN rows, counts and pages are in the metadata.",
)
def fact_isales_api_call(
    context: AssetExecutionContext, isales: ISalesResource, warehouse: WarehouseResource
) -> MaterializeResult:
    started = time.monotonic()
    window = context.partition_time_window
    window_t = (window.start, window.end)
    _zone_guard(isales)
    vdns = isales.vdn_list()
    pulls: dict[int, tuple[LoadResult, VdnPull]] = {}
    requests: dict[int, int] = {}

    async def run() -> Any:
        client = isales.client()
        fetched_at = datetime.now(UTC)
        async with client.http, await warehouse.aconnect() as conn, conn.transaction():
            # One transaction around every VDN: all of the week commits, or none of it.
            for vdn in vdns:
                pull = VdnPull(vdn)
                before = client.http.stats.requests
                async with PartitionLoad(
                    conn,
                    normalize.API_CALLS,
                    partition_key=vdn_partition_key(context.partition_key, vdn),
                    window=window_t,
                    fetched_at=fetched_at,
                    params={"tz": isales.timezone, "vdn_id": vdn},
                    max_gone_share=isales.max_gone_share,
                ) as load:
                    await pump(client.call_log_pages(vdn, window.start, window.end, pull), load)
                    # Complete when the walk ended on a short page, the count reconciles and
                    # every record could be read: only then are rows the vendor no longer
                    # returns marked gone.
                    received = load.result.records_received
                    counted = pull.api_count is None or received >= pull.api_count
                    complete = counted and not await _rejected(load)
                    result = await load.finish(complete=complete)
                pulls[vdn] = (result, pull)
                requests[vdn] = client.http.stats.requests - before
        return client.http.stats

    stats = asyncio.run(run())
    total = LoadResult(
        records_received=sum(r.records_received for r, _ in pulls.values()),
        rows_landed=sum(r.rows_landed for r, _ in pulls.values()),
    )
    with warehouse.connect() as conn:
        in_core = dict(
            conn.execute(
                "SELECT vdn_id, count(*) FROM core.fact_isales_api_call "
                "WHERE oper_time >= %s AND oper_time < %s AND vdn_id = ANY(%s) AND _gone_at IS NULL "
                "GROUP BY vdn_id",
                (*window_t, vdns),
            ).fetchall()
        )
        check_results = [
            _reconciles(pulls),
            checks.no_duplicates(total),
            checks.no_rejects(
                conn,
                ["raw.isales_api_call", "core.fact_isales_api_call"],
                [vdn_partition_key(context.partition_key, v) for v in vdns],
                total.records_received,
            ),
            checks.required_not_null(
                conn, "core.fact_isales_api_call", API_CALL_NOT_NULL, "oper_time", window_t
            ),
            checks.known_enums(
                conn, "core.fact_isales_api_call", {"type": TYPE_VALUES}, "oper_time", window_t
            ),
            checks.no_mass_disappearance([r for r, _ in pulls.values()], "isales", window_t),
        ]
    per_vdn = {
        v: {
            "rows": int(in_core.get(v, 0)),
            "api_count": p.api_count if p.api_count is not None else "not reported",
            "records_received": r.records_received,
            "rows_landed": r.rows_landed,
            "rows_gone": sum(r.rows_gone.values()),
            "rejects": r.rejects,
            "pages": p.pages,
            "requests": requests[v],
        }
        for v, (r, p) in pulls.items()
    }
    api_counts = [p.api_count for _, p in pulls.values()]
    return MaterializeResult(
        metadata={
            "window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
            "elapsed_s": round(time.monotonic() - started, 3),
            "api_total": sum(c for c in api_counts if c is not None)
            if None not in api_counts
            else "not reported",
            "dagster/row_count": MetadataValue.int(sum(int(n) for n in in_core.values())),
            "records_received": total.records_received,
            "rows_landed": total.rows_landed,
            "rows_upserted core.fact_isales_api_call": sum(
                r.rows_upserted.get("core.fact_isales_api_call", 0) for r, _ in pulls.values()
            ),
            "rows_gone core.fact_isales_api_call": sum(
                r.rows_gone.get("core.fact_isales_api_call", 0) for r, _ in pulls.values()
            ),
            "rejects": sum(r.rejects for r, _ in pulls.values()),
            **_per_vdn_metadata(per_vdn, ("rows", "api_count", "pages", "requests")),
            **stats.as_metadata(),
        },
        check_results=check_results,
    )


@asset(
    key=FILE_SERVER_KEY,
    group_name="isales",
    pool="isales",
    kinds={"postgres"},
    freshness_policy=DIM_FRESHNESS,
    check_specs=checks.specs(FILE_SERVER_KEY, ["no_rejects", "no_mass_disappearance"], DESCRIPTIONS),
    description="Huawei CC-iSales file servers (/campaigns/{vdnId}/file/queryServer) of every VDN, a daily "
    "snapshot: servers a VDN stops listing are marked gone (_gone_at), never deleted. Unpartitioned, so it "
    "can be selected with the weekly call logs (group:isales --partition <monday>).",
)
def dim_isales_file_server(isales: ISalesResource, warehouse: WarehouseResource) -> MaterializeResult:
    started = time.monotonic()
    now = datetime.now(UTC)
    vdns = isales.vdn_list()
    pulls: dict[int, tuple[LoadResult, int, int]] = {}

    async def run() -> Any:
        client = isales.client()
        async with client.http, await warehouse.aconnect() as conn, conn.transaction():
            for vdn in vdns:
                pages_before, requests_before = client.http.stats.pages, client.http.stats.requests
                async with PartitionLoad(
                    conn,
                    normalize.FILE_SERVERS,
                    partition_key=vdn_partition_key("snapshot", vdn),
                    window=(now, now),
                    fetched_at=now,
                    params={"vdn_id": vdn},
                    max_gone_share=isales.max_gone_share,
                ) as load:
                    await pump(client.file_server_pages(vdn), load)
                    # Every page was walked (an error would have raised): mark the rest gone,
                    # unless a record could not be read (a renamed serverId must not make
                    # every server look gone).
                    result = await load.finish(complete=not await _rejected(load))
                stats = client.http.stats
                pulls[vdn] = (result, stats.pages - pages_before, stats.requests - requests_before)
        return client.http.stats

    stats = asyncio.run(run())
    received = sum(r.records_received for r, _, _ in pulls.values())
    with warehouse.connect() as conn:
        check_results = [
            checks.no_rejects(
                conn,
                ["raw.isales_file_server", "core.dim_isales_file_server"],
                [vdn_partition_key("snapshot", v) for v in vdns],
                received,
            ),
            checks.no_mass_disappearance(
                [r for r, _, _ in pulls.values()], "isales", f"snapshot {now.isoformat()}"
            ),
        ]
        live = dict(
            conn.execute(
                "SELECT vdn_id, count(*) FILTER (WHERE _gone_at IS NULL) FROM core.dim_isales_file_server "
                "WHERE vdn_id = ANY(%s) GROUP BY vdn_id",
                (vdns,),
            ).fetchall()
        )
    per_vdn = {
        v: {
            "servers": int(live.get(v, 0)),
            "listed": r.records_received,
            "marked_gone": sum(r.rows_gone.values()),
            "rejects": r.rejects,
            "pages": pages,
            "requests": requests,
        }
        for v, (r, pages, requests) in pulls.items()
    }
    return MaterializeResult(
        metadata={
            "snapshot_at": now.isoformat(),
            "elapsed_s": round(time.monotonic() - started, 3),
            "dagster/row_count": MetadataValue.int(sum(int(n) for n in live.values())),
            "records_received": received,
            "marked_gone": sum(d["marked_gone"] for d in per_vdn.values()),
            **_per_vdn_metadata(per_vdn, ("servers", "marked_gone", "pages")),
            **stats.as_metadata(),
        },
        check_results=check_results,
    )


ASSETS = [fact_isales_api_call, dim_isales_file_server]
