"""Push-log assets (group ``pushlog``): CloudListCurlLog records per calendar month in
PUSHLOG_TIMEZONE, refreshed from the month's high-water mark while it is open and pulled in
full once it has closed (``pipelines/lib/refresh.py``)."""

from collections.abc import Iterator
from datetime import timedelta
from zoneinfo import ZoneInfo

from dagster import AssetExecutionContext, AssetKey, FreshnessPolicy, MaterializeResult, asset

from models import pushlog
from pipelines.defs.sources.pushlog import normalize, quality
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.defs.sources.pushlog.partitions import pushlog_monthly
from pipelines.lib.ingest import OWNERS, Ingest, IngestConfig, Load, RunContext, TableChecks
from pipelines.lib.schema import table_metadata
from pipelines.lib.warehouse import WarehouseResource

PUSH_LOG_KEY = AssetKey(["core", "fact_push_log"])

# The open month is refreshed every 15 minutes; two missed refreshes warn.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=30))


def _month(run: RunContext) -> Iterator[Load]:
    async def fetch(conn, tally):  # noqa: ANN001, ANN202
        # Every sub-window is walked to its short page (an error would raise): the pulled
        # range is complete; outside it (an incremental pull) nothing is touched.
        async for page in run.client.pages(*tally.pull, ZoneInfo(pushlog_monthly.timezone)):
            yield page

    yield Load(normalize.PUSH_LOGS, run.partition_key, fetch, incremental=run.resource.incremental())


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
    "PUSHLOG_TIMEZONE: incremental from the high-water mark (the newest CreateTime loaded) while the month is "
    "open, a complete final pull once it has closed; raw.pushlog keeps the records verbatim.",
)
def fact_push_log(
    context: AssetExecutionContext,
    config: IngestConfig,
    pushlog: PushLogResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    return PUSH_LOGS.materialize(context, pushlog, warehouse, config)


ASSETS = [fact_push_log]
