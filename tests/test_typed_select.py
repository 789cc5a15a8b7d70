"""The fast and the guarded normalizing SELECTs agree, and the loader falls back to the
guarded one only for a batch the fast one refuses."""

import json

import psycopg
import pytest

from pipelines.sources.crm.normalize import CALL_FIELDS
from pipelines.typed_select import typed_select

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

    from pipelines.loader import PartitionLoad
    from pipelines.sources.crm.normalize import CALL_LOGS

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

    from pipelines.loader import LoadError, PartitionLoad
    from pipelines.sources.crm.normalize import CALL_LOGS

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
