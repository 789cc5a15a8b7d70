"""The TRTC source end to end: simulator over real HTTP -> Dagster -> PostgreSQL.

The simulator's data clock is frozen and the pipeline's idea of the vendor's now
(``plan.vendor_now``) follows it, so a test can make the vendor forget part of a week.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from pipelines.defs.sources.trtc import assets as trtc
from pipelines.defs.sources.trtc import plan
from pipelines.lib.warehouse import WarehouseResource
from simulator import trtc as simtrtc
from simulator.common import Fault
from tests.helpers import checks, metadata
from tests.test_trtc_client import resource

TZ = ZoneInfo("Asia/Shanghai")
WEEK_KEY = "2026-11-09"
WEEK = datetime(2026, 11, 9, tzinfo=TZ)
END = WEEK + timedelta(days=7)
DAY_S = 86_400
PATH = "/v1/records/get_records_by_filter"


def run(
    res: dict,
    partition_key: str = WEEK_KEY,
    instance: DagsterInstance | None = None,
    raise_on_error: bool = True,
):  # noqa: ANN201
    return materialize(
        trtc.ASSETS,
        partition_key=partition_key,
        resources=res,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def calls_between(volume: int, lo: float, hi: float) -> int:
    """How many calls the simulator generates with lo <= startCallTs < hi."""
    return simtrtc.count_until(int(hi) - 1, volume) - simtrtc.count_until(int(lo) - 1, volume)


class VendorClock:
    """Moves the simulator's data clock and the pipeline's view of the vendor's now together."""

    def __init__(self, simulator, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
        self.simulator, self.now = simulator, 0.0
        monkeypatch.setattr(plan, "vendor_now", lambda: self.now)

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()
        # Signatures are still judged by the wall clock: UserSigs are made from it.
        self.simulator.state.clock.set(now=self.now, auth_wall=True)


@pytest.fixture
def clock(simulator, monkeypatch):  # noqa: ANN001, ANN201
    c = VendorClock(simulator, monkeypatch)
    c.set(WEEK + timedelta(days=6, hours=12))
    return c


@pytest.fixture
def res(clock, sim, warehouse_url):  # noqa: ANN001, ANN201
    return {"warehouse": WarehouseResource(url=warehouse_url), "trtc": resource(sim.env())}


def test_loads_a_week_typed_with_callees_and_unknown_results_listed(simulator, res, db) -> None:  # noqa: ANN001
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    expected = calls_between(500, WEEK.timestamp(), (WEEK + timedelta(days=6, hours=12)).timestamp() + 1)
    assert meta["api_total"] == meta["rows_landed"] == meta["dagster/row_count"] == expected
    assert meta["complete_pull"] is True and meta["not_fetched_past_retention"] == "none"
    # the week is one range: as few requests as 100-call pages allow
    assert meta["requests"] == meta["pages"] == -(-expected // 100) and meta["request_windows"] == 1
    outcome = checks(result)
    assert all(
        outcome[c]
        for c in ("reconciles_with_api", "no_rejects", "no_duplicate_keys", "within_vendor_retention")
    )
    assert outcome["callees_match_calls"]

    # Typed exactly as the vendor's records say (compare with the simulator's own records).
    sample = [simtrtc.make_record(simulator.settings["trtc"], g) for g in range(_first_g(), _first_g() + 300)]
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT call_id, extract(epoch FROM started_at)::bigint, extract(epoch FROM accepted_at)::bigint,"
            " extract(epoch FROM ended_at)::bigint, callees, caller, call_result, room_id, sdk_app_id"
            " FROM core.fact_trtc_call WHERE call_id = ANY(%s)",
            ([r["callId"] for r in sample],),
        )
    }
    assert len(rows) == len(sample)
    for rec in sample:
        started, accepted, ended, callees, caller, result_, room, app = rows[rec["callId"]]
        assert started == rec["startCallTs"] and ended == rec["endTs"]
        assert accepted == (rec.get("acceptTs") or None)  # 0 or absent: not answered
        assert callees == rec["callees"] and caller == rec["caller"] and result_ == rec["callResult"]
        assert room == rec["roomId"] and app == rec["sdkAppId"]
    assert any(r.get("acceptTs", 0) == 0 for r in sample)  # the NULL case was exercised

    # One callee row per call and callee, flagged when the caller lists itself ("offline").
    n_pairs, n_self = db.execute(
        "SELECT (SELECT count(*) FROM core.fact_trtc_call f, unnest(f.callees) u),"
        " (SELECT count(*) FROM core.fact_trtc_call_callee WHERE is_caller)"
    ).fetchone()
    assert meta["rows_upserted core.fact_trtc_call_callee"] == n_pairs
    offline = db.execute("SELECT count(*) FROM core.fact_trtc_call WHERE call_result = 'offline'").fetchone()[
        0
    ]
    assert offline > 0 and n_self == offline

    # offline is outside the documented enum but known vendor behaviour: counted, not an alarm.
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "known_enums")
    assert evaluation.passed
    assert meta["offline_calls"] == offline


def _first_g() -> int:
    return simtrtc.count_until(int(WEEK.timestamp()) - 1, 500)


def test_the_first_pull_of_a_week_loads_calls_seconds_inside_the_retention_edge(
    clock, simulator, res, db
) -> None:  # noqa: ANN001
    # The vendor's clock set so that call g is 31 s inside its 7-day retention (the call before
    # it, ~3 min older, has expired): the first pull of the week loads g and every later call.
    g = _first_g() + 1000  # on the week's third day
    t = simtrtc.start_ts(g, 500)
    clock.set(datetime.fromtimestamp(t + plan.RETENTION_S - 31, UTC))
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    seed = simulator.settings["trtc"].seed
    held = {simtrtc.call_id(seed, k) for k in range(g, simtrtc.count_until(int(END.timestamp()) - 1, 500))}
    loaded = {r[0] for r in db.execute("SELECT call_id FROM core.fact_trtc_call")}
    assert loaded == held and meta["complete_pull"] is True and meta["api_total"] == len(held)
    edge = datetime.fromtimestamp(t - 31 + plan.DEFAULT_SKEW_S, TZ)
    assert meta["requested_range"] == f"[{edge.isoformat()}, {END.isoformat()})"
    # The edge hour (~20 calls) is one page, the rest one range: the paging minimum plus one.
    assert meta["requests"] == -(-len(held) // 100) + 1


def test_a_week_without_calls_is_a_success_with_no_rows(simulator, res, db) -> None:  # noqa: ANN001
    simulator.settings["trtc"].volume = 0  # every day answers 70011
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    assert result.success and meta["rows_landed"] == 0 and meta["api_total"] == 0
    assert meta["complete_pull"] is True and meta["walk_stops"] == {"70011": 1}
    assert checks(result)["reconciles_with_api"] and checks(result)["no_rejects"]
    assert db.execute("SELECT count(*) FROM core.fact_trtc_call").fetchone()[0] == 0


SNAPSHOT = """
SELECT count(*), md5(string_agg(t::text, '|' ORDER BY call_id))
FROM (SELECT f.call_id, f.started_at, f.accepted_at, f.ended_at, f.callees, f.call_result, f._loaded_at,
             r.fetched_at, r.record
      FROM core.fact_trtc_call f JOIN raw.trtc_call r ON r.record_key = f.sdk_app_id || ':' || f.call_id
      WHERE f.started_at >= %s AND f.started_at < %s) t
"""


def _plant(db: psycopg.Connection, call_id: str, at: datetime) -> None:
    """A call the vendor never returns, as if an earlier pull had landed it."""
    old = at - timedelta(days=1)
    rec = f'{{"callId": "{call_id}", "sdkAppId": 1400000001, "startCallTs": {int(at.timestamp())}}}'
    db.execute(
        "INSERT INTO raw.trtc_call VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
        (f"1400000001:{call_id}", WEEK_KEY, WEEK, END, old, rec),
    )
    db.execute(
        "INSERT INTO core.fact_trtc_call (sdk_app_id, call_id, started_at, _loaded_at) VALUES (1400000001, %s, %s, %s)",
        (call_id, at, old),
    )
    db.execute(
        "INSERT INTO core.fact_trtc_call_callee VALUES (1400000001, %s, 'u1', %s, false, %s)",
        (call_id, at, old),
    )


def test_after_the_vendor_forgets_part_of_the_week_nothing_is_lost_or_overwritten(clock, res, db) -> None:  # noqa: ANN001
    first = run(res)
    assert metadata(first, "core/fact_trtc_call")["complete_pull"] is True
    # Ten days after the week began, the vendor holds only its last four days (and a half day
    # more than at the first run).
    clock.set(WEEK + timedelta(days=10))
    edge = WEEK + timedelta(days=3, seconds=plan.DEFAULT_SKEW_S)  # retention (7 days) less the skew
    before = db.execute(SNAPSHOT, (WEEK, edge)).fetchone()
    assert before[0] > 0
    _plant(db, "gone-before-the-edge", WEEK + timedelta(days=1))  # past retention: must stay
    _plant(db, "dropped-by-the-vendor", WEEK + timedelta(days=5))  # within: a complete pull marks it gone

    instance = DagsterInstance.ephemeral()
    second = run(res, instance=instance)
    meta = metadata(second, "core/fact_trtc_call")
    assert meta["not_fetched_past_retention"] == f"[{WEEK.isoformat()}, {edge.isoformat()})"
    assert meta["requested_range"] == f"[{edge.isoformat()}, {END.isoformat()})"
    assert meta["rows_kept_from_earlier_pulls"] == before[0] + 1
    evaluation = next(
        e for e in second.get_asset_check_evaluations() if e.check_name == "within_vendor_retention"
    )
    # Routine: the expired start of the week was landed by the earlier pull, and is kept.
    assert evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert "past the vendor's 7-day retention" in evaluation.description
    assert "pulled earlier are kept unchanged" in evaluation.description
    warnings = [
        e.user_message
        for e in instance.all_logs(second.run_id)
        if e.level == logging.WARNING and "was not requested" in e.user_message
    ]
    assert warnings and WEEK.isoformat() in warnings[0]

    # The part the vendor forgot: byte for byte as before, _loaded_at and fetched_at included.
    _plant_gone = db.execute(
        "SELECT count(*) FROM core.fact_trtc_call WHERE call_id = 'gone-before-the-edge'"
    ).fetchone()[0]
    assert _plant_gone == 1
    after = db.execute(
        SNAPSHOT.replace("WHERE", "WHERE f.call_id <> 'gone-before-the-edge' AND"), (WEEK, edge)
    )
    assert after.fetchone() == before
    # The part it still holds was pulled again; the week is whole, the late half day added.
    total = calls_between(500, WEEK.timestamp(), END.timestamp())
    assert (
        db.execute(
            "SELECT count(*) FROM core.fact_trtc_call WHERE call_id NOT LIKE 'gone%%' AND _gone_at IS NULL"
        ).fetchone()[0]
        == total
    )
    # Marking gone stays inside the pulled range: the planted call the vendor never returned
    # keeps its rows, marked gone in core and callees, and raw keeps the record.
    for table in ("core.fact_trtc_call", "core.fact_trtc_call_callee"):
        assert db.execute(
            f"SELECT count(*), count(_gone_at) FROM {table} WHERE call_id = 'dropped-by-the-vendor'"
        ).fetchone() == (1, 1)
        assert (
            db.execute(
                f"SELECT count(_gone_at) FROM {table} WHERE call_id = 'gone-before-the-edge'"
            ).fetchone()[0]
            == 0
        )
    assert (
        db.execute("SELECT count(*) FROM raw.trtc_call WHERE record_key LIKE '%%dropped%%'").fetchone()[0]
        == 1
    )
    assert (
        db.execute("SELECT count(*) FROM raw.trtc_call WHERE record_key LIKE '%%gone-before%%'").fetchone()[0]
        == 1
    )
    assert meta["rows_gone core.fact_trtc_call"] == 1


def test_a_week_wholly_past_retention_requests_nothing_and_touches_nothing(clock, simulator, res, db) -> None:  # noqa: ANN001
    run(res)
    before = db.execute(SNAPSHOT, (WEEK, END)).fetchone()
    clock.set(END + timedelta(days=8))
    simulator.state.requests.clear()
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    assert simulator.state.requests[f"trtc {PATH}"] == 0 and meta["requests"] == 0
    assert meta["requested_range"] == "none" and meta["rows_kept_from_earlier_pulls"] == before[0]
    assert checks(result)["within_vendor_retention"]  # all of it was pulled while the vendor held it
    assert db.execute(SNAPSHOT, (WEEK, END)).fetchone() == before


def test_a_first_pull_after_part_of_the_week_expired_warns_that_those_calls_are_lost(clock, res) -> None:  # noqa: ANN001
    clock.set(WEEK + timedelta(days=10))
    result = run(res)
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "within_vendor_retention"
    )
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert "cannot be fetched any more" in evaluation.description


def test_many_pages_never_trip_the_200_per_second_limit(clock, simulator, sim, warehouse_url) -> None:  # noqa: ANN001
    # Small pages are cheap to serve, so the client could go far faster than 200/s: the
    # limiter, not the machine, is what holds it back.
    simulator.settings["trtc"].volume = 600
    simulator.state.latency_s = 0.005
    res = {"warehouse": WarehouseResource(url=warehouse_url), "trtc": resource(sim.env(), page_size=10)}
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    assert meta["pages"] >= 380 and meta["rows_landed"] == meta["api_total"]
    assert simtrtc.rate_limited_count(simulator.state) == 0
    assert meta["retries"] == 0 and meta["rate_limit_wait_s"] > 0


def test_schema_drift_is_read(clock, simulator, res, db) -> None:  # noqa: ANN001
    # Drift on some pages: startCallTs as a string, callees as one comma-joined string.
    simulator.state.faults.arm(PATH, Fault("drift", times=3, after=2))
    result = run(res)
    assert checks(result)["no_rejects"] and checks(result)["callees_match_calls"]
    n = db.execute(
        "SELECT count(*) FROM core.fact_trtc_call WHERE callees IS NULL OR started_at IS NULL"
    ).fetchone()
    assert n[0] == 0
    drifted = db.execute(
        "SELECT count(*) FROM raw.trtc_call WHERE jsonb_typeof(record->'callees') = 'string'"
    ).fetchone()[0]
    assert drifted > 0  # landed verbatim, read all the same


def test_the_pull_recency_check_warns_after_a_day_and_fails_before_data_expires(
    clock, res, db, warehouse_url
) -> None:  # noqa: ANN001
    wh = WarehouseResource(url=warehouse_url)
    never = trtc.pulls_keep_up_with_retention(warehouse=wh)
    assert not never.passed and never.severity == AssetCheckSeverity.WARN
    run(res)
    now = datetime.fromtimestamp(clock.now, UTC)
    for age, passed, severity in (
        (timedelta(hours=2), True, None),
        (timedelta(days=2), False, AssetCheckSeverity.WARN),
        (timedelta(days=6), False, AssetCheckSeverity.ERROR),
    ):
        db.execute("UPDATE raw.pull_log SET fetched_at = %s WHERE raw_table = 'raw.trtc_call'", (now - age,))
        result = trtc.pulls_keep_up_with_retention(warehouse=wh)
        assert result.passed is passed
        if severity is not None:
            assert result.severity == severity


# -- history (issue 11) ------------------------------------------------------------------------

GONE = """
SELECT (SELECT count(*) FROM core.fact_trtc_call), (SELECT count(_gone_at) FROM core.fact_trtc_call),
       (SELECT count(*) FROM core.fact_trtc_call_callee), (SELECT count(_gone_at) FROM core.fact_trtc_call_callee),
       (SELECT count(*) FROM raw.trtc_call)
"""


def test_a_call_the_vendor_deletes_is_kept_marked_gone_and_cleared_when_it_comes_back(
    clock, simulator, res, db
) -> None:  # noqa: ANN001
    run(res)
    calls, _, callees, _, raw = db.execute(GONE).fetchone()
    call_id, n_callees = db.execute(
        "SELECT call_id, cardinality(callees) FROM core.fact_trtc_call WHERE call_result = 'normal_end'"
        " AND call_type = 'group' ORDER BY started_at LIMIT 1"
    ).fetchone()
    assert n_callees >= 2
    simulator.state.deleted.add(f"trtc:{call_id}")

    second = run(res)
    meta = metadata(second, "core/fact_trtc_call")
    assert (
        meta["rows_gone core.fact_trtc_call"] == 1
        and meta["rows_gone core.fact_trtc_call_callee"] == n_callees
    )
    assert meta["complete_pull"] is True and checks(second)["no_mass_disappearance"]
    # Every row is still there; the deleted call's, and only its, marked gone at that pull.
    assert db.execute(GONE).fetchone() == (calls, 1, callees, n_callees, raw)
    gone_at = db.execute(
        "SELECT _gone_at FROM core.fact_trtc_call WHERE call_id = %s", (call_id,)
    ).fetchone()[0]
    fetched = db.execute(
        "SELECT max(fetched_at) FROM raw.pull_log WHERE raw_table = 'raw.trtc_call'"
    ).fetchone()[0]
    assert gone_at == fetched  # the time of the pull that first missed it
    assert db.execute(
        "SELECT count(*), count(_gone_at) FROM core.fact_trtc_call_callee WHERE call_id = %s", (call_id,)
    ).fetchone() == (n_callees, n_callees)
    assert db.execute(
        "SELECT count(*) FROM raw.trtc_call WHERE record->>'callId' = %s", (call_id,)
    ).fetchone() == (1,)

    simulator.state.deleted.clear()  # the vendor returns it again
    third = run(res)
    assert metadata(third, "core/fact_trtc_call")["rows_gone core.fact_trtc_call"] == 0
    assert db.execute(GONE).fetchone() == (calls, 0, callees, 0, raw)


def test_a_vendor_answering_70011_for_a_loaded_week_loses_nothing_and_the_check_fails(
    clock, simulator, res, db
) -> None:  # noqa: ANN001
    run(res)
    before = db.execute(GONE).fetchone()
    calls, _, callees, _, _ = before
    simulator.state.faults.arm(PATH, Fault("empty", times=-1))  # "no records", whatever is asked

    result = run(res, raise_on_error=False)
    assert not result.success  # the blocking check fails the run, after the commit
    meta = metadata(result, "core/fact_trtc_call")
    assert meta["rows_landed"] == 0 and meta["walk_stops"] == {"70011": 1} and meta["complete_pull"] is True
    assert db.execute(GONE).fetchone() == before  # every row kept, none marked gone, raw whole
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_mass_disappearance"
    )
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    text = evaluation.description
    window = f"[{WEEK.isoformat()}, {END.isoformat()})"
    assert f"trtc core.fact_trtc_call {window}: the pull returned 0 of {calls} known rows" in text
    assert f"trtc core.fact_trtc_call_callee {window}: the pull returned 0 of {callees} known rows" in text


@pytest.mark.parametrize(
    ("variant", "field"), [("nul", "roomId"), ("surrogate", "roomId"), ("bignum", "totalUserNumber")]
)
def test_a_record_postgres_cannot_take_is_rejected_alone_and_the_rest_lands(
    clock, simulator, res, db, variant: str, field: str
) -> None:  # noqa: ANN001
    # The first answer (page 1 of the week: no part of it is near the retention edge) carries
    # the poison in its middle record, the week's 51st call.
    simulator.state.faults.arm(PATH, Fault("poison", variant=variant))
    bad = simtrtc.make_record(simulator.settings["trtc"], _first_g() + 50)
    result = run(res)
    meta = metadata(result, "core/fact_trtc_call")
    assert result.success and not checks(result)["no_rejects"]
    rejects = db.execute(
        "SELECT source_table, partition_key, record_key, reason, record FROM raw.rejects"
    ).fetchall()
    assert len({(r[2], r[3]) for r in rejects}) == 1
    _, key, record_key, reason, record = rejects[0]
    assert key == WEEK_KEY and record_key == f"1400000001:{bad['callId']}"
    assert f"field '{field}'" in reason
    assert bad["roomId"] not in reason and bad["caller"] not in reason and "999999" not in reason
    assert record["callId"] == bad["callId"] and record["caller"] == bad["caller"]
    # The rest of the page and of the week is in core; the poisoned call is not.
    expected = calls_between(500, WEEK.timestamp(), clock.now + 1)
    assert meta["api_total"] == expected
    assert db.execute("SELECT count(*) FROM core.fact_trtc_call").fetchone()[0] == expected - 1
    assert (
        db.execute(
            "SELECT count(*) FROM core.fact_trtc_call WHERE call_id = %s", (bad["callId"],)
        ).fetchone()[0]
        == 0
    )
