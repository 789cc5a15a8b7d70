"""Open windows refresh from their high-water mark (issue 20): CRM, iSales and TRTC against the
simulator over HTTP, its data clock frozen and shared with the pipeline (``refresh.utc_now``);
push logs' incremental pulls are in tests/test_pushlog_pipeline.py, over the same mechanism."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from dagster import DagsterInstance, materialize

from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.defs.sources.isales import assets as isales
from pipelines.defs.sources.isales.client import ISalesResource
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.defs.sources.trtc import assets as trtc
from pipelines.defs.sources.trtc import plan as trtc_plan
from pipelines.defs.sources.trtc.client import TrtcResource
from pipelines.lib import refresh
from pipelines.lib.settings import SettingError
from pipelines.lib.warehouse import WarehouseResource
from simulator.app import Simulator
from tests.helpers import metadata
from tests.test_crm_pipeline import resources as crm_resources
from tests.test_trtc_client import resource as trtc_resource

TZ = ZoneInfo("Asia/Shanghai")
DAY = "2026-11-20"
DAY_START, DAY_END = datetime(2026, 11, 20, tzinfo=TZ), datetime(2026, 11, 21, tzinfo=TZ)
NOON = datetime(2026, 11, 20, 12, tzinfo=TZ)


class Clock:
    """The simulator's data clock and the pipeline's, moved together."""

    def __init__(self, simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.simulator, self.now = simulator, NOON
        monkeypatch.setattr(refresh, "utc_now", lambda: self.now.astimezone(UTC))
        monkeypatch.setattr(trtc_plan, "vendor_now", lambda: self.now.timestamp())

    def set(self, when: datetime) -> None:
        self.now = when
        self.simulator.state.clock.set(now=when.timestamp(), auth_wall=True)
        self.simulator.state.requests.clear()


@pytest.fixture
def clock(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(simulator, monkeypatch)
    c.set(NOON)
    return c


def run(assets: list, res: dict, key: str) -> object:
    return materialize(assets, partition_key=key, resources=res, instance=DagsterInstance.ephemeral())


def live(db: psycopg.Connection, table: str, column: str) -> tuple[int, datetime]:
    return db.execute(f"SELECT count(*), max({column}) FROM {table} WHERE _gone_at IS NULL").fetchone()  # noqa: S608


# -------------------------------------------------------------------------------------------- CRM


def test_crm_open_day_refreshes_from_its_mark_and_never_marks_gone(
    simulator: Simulator, clock: Clock, sim, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    simulator.settings["crm"].volume = 2_400  # 100 calls an hour: 1,200 by noon
    res = crm_resources(sim.env(), warehouse_url)
    first = metadata(run([crm.fact_crm_call], res, DAY), "core/fact_crm_call")
    assert first["pull"] == "full" and first["complete_pull"] is True
    assert first["high_water_mark"] == "none" and first["pulled_from"] == DAY_START.isoformat()
    n, mark = live(db, "core.fact_crm_call", "created_at")
    assert n == 1_201 and first["requests"] == 13

    # A call the vendor deletes early in the day, and one just under the mark that never arrived
    # (it comes in late, older than the mark): the incremental pull keeps the late one and
    # leaves the deleted one alone.
    (victim,) = db.execute("SELECT id FROM core.fact_crm_call ORDER BY created_at LIMIT 1").fetchone()
    late_id, late_at = db.execute(
        "SELECT id, created_at FROM core.fact_crm_call WHERE created_at < %s ORDER BY created_at DESC LIMIT 1",
        (mark,),
    ).fetchone()
    for table, key in (("core.fact_crm_call", "id"), ("raw.crm_call", "record_key")):
        db.execute(f"DELETE FROM {table} WHERE {key}::text = %s", (str(late_id),))  # noqa: S608
    httpx.post(f"{sim.url}/_sim/deleted", json={"ids": [f"crm:{victim}"]})

    clock.set(NOON + timedelta(minutes=30))
    second = metadata(run([crm.fact_crm_call], res, DAY), "core/fact_crm_call")
    assert second["pull"] == "incremental" and second["complete_pull"] is False
    assert datetime.fromisoformat(second["high_water_mark"]) == mark
    assert datetime.fromisoformat(second["pulled_from"]) == mark - timedelta(minutes=5)
    assert datetime.fromisoformat(second["pulled_to"]) == NOON + timedelta(minutes=40)  # now + slack
    assert second["overlap_minutes"] == 5 and second["requests"] == 1
    assert second.get("rows_gone core.fact_crm_call", 0) == 0
    assert db.execute("SELECT created_at FROM core.fact_crm_call WHERE id = %s", (late_id,)).fetchone() == (
        late_at,
    )
    assert live(db, "core.fact_crm_call", "created_at")[0] == 1_251  # 50 new, the late one, none gone
    pulls = db.execute(
        "SELECT kind, complete FROM raw.pull_log WHERE raw_table = 'raw.crm_call' ORDER BY fetched_at"
    ).fetchall()
    assert pulls == [("full", True), ("incremental", False)]

    # The day closes: its whole window is pulled, and only that pull marks the deleted call gone.
    clock.set(DAY_END + timedelta(hours=1))
    closed = metadata(run([crm.fact_crm_call], res, DAY), "core/fact_crm_call")
    assert closed["pull"] == "full" and closed["complete_pull"] is True
    assert (closed["pulled_from"], closed["pulled_to"]) == (DAY_START.isoformat(), DAY_END.isoformat())
    assert closed["rows_gone core.fact_crm_call"] == 1
    assert db.execute("SELECT id FROM core.fact_crm_call WHERE _gone_at IS NOT NULL").fetchall() == [
        (victim,)
    ]


def test_the_previous_day_is_pulled_whole_and_a_full_run_config_forces_a_full_pull(
    simulator: Simulator, clock: Clock, sim, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    simulator.settings["crm"].volume = 240
    res = crm_resources(sim.env(), warehouse_url)
    yesterday = "2026-11-19"
    for _ in range(2):  # a closed partition (the late-data pass) is never incremental
        meta = metadata(run([crm.fact_crm_call], res, yesterday), "core/fact_crm_call")
        assert meta["pull"] == "full" and meta["complete_pull"] is True
    run([crm.fact_crm_call], res, DAY)
    forced = materialize(
        [crm.fact_crm_call],
        partition_key=DAY,
        resources=res,
        run_config={"ops": {"core__fact_crm_call": {"config": {"full": True}}}},
        instance=DagsterInstance.ephemeral(),
    )
    meta = metadata(forced, "core/fact_crm_call")
    assert meta["pull"] == "full" and meta["pull_reason"] == "full pull asked for"


def test_recordings_are_asked_once_and_a_call_without_one_again_only_while_young(
    simulator: Simulator, clock: Clock, sim, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    simulator.settings["crm"].volume = 480  # 20 calls an hour
    res = crm_resources(sim.env(), warehouse_url)
    both = [crm.fact_crm_call, crm.fact_crm_call_recording]

    def views() -> int:
        return simulator.state.requests["crm /v1/callLogs/view"]

    first = metadata(run(both, res, DAY), "core/fact_crm_call_recording")
    calls = db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0]
    assert first["calls_asked"] == calls == views() and first["calls_skipped"] == 0
    waiting = first["calls_waiting"]
    assert waiting > 0  # talked-in calls whose answer held no recording (yet)

    # The open day's refresh asks only the calls never asked.
    clock.set(NOON + timedelta(hours=1))
    second = metadata(run(both, res, DAY), "core/fact_crm_call_recording")
    new = db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] - calls
    assert second["calls_asked"] == views() == new == 20 and second["calls_skipped"] == calls

    # Closed, and still young: the late-data pass asks the waiting calls again.
    clock.set(DAY_END + timedelta(hours=1))
    closed = metadata(run(both, res, DAY), "core/fact_crm_call_recording")
    assert closed["calls_asked"] == views() >= waiting > 0

    # Old: never again.
    clock.set(DAY_END + timedelta(hours=49))
    old = metadata(run(both, res, DAY), "core/fact_crm_call_recording")
    assert old["calls_asked"] == views() == 0 and old["calls_waiting"] == 0


# ----------------------------------------------------------------------------------------- iSales

OPEN_WEEK = "2026-11-16"


def test_isales_open_week_refreshes_each_vdn_from_its_own_mark(
    simulator: Simulator, clock: Clock, sim, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    settings = simulator.settings["isales"]
    settings.volume, settings.vdn_ids = 240, (1, 2)  # 10 an hour per VDN
    env = os.environ
    res = {
        "warehouse": WarehouseResource(url=warehouse_url),
        "isales": ISalesResource(
            base_url=env["ISALES_BASE_URL"],
            ak=env["ISALES_AK"],
            sk=env["ISALES_SK"],
            vdn_ids="1,2",
            timezone=env["ISALES_TIMEZONE"],
            sign_variant=env["ISALES_SIGN_VARIANT"],
            rate_per_s=0,
        ),
    }
    first = metadata(run([isales.fact_isales_api_call], res, OPEN_WEEK), "core/fact_isales_api_call")
    assert first["pull"] == "full" and first["complete_pull"] is True
    marks = dict(
        db.execute("SELECT vdn_id, max(oper_time) FROM core.fact_isales_api_call GROUP BY 1").fetchall()
    )
    clock.set(NOON + timedelta(hours=1))
    second = metadata(run([isales.fact_isales_api_call], res, OPEN_WEEK), "core/fact_isales_api_call")
    assert second["pull"] == "incremental" and second["complete_pull"] is False
    assert datetime.fromisoformat(second["high_water_mark"]) == max(marks.values())
    assert datetime.fromisoformat(second["pulled_from"]) == min(marks.values()) - timedelta(minutes=5)
    assert second["vdn_1_requests"] == second["vdn_2_requests"] == 1
    assert "| incremental |" in second["per_vdn"]
    assert dict(
        db.execute("SELECT vdn_id, count(*) FROM core.fact_isales_api_call GROUP BY 1").fetchall()
    ) == {
        1: first["vdn_1_rows"] + 10,
        2: first["vdn_2_rows"] + 10,
    }


# ------------------------------------------------------------------------------------------- TRTC

TRTC_WEEK = "2026-11-16"


def test_trtc_open_week_refreshes_from_its_mark_with_an_hour_of_overlap(
    simulator: Simulator, clock: Clock, sim, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    simulator.settings["trtc"].volume = 240
    res = {"warehouse": WarehouseResource(url=warehouse_url), "trtc": trtc_resource(sim.env())}
    first = metadata(run(trtc.ASSETS, res, TRTC_WEEK), "core/fact_trtc_call")
    assert first["pull"] == "full" and first["complete_pull"] is True
    n, mark = live(db, "core.fact_trtc_call", "started_at")
    clock.set(NOON + timedelta(minutes=15))
    second = metadata(run(trtc.ASSETS, res, TRTC_WEEK), "core/fact_trtc_call")
    assert second["pull"] == "incremental" and second["complete_pull"] is False
    assert second["overlap_minutes"] == 60
    assert datetime.fromisoformat(second["pulled_from"]) == mark.replace(microsecond=0) - timedelta(hours=1)
    assert second["requests"] == 1 < first["requests"]
    assert second.get("rows_gone core.fact_trtc_call", 0) == 0
    assert live(db, "core.fact_trtc_call", "started_at")[0] > n


# ------------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    "resource,variable,value",
    [
        (CrmResource, "CRM_OVERLAP_MINUTES", "five"),
        (CrmResource, "CRM_OVERLAP_MINUTES", "-1"),
        (CrmResource, "CRM_RECORDING_LOOKBACK_HOURS", "two days"),
        (CrmResource, "CRM_RECORDING_LOOKBACK_HOURS", "-48"),
        (ISalesResource, "ISALES_OVERLAP_MINUTES", "nan"),
        (TrtcResource, "TRTC_OVERLAP_MINUTES", "-0.5"),
        (PushLogResource, "PUSHLOG_OVERLAP_MINUTES", "15m"),
    ],
)
def test_an_overlap_or_lookback_that_is_not_a_number_of_0_or_more_fails_naming_it(
    resource: type, variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError, match=variable):
        resource.from_env()


def test_a_bad_duration_set_another_way_still_names_its_variable() -> None:
    bad = CrmResource.model_construct(overlap_minutes=float("inf"), recording_lookback_hours=-1)
    with pytest.raises(SettingError, match="CRM_OVERLAP_MINUTES"):
        bad.incremental()
    with pytest.raises(SettingError, match="CRM_RECORDING_LOOKBACK_HOURS"):
        bad.duration("recording_lookback_hours", "hours")


def test_the_plan_of_a_pull() -> None:
    window = (DAY_START, DAY_END)
    inc = refresh.Incremental(timedelta(minutes=5))
    mark = NOON - timedelta(seconds=0.5)
    assert refresh.plan(window, DAY_END, mark, inc).range == window  # closed: whole
    assert refresh.plan(window, NOON, None, inc).range == (DAY_START, NOON + timedelta(minutes=10))
    pull = refresh.plan(window, NOON, mark, inc)
    assert pull.kind == "incremental" and pull.lo == NOON - timedelta(minutes=5, seconds=1)
    # A vendor clock far ahead of ours: the pull still reaches past the mark.
    ahead = refresh.plan(window, NOON - timedelta(hours=1), NOON, inc)
    assert ahead.hi == NOON + timedelta(seconds=1)
    assert refresh.plan(window, NOON, mark, inc, full=True).kind == "full"
