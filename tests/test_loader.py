"""PartitionLoad against the real PostgreSQL: a partition that held nothing is loaded by
plain INSERTs, and a key that is there after all turns the load to upserts without losing or
doubling a row."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg

from pipelines.defs.sources.crm.normalize import CALL_LOGS
from pipelines.lib.loading import PartitionLoad

DAY = "2026-11-20"
WINDOW = (datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 20, 16, tzinfo=UTC))


def call(i: int, **fields: object) -> dict:
    return {"id": i, "createTime": "2026-11-20 08:00:00", "callId": f"c{i}", "duration": 10, **fields}


def page(records: list[dict]) -> bytes:
    return json.dumps({"code": 200, "data": {"list": records, "total": len(records)}}).encode()


def load(url: str, pages: list[list[dict]], partition_key: str = DAY, window=WINDOW, **kw) -> PartitionLoad:  # noqa: ANN001, ANN003
    """Load ``pages`` (one batch each) as one partition; returns the finished load."""

    async def go() -> PartitionLoad:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            async with PartitionLoad(
                conn, CALL_LOGS, partition_key=partition_key, window=window, fetched_at=datetime.now(UTC),
                params={"tz": "Asia/Shanghai"}, batch_records=1, **kw,
            ) as pl:  # fmt: skip
                for records in pages:
                    await pl.add(page(records), len(records))
                await pl.finish(complete=True)
            return pl

    return asyncio.run(go())


def core_rows(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT id, duration FROM core.fact_crm_call ORDER BY id").fetchall()


def test_a_first_load_inserts_without_upserting(warehouse_url: str, db: psycopg.Connection) -> None:
    pl = load(warehouse_url, [[call(1), call(2)], [call(3)]])
    assert pl.upsert is False  # every batch went in by plain INSERT
    assert pl.result.rows_upserted == {"core.fact_crm_call": 3}
    assert core_rows(db) == [(1, 10), (2, 10), (3, 10)]
    assert db.execute("SELECT count(*) FROM raw.crm_call").fetchone()[0] == 3


def test_a_record_repeated_on_a_later_page_turns_the_load_to_upserts(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    # Offset paging shifts when the vendor inserts a call mid-walk: record 2 comes again, newer.
    pl = load(warehouse_url, [[call(1), call(2)], [call(2, duration=99), call(3)], [call(4)]])
    assert pl.upsert is True
    assert core_rows(db) == [(1, 10), (2, 99), (3, 10), (4, 10)]
    raw = db.execute("SELECT record_key, (record->>'duration')::int FROM raw.crm_call ORDER BY 1").fetchall()
    assert raw == [("1", 10), ("2", 99), ("3", 10), ("4", 10)]
    assert db.execute("SELECT count(*) FROM raw.rejects").fetchone()[0] == 0


def test_a_key_kept_under_another_partition_is_upserted_not_failed(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    # The vendor moved call 7's createTime to the next day: that day's partition holds nothing
    # yet, but raw and core hold call 7 under the first day.
    load(warehouse_url, [[call(7), call(8)]])
    next_day = (WINDOW[0] + timedelta(days=1), WINDOW[1] + timedelta(days=1))
    pl = load(
        warehouse_url, [[call(7, createTime="2026-11-21 09:00:00", duration=42)]], "2026-11-21", next_day
    )
    assert pl.upsert is True
    assert core_rows(db) == [(7, 42), (8, 10)]
    assert db.execute("SELECT partition_key FROM raw.crm_call WHERE record_key = '7'").fetchone() == (
        "2026-11-21",
    )


def test_a_reload_upserts_from_the_start(warehouse_url: str, db: psycopg.Connection) -> None:
    load(warehouse_url, [[call(1), call(2)]])
    pl = load(warehouse_url, [[call(1, duration=5)]], max_gone_share=1.0)
    assert pl.upsert is True
    assert core_rows(db) == [(1, 5), (2, 10)]  # call 2, no longer returned, is kept
    assert pl.result.rows_gone == {"core.fact_crm_call": 1}
