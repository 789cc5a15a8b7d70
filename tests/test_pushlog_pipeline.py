"""The push-log asset end to end (simulator over real HTTP, real PostgreSQL): a full first
pull of the open month, incremental refreshes that cost what is new, the closed month's
final pull that reconciles it, a failed run that changes nothing, and the schedules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagster import DagsterInstance, Definitions, build_schedule_context, materialize

from pipelines.defs.sources.pushlog import assets as pushlog_assets
from pipelines.defs.sources.pushlog import jobs
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.lib import refresh
from pipelines.lib.warehouse import WarehouseResource
from simulator.app import Simulator
from simulator.common import Fault
from simulator.pushlog import ID_STRIDE, PushLogData
from simulator.server import ThreadedServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
OCTOBER = "2026-10-01"
OCT_START = datetime(2026, 10, 1, tzinfo=SHANGHAI)
OCT_END = datetime(2026, 11, 1, tzinfo=SHANGHAI)
T1 = datetime(2026, 10, 10, 12, tzinfo=SHANGHAI)


@pytest.fixture
def server(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedServer]:
    """The simulator with late deliveries (up to 10 minutes), its data clock frozen at T1 and
    shared with the pipeline (signatures are still judged by the wall clock)."""
    settings = simulator.settings["pushlog"]
    settings.volume, settings.late_fraction = 1000, 0.1
    simulator.state.clock.set(now=T1.timestamp(), auth_wall=True)
    monkeypatch.setattr(refresh, "utc_now", lambda: datetime.fromtimestamp(simulator.state.clock.now(), UTC))
    srv = ThreadedServer(simulator).start()
    yield srv
    srv.stop()


@pytest.fixture
def set_clock(simulator: Simulator) -> Callable[[datetime], None]:
    def set_(t: datetime) -> None:
        simulator.state.clock.set(now=t.timestamp(), auth_wall=True)
        simulator.state.requests.clear()

    return set_


def resources(server: ThreadedServer, warehouse_url: str, **overrides: object) -> dict:
    env = server.env()
    pushlog = PushLogResource(
        base_url=env["PUSHLOG_BASE_URL"],
        access_key_id=env["PUSHLOG_ACCESS_KEY_ID"],
        access_key_secret=env["PUSHLOG_ACCESS_KEY_SECRET"],
        enterprise_id=env["PUSHLOG_ENTERPRISE_ID"],
        rate_per_s=0.0,
        **overrides,
    )
    return {"warehouse": WarehouseResource(url=warehouse_url), "pushlog": pushlog}


def run(server: ThreadedServer, warehouse_url: str, full: bool = False, ok: bool = True, **overrides: object):
    config = {"ops": {"core__fact_push_log": {"config": {"full": True}}}} if full else None
    return materialize(
        pushlog_assets.ASSETS,
        partition_key=OCTOBER,
        resources=resources(server, warehouse_url, **overrides),
        run_config=config,
        raise_on_error=ok,
        instance=DagsterInstance.ephemeral(),
    )


def meta(result) -> dict:  # noqa: ANN001
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def visible_ids(simulator: Simulator, now: datetime) -> set[int]:
    """What the vendor holds for October at ``now`` (the simulator's own model)."""
    data = PushLogData(simulator.settings["pushlog"])
    now_ms = int(now.timestamp() * 1000)
    end_ms = min(now_ms + 1, int(OCT_END.timestamp() * 1000))
    out = set()
    for day, ds, length, i_lo, i_hi in data.segments(int(OCT_START.timestamp() * 1000), end_ms):
        for i in range(i_lo, i_hi):
            rid = day * ID_STRIDE + i
            if ds + i * length // data.n + data.lag_ms(rid) <= now_ms:
                out.add(rid)
    return out


def ids(db: psycopg.Connection) -> set[int]:
    return {r[0] for r in db.execute("SELECT id FROM core.fact_push_log")}


def last_pull(db: psycopg.Connection) -> tuple | None:
    """The month's newest pull in raw.pull_log: (fetched_at, kind, pulled_from, pulled_to, complete)."""
    return db.execute(
        "SELECT fetched_at, kind, pulled_from, pulled_to, complete FROM raw.pull_log "
        "WHERE raw_table = 'raw.pushlog' AND partition_key = %s ORDER BY fetched_at DESC LIMIT 1",
        (OCTOBER,),
    ).fetchone()


def test_open_month_full_then_incremental_then_closed_month_final(
    server: ThreadedServer, simulator: Simulator, set_clock, warehouse_url: str, db: psycopg.Connection
) -> None:
    result = run(server, warehouse_url)
    first = meta(result)
    assert first["pull"] == "full" and first["complete_pull"] is True
    outcome = {e.check_name: (e.passed, e.severity.name) for e in result.get_asset_check_evaluations()}
    assert outcome == {
        "no_duplicate_keys": (True, "WARN"),
        "no_rejects": (True, "WARN"),
        "required_not_null": (True, "WARN"),
        "known_push_types": (True, "WARN"),
        "unexpected_fields": (True, "WARN"),
        "no_mass_disappearance": (True, "ERROR"),
    }
    assert ids(db) == visible_ids(simulator, T1)
    full_requests = first["requests"]
    # ~9,500 deliveries: the month's first page decides a split into a few sub-windows, each
    # costing at most one request more than one walk (a day per walk took 3 requests a day)
    n = len(visible_ids(simulator, T1))
    assert n // 500 + 1 < full_requests <= n // 500 + 1 + 5 < 9 * 3
    # A row the vendor no longer returns, early in the month (outside any incremental range).
    db.execute(
        "INSERT INTO core.fact_push_log (enterprise_id, id, create_time, _loaded_at) "
        "VALUES (7122600, 1, '2026-10-02 08:00+08', now() - interval '1 day')"
    )
    (high_water,) = db.execute("SELECT max(create_time) FROM core.fact_push_log").fetchone()
    assert last_pull(db)[1] == "full"

    # Half an hour later: ~21 new deliveries, some logged late.
    t2 = T1 + timedelta(minutes=30)
    set_clock(t2)
    before = len(ids(db))
    second = meta(run(server, warehouse_url))
    assert second["pull"] == "incremental" and second["complete_pull"] is False
    assert datetime.fromisoformat(second["high_water_mark"]) == high_water
    new = visible_ids(simulator, t2) - visible_ids(simulator, T1)
    assert 15 <= len(new) <= 30
    assert ids(db) == visible_ids(simulator, t2) | {1}  # exactly the new rows, late ones included
    assert len(ids(db)) - before == len(new)
    assert second["requests"] == simulator.state.requests["pushlog /"] == 1
    assert datetime.fromisoformat(second["pulled_from"]) == (high_water - timedelta(minutes=15)).replace(
        microsecond=0
    )
    assert db.execute("SELECT count(*) FROM core.fact_push_log WHERE id = 1").fetchone()[0] == 1

    # A day later: ~1000 new deliveries cost a few requests, not the month's.
    t3 = t2 + timedelta(days=1)
    set_clock(t3)
    before = len(ids(db))
    third = meta(run(server, warehouse_url))
    new = visible_ids(simulator, t3) - visible_ids(simulator, t2)
    assert third["pull"] == "incremental" and len(ids(db)) - before == len(new)
    assert third["requests"] <= len(new) // 500 + 3 < full_requests
    assert ids(db) == visible_ids(simulator, t3) | {1}

    # The month has closed: one complete pull that reconciles it and marks row 1 gone (kept).
    closed = datetime(2026, 11, 2, 3, tzinfo=SHANGHAI)
    set_clock(closed)
    final = meta(run(server, warehouse_url))
    assert final["pull"] == "full" and final["complete_pull"] is True
    assert (final["pulled_from"], final["pulled_to"]) == (
        OCT_START.isoformat(),
        OCT_END.isoformat(),
    )  # its zone
    assert ids(db) == visible_ids(simulator, closed) | {1} and len(ids(db)) == 31 * 1000 + 1
    assert db.execute("SELECT id FROM core.fact_push_log WHERE _gone_at IS NOT NULL").fetchall() == [(1,)]
    assert final["rows_gone core.fact_push_log"] == 1
    assert last_pull(db)[1:] == ("full", OCT_START, OCT_END, True)


def test_a_failed_pull_changes_neither_the_warehouse_nor_the_pull_log(
    server: ThreadedServer, simulator: Simulator, set_clock, warehouse_url: str, db: psycopg.Connection
) -> None:
    run(server, warehouse_url)
    snapshot = "SELECT count(*), sum(id), max(_loaded_at) FROM core.fact_push_log"
    raw_snapshot = "SELECT count(*), max(fetched_at) FROM raw.pushlog"
    before = (db.execute(snapshot).fetchone(), db.execute(raw_snapshot).fetchone(), last_pull(db))

    t2 = T1 + timedelta(days=20)
    set_clock(t2)
    # The vendor fails for good after 40 requests (~19k records, past the loader's first batch).
    simulator.state.faults.arm("/", Fault("500", times=-1, after=40))
    failed = run(server, warehouse_url, full=True, ok=False, max_retries=1, backoff_base_s=0.01)
    assert not failed.success
    assert simulator.state.requests["pushlog /"] > 40
    after = (db.execute(snapshot).fetchone(), db.execute(raw_snapshot).fetchone(), last_pull(db))
    assert after == before

    simulator.state.faults.clear()
    retry = meta(run(server, warehouse_url))
    assert retry["pull"] == "incremental"  # from the high-water mark, unchanged
    assert ids(db) == visible_ids(simulator, t2)


def test_schedules_refresh_the_open_month_and_finish_the_closed_one(warehouse_url: str, db) -> None:  # noqa: ANN001
    defs = Definitions(
        assets=jobs.ASSETS,
        jobs=jobs.JOBS,
        schedules=jobs.SCHEDULES,
        asset_checks=jobs.FRESHNESS_CHECKS,
        resources={
            "warehouse": WarehouseResource(url=warehouse_url),
            "pushlog": PushLogResource(
                base_url="http://x", access_key_id="a", access_key_secret="b", enterprise_id="1"
            ),
        },
    )
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    hourly = jobs.refresh_open_month.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=datetime(2026, 10, 20, 9, 15, tzinfo=SHANGHAI), repository_def=repo
        )
    )
    assert [r.partition_key for r in hourly.run_requests] == [OCTOBER]

    def final_tick(day: int):  # noqa: ANN202
        context = build_schedule_context(
            scheduled_execution_time=datetime(2026, 11, day, 2, tzinfo=SHANGHAI),
            resources={"warehouse": WarehouseResource(url=warehouse_url)},
            repository_def=repo,
        )
        return jobs.final_pull_schedule.evaluate_tick(context)

    assert [r.partition_key for r in final_tick(1).run_requests] == [OCTOBER]
    db.execute(
        "INSERT INTO raw.pull_log (raw_table, partition_key, fetched_at, kind, pulled_from, pulled_to, complete, "
        "records) VALUES ('raw.pushlog', %s, %s, 'full', %s, %s, true, 0)",
        (OCTOBER, OCT_END + timedelta(hours=2), OCT_START, OCT_END),
    )
    skipped = final_tick(2)
    assert not skipped.run_requests and "already had its final pull" in skipped.skip_message
