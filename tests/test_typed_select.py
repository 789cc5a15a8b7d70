"""The fast and the guarded normalizing SELECTs agree, and the loader falls back to the
guarded one only for a batch the fast one refuses."""

import json

import psycopg
import pytest

from pipelines.defs.sources.crm.normalize import CALL_FIELDS
from pipelines.lib.typed_select import typed_select

GOOD = {
    "id": 1,
    "createTime": "2026-11-20 08:00:00",
    "callId": "a",
    "province": 3,
    "result": "2",
    "duration": " 7 ",
}
CASES = [
    GOOD,
    {**GOOD, "id": "2", "createTime": "2026-11-20T08:00:00.5", "province": None, "spNumber": "0213"},
    {**GOOD, "id": 3, "createTime": 1763600000000},  # drifted to epoch millis: rejected by both
    {**GOOD, "id": 4, "callId": ""},  # a required field empty: rejected by both
    {**GOOD, "id": 5, "agentName": {"nested": 1}, "customerName": 12},  # text fields take any JSON
]


def _rows(db: psycopg.Connection, select: str) -> list[tuple]:
    return db.execute(f"SELECT * FROM ({select}) n ORDER BY _record_key", {"tz": "Asia/Shanghai"}).fetchall()


@pytest.fixture
def stage(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("CREATE TEMP TABLE _stage_records (record_key text, rec jsonb)")
    return db


def _fill(db: psycopg.Connection, records: list[dict]) -> None:
    db.execute("TRUNCATE _stage_records")
    for r in records:
        db.execute("INSERT INTO _stage_records VALUES (%s, %s::jsonb)", (str(r["id"]), json.dumps(r)))


def test_fast_and_guarded_agree_on_clean_and_rejectable_records(stage: psycopg.Connection) -> None:
    _fill(stage, CASES)
    fast = _rows(stage, typed_select(CALL_FIELDS, fast=True))
    guarded = _rows(stage, typed_select(CALL_FIELDS, fast=False))
    assert fast == guarded
    rejects = {row[0]: row[-1] for row in fast if row[-1]}
    assert set(rejects) == {"3", "4"}
    assert "createTime" in rejects["3"] and "callId" in rejects["4"]
    by_key = {row[0]: row for row in fast}
    assert (
        by_key["1"][1:3] == (1, by_key["1"][2]) and by_key["1"][2].isoformat() == "2026-11-20T00:00:00+00:00"
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"province": "north"}, "province is not an integer"),
        ({"result": 40000}, "result is not a small integer"),
        ({"duration": 7.5}, "duration is not an integer"),
        ({"createTime": "2026-13-01 00:00:00"}, "createTime missing or malformed"),
    ],
)
def test_fast_path_raises_where_the_guarded_one_rejects(
    stage: psycopg.Connection, bad: dict, reason: str
) -> None:
    _fill(stage, [GOOD, {**GOOD, "id": 9, **bad}])
    with pytest.raises(psycopg.errors.DataError), stage.transaction():
        _rows(stage, typed_select(CALL_FIELDS, fast=True))
    guarded = {row[0]: row[-1] for row in _rows(stage, typed_select(CALL_FIELDS, fast=False))}
    assert guarded == {"1": None, "9": reason}


def test_loader_falls_back_for_a_refused_batch_only(warehouse_url: str, db: psycopg.Connection) -> None:
    import asyncio
    from datetime import UTC, datetime

    from pipelines.defs.sources.crm.normalize import CALL_LOGS
    from pipelines.lib.loading import PartitionLoad

    def page(records: list[dict]) -> bytes:
        return json.dumps({"code": 200, "data": {"list": records, "total": 3}}).encode()

    async def load() -> None:
        async with await psycopg.AsyncConnection.connect(warehouse_url) as conn:
            window = (datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 20, 16, tzinfo=UTC))
            async with PartitionLoad(
                conn, CALL_LOGS, partition_key="2026-11-20", window=window, fetched_at=datetime.now(UTC),
                params={"tz": "Asia/Shanghai"}, batch_records=2,
            ) as pl:  # fmt: skip
                await pl.add(page([GOOD, {**GOOD, "id": 2}]), 2)  # a clean batch
                await pl.add(page([{**GOOD, "id": 3, "province": "north"}, {**GOOD, "id": 4}]), 2)
                await pl.finish(complete=True)

    asyncio.run(load())
    assert [r[0] for r in db.execute("SELECT id FROM core.fact_crm_call ORDER BY id")] == [1, 2, 4]
    assert db.execute("SELECT record_key, reason FROM raw.rejects").fetchall() == [
        ("3", "province is not an integer")
    ]


def test_a_body_that_is_not_utf8_fails_the_load_and_lands_nothing(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    """The HTTP layer rejects such a body before it gets here; the loader checks again, since
    its bodies travel as bytes: the load raises, naming the encoding, and leaves nothing."""
    import asyncio
    from datetime import UTC, datetime

    import pytest

    from pipelines.defs.sources.crm.normalize import CALL_LOGS
    from pipelines.lib.loading import LoadError, PartitionLoad

    good = json.dumps({"code": 200, "data": {"list": [GOOD], "total": 2}}).encode()
    bad = json.dumps(
        {"code": 200, "data": {"list": [{**GOOD, "id": 2, "agentName": "X"}], "total": 2}}
    ).encode()
    bad = bad.replace(b'"X"', b'"\xff"')

    async def load() -> None:
        async with await psycopg.AsyncConnection.connect(warehouse_url) as conn:
            window = (datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 20, 16, tzinfo=UTC))
            async with PartitionLoad(
                conn, CALL_LOGS, partition_key="2026-11-20", window=window, fetched_at=datetime.now(UTC),
                params={"tz": "Asia/Shanghai"}, batch_records=1,
            ) as pl:  # fmt: skip
                await pl.add(good, 1)  # lands in its own batch first
                await pl.add(bad, 1)
                await pl.finish(complete=True)

    with pytest.raises(LoadError, match="not UTF-8"):
        asyncio.run(load())
    assert db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM raw.crm_call").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM raw.rejects").fetchone()[0] == 0


# -- every source: the two SELECTs agree, and the guarded one names what it rejects ---------

PARAMS = {"tz": "Asia/Shanghai", "vdn_id": 1, "master_user_id": 1001, "sdk_app_id": 1400000001}
DAY = 20_400  # 2025-11-08, days since 1970-01-01


def _crm_calls(**kind: bool) -> list[dict]:
    from simulator import crm

    s = crm.Settings()
    records = [crm.make_call(s, DAY, i, **kind) for i in range(300)]
    # the drift forms the normalizer reads (spNumber as a number)
    return records + [{**r, "spNumber": int(r["spNumber"])} for r in records[:20] if r.get("spNumber")]


def _crm_hangup_reasons() -> list[dict]:
    from simulator import crm

    return [{"id": i, "name": n} for i, n in crm.HANGUP_REASONS] + [
        {"id": str(i + 100), "name": n} for i, n in crm.HANGUP_REASONS
    ]


def _isales_calls() -> list[dict]:
    from simulator import isales

    logs = isales.CallLogs(isales.Settings(volume=300))
    day = logs.day(1, DAY)
    return [logs.record(1, day, i, drift) for i in range(300) for drift in (False, True)]


def _isales_servers() -> list[dict]:
    from simulator import isales

    return [
        {**r, "serverId": f"{r['serverId']}{vdn}"}
        for vdn in (1, 2)
        for r in isales.file_servers(isales.Settings(file_servers_per_vdn=15), vdn)
    ]


def _pushlogs() -> list[dict]:
    from simulator import pushlog

    data = pushlog.PushLogData(pushlog.Settings(volume=400))
    lo = pushlog._day_start_ms("Asia/Shanghai", DAY)
    return [json.loads(t) for t in data.page(lo, lo + 86_400_000, lo + 10 * 86_400_000, 0, 400, None)]


def _trtc_calls() -> list[dict]:
    from simulator import trtc

    s = trtc.Settings()
    records = [trtc.make_record(s, DAY * s.volume + g) for g in range(400)]
    drift = [trtc._drift({**r, "callId": r["callId"] + "-d"}) for r in records[:40]]
    return records + drift + [{k: v for k, v in r.items() if k != "sdkAppId"} for r in records[40:60]]


def _sources() -> dict[str, tuple]:
    """name -> (SourceSpec, its Fields per target or None, rows_from, clean records)."""
    from pipelines.defs.sources.crm import normalize as crm
    from pipelines.defs.sources.isales import normalize as isales
    from pipelines.defs.sources.pushlog import normalize as pushlog
    from pipelines.defs.sources.trtc import normalize as trtc

    return {
        "crm calls": (crm.CALL_LOGS, crm.CALL_FIELDS, None, _crm_calls),
        "crm recordings": (
            crm.RECORDINGS,
            crm.RECORDING_FIELDS,
            "callLogRecordFoundResponseList",
            lambda: _crm_calls(detail=True),
        ),
        "crm hangup reasons": (crm.HANGUP_REASONS, crm.HANGUP_REASON_FIELDS, None, _crm_hangup_reasons),
        "crm agent calls": (
            crm.AGENT_CALLS,
            crm.AGENT_CALL_FIELDS,
            None,
            lambda: _crm_calls(detail=True, ivr=True),
        ),
        "isales calls": (isales.API_CALLS, isales.API_CALL_FIELDS, None, _isales_calls),
        "isales file servers": (isales.FILE_SERVERS, isales.FILE_SERVER_FIELDS, None, _isales_servers),
        "push logs": (pushlog.PUSH_LOGS, pushlog.FIELDS, None, _pushlogs),
        "trtc calls": (trtc.CALLS, trtc.CALL_FIELDS, None, _trtc_calls),
    }


SOURCES = list(_sources())


def _fill_keyed(db: psycopg.Connection, records: list[dict]) -> None:
    db.execute("TRUNCATE _stage_records")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO _stage_records VALUES (%s, %s::jsonb)",
            [(f"k{n:05d}", json.dumps(r)) for n, r in enumerate(records)],
        )


def _all_rows(db: psycopg.Connection, select: str) -> list[tuple]:
    rows = db.execute(f"SELECT * FROM ({select}) n", PARAMS).fetchall()
    return sorted(rows, key=repr)


@pytest.mark.parametrize("source", SOURCES)
def test_every_target_types_clean_simulator_records_alike_on_both_paths(
    stage: psycopg.Connection, source: str
) -> None:
    spec, _, _, records = _sources()[source]
    _fill_keyed(stage, records())
    for target in spec.targets:
        assert target.fast_select_sql is not None, target.table
        fast = _all_rows(stage, target.fast_select_sql)
        guarded = _all_rows(stage, target.select_sql)
        assert fast == guarded, target.table
        assert len(fast) >= 20, target.table  # the records really produced rows
        assert [r[-1] for r in fast if r[-1] is not None] == [], target.table  # and were clean


# A value each kind cannot take.
BAD = {
    "int": "north",
    "smallint": 40_000,
    "bigint": "12ab",
    "local_ts": "2026-13-01 00:00:00",
    "iso_ts": "yesterday",
    "epoch_s": "soon",
    "epoch_ms": "soon",
    "text_array": {"not": "an array"},
    "text": "",  # only a required text field rejects it
}


def _rejectable(source: str) -> list[tuple[str, object, bool]]:
    """(JSON name, bad value, read from the row array's elements) of every field that rejects."""
    _, fields, _, _ = _sources()[source]
    out = []
    for f in fields:
        if getattr(f, "kind", "json_text") == "json_text" or (f.kind == "text" and not f.required):
            continue
        out.append((f.json, BAD[f.kind], f.element))
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_the_guarded_select_rejects_each_bad_field_by_name(stage: psycopg.Connection, source: str) -> None:
    _, fields, rows_from, records = _sources()[source]
    from pipelines.lib.typed_select import typed_select

    clean = next(r for r in records() if not rows_from or r.get(rows_from))
    bad_records = []
    for name, value, element in _rejectable(source):
        if element:
            bad_records.append({**clean, rows_from: [{**e, name: value} for e in clean[rows_from]]})
        else:
            bad_records.append({**clean, name: value})
    assert bad_records, source
    _fill_keyed(stage, bad_records)
    guarded = _all_rows(stage, typed_select(fields, fast=False, rows_from=rows_from))
    reasons = {r[0]: r[-1] for r in guarded}
    for n, (name, _, _) in enumerate(_rejectable(source)):
        assert reasons[f"k{n:05d}"] is not None and reasons[f"k{n:05d}"].startswith(f"{name} "), (
            name,
            reasons,
        )
    # The fast one refuses the batch (the loader then falls back) or rejects the same.
    try:
        with stage.transaction():
            fast = _all_rows(stage, typed_select(fields, fast=True, rows_from=rows_from))
    except psycopg.errors.DataError:
        return
    assert fast == guarded


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (dict(kind="text", default="vdn_id"), "integer fields only"),
        (dict(kind="text", raw_column="x_raw"), "json_text"),
        (dict(kind="int", trim=" "), "text fields"),
        (dict(kind="text_array", element=True), "element"),
    ],
)
def test_a_field_the_generator_cannot_serve_is_refused(field: dict, problem: str) -> None:
    from pipelines.lib.typed_select import Field

    with pytest.raises(ValueError, match=problem):
        Field("x", "x", **field)


# Epoch seconds are never read from a row array's elements.
@pytest.mark.parametrize(("kind", "element"), [("epoch_s", False), ("epoch_ms", False), ("epoch_ms", True)])
def test_an_epoch_kind_takes_its_range_alike_on_both_paths(
    stage: psycopg.Connection, kind: str, element: bool
) -> None:
    """One bound per kind (typed_select.MAX_EPOCH_*), read by both SELECTs: its last value is a
    time on either path, the next one a reject on either; 0 is 1970 in milliseconds, and no
    time at all (NULL, not a reject) in seconds."""
    from pipelines.lib import typed_select as ts

    top = ts.MAX_EPOCH_MS if kind == "epoch_ms" else ts.MAX_EPOCH_S
    fields = (ts.Field("id", "id", "int", required=True), ts.Field("at", "at", kind, element=element))
    values = {"zero": 0, "top": top, "top_text": str(top), "negative": -1, "above": top + 1}
    if element:
        records = [{"id": n, "rows": [{"at": v}]} for n, v in enumerate(values.values())]
    else:
        records = [{"id": n, "at": v} for n, v in enumerate(values.values())]
    _fill_keyed(stage, records)

    def rows(fast: bool) -> list[tuple]:
        # Times as epoch seconds: the top of the millisecond range is past year 9999, which
        # Python's datetime cannot hold.
        select = typed_select(fields, fast=fast, rows_from="rows" if element else None)
        query = f"SELECT id, extract(epoch FROM at)::float8, _reject FROM ({select}) n ORDER BY id"
        return stage.execute(query, PARAMS).fetchall()

    fast = rows(fast=True)
    assert fast == rows(fast=False)
    at = dict(zip(values, fast, strict=True))
    assert at["top"][1] == pytest.approx(top / 1000 if kind == "epoch_ms" else top, abs=1e-3)
    assert at["top_text"][1] == at["top"][1]
    assert (at["zero"][1] is not None) == (kind == "epoch_ms")
    assert [at[name][-1] for name in values] == [None, None, None, *[f"at {ts._BAD[kind]}"] * 2]
