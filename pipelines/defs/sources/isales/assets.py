"""Huawei CC-iSales assets (group ``isales``): the open-API call logs per Monday-to-Monday week
in ISALES_TIMEZONE, and the file servers as a daily snapshot.

The VDN dimension. A deployment has several VDNs (ISALES_VDN_IDS) and every VDN is pulled
on each run; rows carry ``vdn_id``. The VDN is deliberately *not* a Dagster partition
dimension: a multi-partition (week x VDN) would change the partition keys, so
``dagster asset materialize --select group:isales --partition <monday>`` and the weekly
schedules would stop working, and a VDN added to the setting would need a partition-set
change. Instead each VDN is one load of the run (all in one transaction), under the raw
partition key ``<partition>/vdn-<id>``, marking gone only that VDN's rows
(``CoreTarget.scope_sql``), and each materialization reports the VDN dimension in its
metadata: ``per_vdn`` (a table) and ``vdn_<id>_<name>`` numbers the UI plots per VDN;
``reconciles_with_api`` compares landed rows with ``count`` per VDN.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
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

from models import isales
from pipelines.defs.sources.isales import normalize
from pipelines.defs.sources.isales.client import ISalesResource, VdnPull
from pipelines.defs.sources.isales.partitions import isales_weekly
from pipelines.lib.ingest import OWNERS, Ingest, IngestConfig, IngestRun, Load, RunContext, TableChecks
from pipelines.lib.schema import table_metadata
from pipelines.lib.settings import SettingError
from pipelines.lib.warehouse import WarehouseResource

API_CALL_KEY = AssetKey(["core", "fact_isales_api_call"])
FILE_SERVER_KEY = AssetKey(["core", "dim_isales_file_server"])

# The open window is refreshed every 15 minutes; two missed refreshes warn, six fail.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=30))
DIM_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
COMMON = {"group_name": "isales", "pool": "isales", "kinds": {"postgres", "huawei"}, "owners": OWNERS}
DESCRIPTIONS = {
    "reconciles_with_api": "Per VDN, distinct records landed equal the count the API reported for the window.",
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


def _api_calls(run: RunContext) -> Iterator[Load]:
    _zone_guard(run.resource)
    incremental = run.resource.incremental()
    for vdn in run.resource.vdn_list():

        async def fetch(conn, tally, vdn=vdn):  # noqa: ANN001, ANN202
            pull = VdnPull(vdn)
            async for page in run.client.call_log_pages(vdn, *tally.pull, pull):
                yield page
            tally.api_total = pull.api_count

        yield Load(
            normalize.API_CALLS,
            vdn_partition_key(run.partition_key, vdn),
            fetch,
            params={"tz": run.resource.timezone, "vdn_id": vdn},
            incremental=incremental,
        )


def _per_vdn(conn: psycopg.Connection, run: IngestRun, table: str, time_column: str | None) -> dict[str, Any]:
    """A per-VDN table, plus ``vdn_<id>_<name>`` numbers (the UI plots numeric metadata
    across materializations: one series per VDN)."""
    scope = f"{time_column} >= %(lo)s AND {time_column} < %(hi)s AND " if time_column else ""
    live = dict(
        conn.execute(
            f"SELECT vdn_id, count(*) FROM {table} WHERE {scope}_gone_at IS NULL GROUP BY vdn_id",  # noqa: S608
            {"lo": run.window[0], "hi": run.window[1]},
        ).fetchall()
    )
    rows: dict[int, dict[str, Any]] = {}
    for item in run.loaded:
        vdn = item.load.params["vdn_id"]
        r = item.result
        rows[vdn] = {
            "pull": item.pull.kind if item.pull is not None else "full",
            "rows": int(live.get(vdn, 0)),
            "api_count": item.tally.api_total if item.tally.api_total is not None else "not reported",
            "records_received": r.records_received,
            "rows_landed": r.rows_landed,
            "rows_gone": sum(r.rows_gone.values()),
            "rejects": r.rejects,
            "pages": item.pages,
            "requests": item.requests,
        }
    names = [
        "rows",
        "api_count",
        "records_received",
        "rows_landed",
        "rows_gone",
        "rejects",
        "pages",
        "requests",
        "pull",
    ]
    table_md = ["| vdn | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    table_md += [f"| {v} | " + " | ".join(str(d[n]) for n in names) + " |" for v, d in rows.items()]
    out: dict[str, Any] = {
        "vdns": ", ".join(str(v) for v in rows),
        "per_vdn": MetadataValue.md("\n".join(table_md)),
    }
    for vdn, data in rows.items():
        for name in ("rows", "api_count", "rows_gone", "pages", "requests"):
            if isinstance(data[name], int):
                out[f"vdn_{vdn}_{name}"] = MetadataValue.int(data[name])
    return out


def _api_call_checks(conn: psycopg.Connection, run: IngestRun) -> list[AssetCheckResult]:
    per_vdn = {
        str(i.load.params["vdn_id"]): {"rows_landed": i.result.rows_landed, "api_count": i.tally.api_total}
        for i in run.loaded
    }
    off = [v for v, d in per_vdn.items() if d["api_count"] is not None and d["rows_landed"] != d["api_count"]]
    missing = [v for v, d in per_vdn.items() if d["api_count"] is None]
    return [
        AssetCheckResult(
            check_name="reconciles_with_api",
            passed=not off,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "per_vdn": MetadataValue.json(per_vdn),
                "vdns_off": ", ".join(off) or "none",
                "vdns_without_count": ", ".join(missing) or "none",
            },
        ),
    ]


API_CALLS = Ingest(
    "isales",
    _api_calls,
    TableChecks(
        "core.fact_isales_api_call",
        ("raw.isales_api_call", "core.fact_isales_api_call"),
        time_column="oper_time",
        # Every documented field of a log; request is not here (NULL when it does not parse).
        not_null=("url", "type", "http_status", "result_code", "result_desc"),
        enums={"type": ["GET", "POST", "PUT", "DELETE"]},
    ),
    extra_checks=_api_call_checks,
    extra_descriptions=DESCRIPTIONS,
    describe=lambda conn, run: _per_vdn(conn, run, "core.fact_isales_api_call", "oper_time"),
)
FILE_SERVERS = Ingest(
    "isales",
    lambda run: [
        Load(
            normalize.FILE_SERVERS,
            vdn_partition_key("snapshot", vdn),
            lambda conn, tally, vdn=vdn: run.client.file_server_pages(vdn),
            params={"vdn_id": vdn},
        )
        for vdn in run.resource.vdn_list()
    ],
    TableChecks(
        "core.dim_isales_file_server",
        ("raw.isales_file_server", "core.dim_isales_file_server"),
        duplicates=False,
    ),
    describe=lambda conn, run: _per_vdn(conn, run, "core.dim_isales_file_server", None),
)


@asset(
    key=API_CALL_KEY,
    metadata=table_metadata(isales.fact_isales_api_call),
    partitions_def=isales_weekly,
    freshness_policy=FRESHNESS,
    check_specs=API_CALLS.check_specs(API_CALL_KEY),
    description="Huawei CC-iSales open-API call logs (/campaigns/{vdnId}/calllogs) of one Monday-to-Monday week "
    "in ISALES_TIMEZONE, for every VDN of ISALES_VDN_IDS; raw.isales_api_call keeps them verbatim. "
    "Per-VDN rows, counts and pages are in the metadata.",
    **COMMON,
)
def fact_isales_api_call(
    context: AssetExecutionContext, config: IngestConfig, isales: ISalesResource, warehouse: WarehouseResource
) -> MaterializeResult:
    return API_CALLS.materialize(context, isales, warehouse, config)


@asset(
    key=FILE_SERVER_KEY,
    metadata=table_metadata(isales.dim_isales_file_server),
    freshness_policy=DIM_FRESHNESS,
    check_specs=FILE_SERVERS.check_specs(FILE_SERVER_KEY),
    description="Huawei CC-iSales file servers (/campaigns/{vdnId}/file/queryServer) of every VDN, a daily "
    "snapshot: servers a VDN stops listing are marked gone (_gone_at), never deleted. Unpartitioned, so it "
    "can be selected with the weekly call logs (group:isales --partition <monday>).",
    **COMMON,
)
def dim_isales_file_server(isales: ISalesResource, warehouse: WarehouseResource) -> MaterializeResult:
    return FILE_SERVERS.materialize(None, isales, warehouse)


ASSETS = [fact_isales_api_call, dim_isales_file_server]
