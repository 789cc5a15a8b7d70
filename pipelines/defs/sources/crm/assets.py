"""Udesk CRM assets (group ``crm``): call logs and recordings per day in CRM_TIMEZONE, the
hangup-reason dimension and the agents' IVR durations as snapshots. What is special about
each is its plan (what to fetch) and its checks; ``pipelines/lib/ingest.py`` runs them."""

from collections.abc import Iterator
from datetime import timedelta

from dagster import AssetExecutionContext, AssetKey, FreshnessPolicy, MaterializeResult, asset

from models import crm, mart
from pipelines.defs.sources.crm import normalize
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.defs.sources.crm.partitions import crm_daily
from pipelines.defs.sources.crm.recordings import recording_loads
from pipelines.lib.ingest import OWNERS, Ingest, IngestConfig, Load, RunContext, TableChecks, one_page
from pipelines.lib.schema import table_metadata
from pipelines.lib.settings import int_list
from pipelines.lib.warehouse import WarehouseResource

CALL_KEY = AssetKey(["core", "fact_crm_call"])
RECORDING_KEY = AssetKey(["core", "fact_crm_call_recording"])
HANGUP_KEY = AssetKey(["core", "dim_crm_hangup_reason"])
IVR_KEY = AssetKey(["core", "fact_crm_call_ivr"])

# The open window is refreshed every 15 minutes; two missed refreshes warn, six fail.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=30))
DIM_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
COMMON = {"group_name": "crm", "pool": "crm", "kinds": {"postgres", "udesk"}, "owners": OWNERS}


def _calls(run: RunContext) -> Iterator[Load]:
    yield Load(
        normalize.CALL_LOGS,
        run.partition_key,
        lambda conn, tally: run.client.call_log_pages(*tally.pull),
        params={"tz": crm_daily.timezone},
        incremental=run.resource.incremental(),
    )


CALLS = Ingest(
    "crm",
    _calls,
    TableChecks(
        "core.fact_crm_call",
        ("raw.crm_call", "core.fact_crm_call"),
        time_column="created_at",
        # Documented not-null and always filled in the samples (agentName and customerName
        # are documented not-null too, but the samples show null: not checked).
        not_null=("duration", "result", "sp_number", "call_type"),
        # A code the mart maps is listed in its mapping table only (filled by migrations,
        # models/mart.py): the check reads the codes from there, so a new code is one row
        # in one migration, and the check and mart.calls cannot disagree about it. The
        # codes nothing maps are listed here, their one place.
        enums={
            "result": mart.map_crm_outcome.c.result,
            "call_type": mart.map_crm_direction.c.call_type,
            "seat_type": [1, 2],
            "drop_side": mart.map_crm_hangup_side.c.drop_side,
            "business_log_type": [1, 2, 3, 4],
        },
        reconcile=True,
    ),
)


RECORDINGS = Ingest(
    "crm",
    recording_loads,
    TableChecks(
        "core.fact_crm_call_recording",
        ("raw.crm_call_detail", "core.fact_crm_call_recording"),
        time_column="call_created_at",
        duplicates=False,
    ),
)
HANGUP_REASONS = Ingest(
    "crm",
    lambda run: [
        Load(normalize.HANGUP_REASONS, "snapshot", lambda conn, tally: one_page(run.client.hangup_reasons()))
    ],
    TableChecks(
        "core.dim_crm_hangup_reason",
        ("raw.crm_hangup_reason", "core.dim_crm_hangup_reason"),
        duplicates=False,
    ),
)


def _agents(run: RunContext) -> Iterator[Load]:
    for agent in int_list("CRM_AGENT_IDS", run.resource.agent_ids, lo=1):
        yield Load(
            normalize.AGENT_CALLS,
            f"agent-{agent}",
            lambda conn, tally, agent=agent: run.client.agent_call_pages(agent),
            params={"tz": crm_daily.timezone, "master_user_id": agent},
            marks_gone=False,  # the search lists only recent calls: rows accumulate
        )


AGENT_CALLS = Ingest(
    "crm",
    _agents,
    TableChecks("core.fact_crm_call_ivr", ("raw.crm_agent_call", "core.fact_crm_call_ivr"), duplicates=False),
)


@asset(
    key=CALL_KEY,
    metadata=table_metadata(crm.fact_crm_call),
    partitions_def=crm_daily,
    freshness_policy=FRESHNESS,
    check_specs=CALLS.check_specs(CALL_KEY),
    description="Udesk CRM call logs (/v1/callLogs) of one day in CRM_TIMEZONE; raw.crm_call keeps them verbatim.",
    **COMMON,
)
def fact_crm_call(
    context: AssetExecutionContext, config: IngestConfig, crm: CrmResource, warehouse: WarehouseResource
) -> MaterializeResult:
    return CALLS.materialize(context, crm, warehouse, config)


@asset(
    key=RECORDING_KEY,
    metadata=table_metadata(crm.fact_crm_call_recording),
    deps=[CALL_KEY],
    partitions_def=crm_daily,
    freshness_policy=FRESHNESS,
    check_specs=RECORDINGS.check_specs(RECORDING_KEY),
    description="Recordings of the day's calls, one /v1/callLogs/view request per call that has no recording "
    "yet (one whose answer held none is asked again while it is younger than CRM_RECORDING_LOOKBACK_HOURS), "
    "fetched concurrently within the rate limit.",
    **COMMON,
)
def fact_crm_call_recording(
    context: AssetExecutionContext, config: IngestConfig, crm: CrmResource, warehouse: WarehouseResource
) -> MaterializeResult:
    return RECORDINGS.materialize(context, crm, warehouse, config)


@asset(
    key=HANGUP_KEY,
    metadata=table_metadata(crm.dim_crm_hangup_reason),
    freshness_policy=DIM_FRESHNESS,
    check_specs=HANGUP_REASONS.check_specs(HANGUP_KEY),
    description="Outbound hangup reasons (/v1/hangupReasons), a snapshot: names trimmed, reasons the vendor "
    "stops listing are marked gone (_gone_at), never deleted.",
    **COMMON,
)
def dim_crm_hangup_reason(crm: CrmResource, warehouse: WarehouseResource) -> MaterializeResult:
    return HANGUP_REASONS.materialize(None, crm, warehouse)


@asset(
    key=IVR_KEY,
    metadata=table_metadata(crm.fact_crm_call_ivr),
    freshness_policy=DIM_FRESHNESS,
    check_specs=AGENT_CALLS.check_specs(IVR_KEY),
    description="IVR durations of the recent calls of the agents in CRM_AGENT_IDS (/v1/callLogs/search, the only "
    "endpoint that carries ivrDuration). Rows accumulate: the endpoint only lists recent calls.",
    **COMMON,
)
def fact_crm_call_ivr(crm: CrmResource, warehouse: WarehouseResource) -> MaterializeResult:
    return AGENT_CALLS.materialize(None, crm, warehouse)


ASSETS = [fact_crm_call, fact_crm_call_recording, dim_crm_hangup_reason, fact_crm_call_ivr]
