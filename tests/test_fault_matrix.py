"""The fault matrix (issue 15, item 1): every source x every simulator fault mode, over real
HTTP into a real PostgreSQL, through the assets as Dagster runs them.

What each mode must lead to:

- transient faults the retry budget covers (a 5xx burst shorter than it, 429 with Retry-After,
  a timeout, a connection reset, a truncated or non-JSON body), put on a page after the first
  (mid-pagination): the run succeeds, every record lands, the metadata counts the retries;
- faults it does not cover (a 5xx burst longer than it, an error envelope): the run fails with
  an error naming the vendor and the endpoint, and the warehouse (every table of ``raw`` and
  ``core``) is exactly as before;
- a record PostgreSQL cannot take (poison): that record alone goes to ``raw.rejects`` with a
  reason naming the field, the rest lands;
- a vendor answering "no records" for a loaded window: nothing is lost or marked gone, and the
  blocking ``no_mass_disappearance`` check fails.

Kept fast: small volumes, two retries at a 10 ms backoff base (``<SOURCE>_MAX_RETRIES``,
``<SOURCE>_BACKOFF_BASE_S``), no client-side rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult, materialize, serialize_value
from psycopg import sql

from pipelines.definitions import build_resources
from pipelines.defs.sources.crm import assets as crm_assets
from pipelines.defs.sources.isales import assets as isales_assets
from pipelines.defs.sources.pushlog import assets as pushlog_assets
from pipelines.defs.sources.trtc import assets as trtc_assets
from pipelines.defs.sources.trtc import plan as trtc_plan
from pipelines.lib import refresh
from simulator.app import Simulator
from simulator.common import Fault
from tests.helpers import checks, metadata

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_RETRIES = 2


@dataclass(frozen=True)
class Source:
    """One source as the matrix drives it."""

    name: str  # the variables' prefix, lower case
    vendor: str  # how errors name the vendor
    fault_endpoint: str  # the simulator's fault-board key
    error_endpoint: str  # what an error names of the endpoint
    assets: list[AssetsDefinition]
    partition: str
    table: str  # the fact table (the first target of the load)
    asset_key: str
    setup: Callable[[Simulator, pytest.MonkeyPatch], None]  # volumes and clocks, before serving
    env: dict[str, str]  # settings on top of the simulator's (page sizes)
    customer_fields: tuple[str, ...]  # a record's customer data (phone numbers, names, user ids)


def _frozen(simulator: Simulator, when: datetime) -> None:
    # Signatures are still judged by the wall clock.
    simulator.state.clock.set(now=when.timestamp(), auth_wall=True)


def _crm(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    simulator.settings["crm"].volume = 250  # pages of 100, 100, 50


def _isales(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = simulator.settings["isales"]
    settings.volume, settings.vdn_ids = 30, (1,)  # 210 records: pages of 100, 100, 10
    _frozen(simulator, datetime(2026, 11, 20, 20, tzinfo=SHANGHAI))  # the week is closed


def _pushlog(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    simulator.settings["pushlog"].volume = 8  # 248 deliveries in October: pages of 100
    _frozen(simulator, datetime(2026, 11, 10, tzinfo=SHANGHAI))  # October is closed: a full pull
    monkeypatch.setattr(refresh, "utc_now", lambda: datetime.fromtimestamp(simulator.state.clock.now(), UTC))


def _trtc(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    simulator.settings["trtc"].volume = 30  # about 195 calls in 6.5 days: pages of 100
    _frozen(simulator, datetime(2026, 11, 15, 12, tzinfo=SHANGHAI))  # the week inside retention
    monkeypatch.setattr(trtc_plan, "vendor_now", lambda: simulator.state.clock.now())


SOURCES = [
    Source(
        "crm",
        "Udesk CRM",
        "/v1/callLogs",
        "/v1/callLogs",
        [crm_assets.fact_crm_call],
        "2026-11-20",
        "core.fact_crm_call",
        "core/fact_crm_call",
        _crm,
        {},
        ("customerNumber", "customerName"),
    ),
    Source(
        "isales",
        "Huawei CC-iSales",
        "/rest/isales/v1/openapi/campaigns/{vdnId}/calllogs",
        "/calllogs",
        [isales_assets.fact_isales_api_call],
        "2026-11-09",
        "core.fact_isales_api_call",
        "core/fact_isales_api_call",
        _isales,
        {},
        ("request",),
    ),
    Source(
        "pushlog",
        "Alibaba Cloud VMS",
        "/",
        "CloudListCurlLog",
        pushlog_assets.ASSETS,
        "2026-10-01",
        "core.fact_push_log",
        "core/fact_push_log",
        _pushlog,
        {"PUSHLOG_PAGE_SIZE": "100"},
        ("Params",),
    ),
    Source(
        "trtc",
        "Tencent TRTC",
        "/v1/records/get_records_by_filter",
        "/v1/records/get_records_by_filter",
        trtc_assets.ASSETS,
        "2026-11-09",
        "core.fact_trtc_call",
        "core/fact_trtc_call",
        _trtc,
        {},
        ("caller", "callees"),
    ),
]

# Faults on a page after the first: mid-pagination. "times" within the budget of two retries.
RECOVERED: dict[str, Fault] = {
    "500-burst-short": Fault("500", times=2, after=1),
    "502-burst-short": Fault("502", times=2, after=1),
    "503-burst-short": Fault("503", times=2, after=1),
    "429-retry-after": Fault("429", times=1, after=1, retry_after=0.4),
    "timeout": Fault("timeout", times=1, after=1, delay=6.0),
    "reset": Fault("reset", times=1, after=1),
    "truncated": Fault("truncated", times=1, after=1),
    "html": Fault("html", times=1, after=1),
}
FAILED: dict[str, Fault] = {
    "500-burst-long": Fault("500", times=-1, after=1),
    "502-burst-long": Fault("502", times=-1, after=1),
    "503-burst-long": Fault("503", times=-1, after=1),
    "envelope": Fault("envelope", times=-1, after=1),
}
POISONS = ["nul", "surrogate", "bignum"]
# The field each simulator poisons (a free-text one, or for "bignum" a number).
POISONED_FIELD = {
    ("crm", "text"): "customerName",
    ("crm", "number"): "duration",
    ("isales", "text"): "resultDesc",
    ("isales", "number"): "httpStatus",
    ("pushlog", "text"): "ResultText",
    ("pushlog", "number"): "Delay",
    ("trtc", "text"): "roomId",
    ("trtc", "number"): "totalUserNumber",
}


@pytest.fixture(params=SOURCES, ids=[s.name for s in SOURCES])
def source(request: pytest.FixtureRequest) -> Source:
    return request.param


@pytest.fixture
def served(
    source: Source, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Simulator:
    """The simulator set up for the source and serving; the source's variables tuned for speed."""
    source.setup(simulator, monkeypatch)
    request.getfixturevalue("sim")
    prefix = source.name.upper()
    for name, value in {"MAX_RETRIES": str(MAX_RETRIES), "BACKOFF_BASE_S": "0.01", "RATE_PER_S": "0"}.items():
        monkeypatch.setenv(f"{prefix}_{name}", value)
    for name, value in source.env.items():
        monkeypatch.setenv(name, value)
    return simulator


def run(source: Source, ok: bool = True) -> ExecuteInProcessResult:
    result = materialize(
        source.assets,
        partition_key=source.partition,
        resources=build_resources(),
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )
    if ok:
        assert result.success, failure_text(result)
    return result


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every error a run's events carry (a step's failure, a resource's that failed to start)."""
    errors = (getattr(e.event_specific_data, "error", None) for e in result.all_events)
    return "\n".join(error.to_string() for error in errors if error is not None)


def arm(simulator: Simulator, source: Source, fault: Fault) -> None:
    # A copy: the board counts down "times" on the one it holds.
    simulator.state.faults.arm(source.fault_endpoint, Fault(**vars(fault)))


def warehouse_checksum(db: psycopg.Connection) -> dict[str, str]:
    """A checksum of every row of every table of raw and core."""
    tables = db.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'core') AND table_type = 'BASE TABLE' ORDER BY 1, 2"
    ).fetchall()
    out = {}
    for schema, name in tables:
        row = db.execute(
            sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
            ).format(sql.Identifier(schema, name))
        ).fetchone()
        out[f"{schema}.{name}"] = f"{row[0]}:{row[1]}"
    return out


def count(db: psycopg.Connection, table: str, where: str = "TRUE") -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(sql.Identifier(*table.split(".")))
    return db.execute(query).fetchone()[0]


@pytest.mark.parametrize("mode", sorted(RECOVERED))
def test_a_transient_fault_within_the_retry_budget_is_retried_and_the_run_succeeds(
    source: Source, served: Simulator, db: psycopg.Connection, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = RECOVERED[mode]
    if mode == "timeout":  # the server stalls 6 s; the client gives up after 2 s
        monkeypatch.setenv(f"{source.name.upper()}_TIMEOUT_S", "2")
    arm(served, source, fault)
    result = run(source)
    meta = metadata(result, source.asset_key)
    if mode == "timeout":  # a machine slow enough may time out once more: still a retry
        assert meta["retries"] >= fault.times
    else:
        assert meta["retries"] == fault.times  # one retry per faulted request, nothing else
    assert served.state.faults.take(source.fault_endpoint) is None  # the fault was spent
    if mode == "429-retry-after":
        assert meta["retry_wait_s"] >= fault.retry_after  # the vendor's Retry-After, not a short backoff
    rows = count(db, source.table)
    assert rows == meta["records_received"] == meta["rows_landed"] > 100  # more than one page
    assert meta["rejects"] == 0 and checks(result)["no_rejects"] is True
    if "reconciles_with_api" in checks(result):
        assert checks(result)["reconciles_with_api"] is True


@pytest.mark.parametrize("mode", sorted(FAILED))
def test_a_fault_past_the_retry_budget_fails_the_run_naming_vendor_and_endpoint_and_changes_nothing(
    source: Source, served: Simulator, db: psycopg.Connection, mode: str
) -> None:
    run(source)  # the partition holds a clean load
    assert count(db, source.table) > 100
    before = warehouse_checksum(db)
    arm(served, source, FAILED[mode])
    result = run(source, ok=False)
    assert not result.success
    error = failure_text(result)
    assert source.vendor in error and source.error_endpoint in error
    if mode != "envelope":
        assert f"error {mode[:3]}" in error  # the status that retries did not cure
    assert warehouse_checksum(db) == before


@pytest.mark.parametrize("variant", POISONS)
def test_a_record_postgres_cannot_take_is_rejected_alone_and_the_rest_lands(
    source: Source,
    served: Simulator,
    db: psycopg.Connection,
    variant: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    served.state.faults.arm(source.fault_endpoint, Fault("poison", times=1, variant=variant))
    result = run(source)
    meta = metadata(result, source.asset_key)
    assert checks(result)["no_rejects"] is False
    rejects = db.execute("SELECT reason, record FROM raw.rejects").fetchall()
    assert len(rejects) == 1
    reason, record = rejects[0]
    field = POISONED_FIELD[(source.name, "number" if variant == "bignum" else "text")]
    assert f"'{field}'" in reason
    assert count(db, source.table) == meta["records_received"] - 1 > 100
    # The record's customer data appears in no log line, event, metadata or reason.
    values = [record.get(f) for f in source.customer_fields]
    values = [str(x) for v in values for x in (v if isinstance(v, list) else [v]) if x]
    out, err = capfd.readouterr()
    texts = [reason, caplog.text, out, err, *(serialize_value(e) for e in result.all_events)]
    assert values and not [v for v in values if len(v) >= 10 and any(v in t for t in texts)]


def test_a_vendor_answering_no_records_for_a_loaded_window_loses_nothing(
    source: Source, served: Simulator, db: psycopg.Connection
) -> None:
    run(source)
    assert count(db, source.table) > 100
    before = warehouse_checksum(db)
    served.state.faults.arm(source.fault_endpoint, Fault("empty", times=-1))
    result = run(source, ok=False)
    assert not result.success  # the blocking check fails the run, after the commit
    assert checks(result)["no_mass_disappearance"] is False
    after = warehouse_checksum(db)
    # nothing marked gone, nothing lost (a pull still records itself in raw.pull_log)
    assert {k: v for k, v in after.items() if k != "raw.pull_log"} == {
        k: v for k, v in before.items() if k != "raw.pull_log"
    }
