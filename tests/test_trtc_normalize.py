"""TRTC normalization in PostgreSQL: the seed's own sample answer, the drift forms, and
records that cannot be typed (rejected with a reason, never fatal)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import psycopg

from pipelines.defs.sources.trtc import normalize
from pipelines.lib.loading import PartitionLoad

# Seed 004's sample answer, verbatim (three "offline" calls; the caller among the callees).
SEED_SAMPLE = {
    "errorCode": 0,
    "errorMessage": "Success",
    "requestId": "8ba14f64a1d92d38705eec775e1f3deb",
    "data": {
        "totalNum": 3,
        "page": 2,
        "callRecordList": [
            {
                "callId": f"2ae7d549-c441-4a9b-87c0-61810fe1958{n}",
                "sdkAppId": 88888888,
                "mediaType": "video",
                "roomId": "456",
                "startCallTs": ts,
                "acceptTs": ts,
                "endTs": 1689150030,
                "caller": "123",
                "totalUserNumber": 0,
                "callType": "single",
                "callResult": "offline",
                "callees": ["111", "123"],
            }
            for n, ts in ((1, 1688709003), (2, 1688709303), (3, 1688709903))
        ],
    },
}

WINDOW = (datetime(2023, 7, 1, tzinfo=UTC), datetime(2023, 7, 15, tzinfo=UTC))


def load(url: str, *pages: dict, sdk_app_id: str = "88888888") -> object:
    async def go() -> object:
        async with (
            await psycopg.AsyncConnection.connect(url) as conn,
            PartitionLoad(
                conn,
                normalize.CALLS,
                partition_key="2023-07-03",
                window=WINDOW,
                fetched_at=datetime.now(UTC),
                params={"sdk_app_id": sdk_app_id},
            ) as pl,
        ):
            for page in pages:
                await pl.add(json.dumps(page).encode(), len(page["data"]["callRecordList"]))
            return await pl.finish(complete=True)

    return asyncio.run(go())


def page(*records: dict) -> dict:
    return {"errorCode": 0, "data": {"totalNum": len(records), "page": 0, "callRecordList": list(records)}}


def test_the_seed_sample_is_typed(warehouse_url: str, db: psycopg.Connection) -> None:
    result = load(warehouse_url, SEED_SAMPLE)
    assert result.rejects == 0 and result.rows_landed == 3
    row = db.execute(
        "SELECT sdk_app_id, started_at, accepted_at, ended_at, callees, room_id, total_user_number, call_result"
        " FROM core.fact_trtc_call WHERE call_id = '2ae7d549-c441-4a9b-87c0-61810fe19581'"
    ).fetchone()
    assert row == (
        88888888,
        datetime(2023, 7, 7, 5, 50, 3, tzinfo=UTC),
        datetime(2023, 7, 7, 5, 50, 3, tzinfo=UTC),
        datetime.fromtimestamp(1689150030, UTC),
        ["111", "123"],
        "456",
        0,
        "offline",
    )
    callees = db.execute(
        "SELECT callee, is_caller FROM core.fact_trtc_call_callee"
        " WHERE call_id = '2ae7d549-c441-4a9b-87c0-61810fe19581' ORDER BY callee"
    ).fetchall()
    assert callees == [("111", False), ("123", True)]
    assert db.execute("SELECT min(record_key) FROM raw.trtc_call").fetchone()[0] == (
        "88888888:2ae7d549-c441-4a9b-87c0-61810fe19581"
    )


def test_drift_forms_are_read_and_untypable_records_rejected(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    base = {"callId": "ok", "startCallTs": 1688709003, "callees": ["a"], "callType": "group"}
    records = [
        # drift: numbers as strings, callees as one comma-joined string; no sdkAppId (the
        # configured SDKAppID keys it); acceptTs 0 and endTs absent mean "did not happen"
        {"callId": "drift", "startCallTs": "1688709003", "acceptTs": 0, "callees": " b, c ,,d"},
        base,
        {**base, "callId": "no-start", "startCallTs": None},
        {**base, "callId": "bad-start", "startCallTs": "soon"},
        {**base, "callId": "ms-start", "startCallTs": 1688709003000000},  # not epoch seconds
        {**base, "callId": "bad-end", "endTs": "later"},
        {**base, "callId": "bad-callees", "callees": {"a": 1}},
        {**base, "callId": None},
    ]
    result = load(warehouse_url, page(*records), sdk_app_id="1400000001")
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT call_id, callees, accepted_at, ended_at, sdk_app_id FROM core.fact_trtc_call"
        )
    }
    assert set(rows) == {"drift", "ok"}
    assert rows["drift"] == (["b", "c", "d"], None, None, 1400000001)
    reasons = dict(
        db.execute(
            "SELECT record->>'callId', reason FROM raw.rejects WHERE source_table = 'core.fact_trtc_call'"
        ).fetchall()
    )
    assert reasons == {
        "no-start": "startCallTs missing or not epoch seconds",
        "bad-start": "startCallTs missing or not epoch seconds",
        "ms-start": "startCallTs missing or not epoch seconds",
        "bad-end": "endTs is not epoch seconds",
        "bad-callees": "callees is neither an array nor a string",
    }
    # No callId, no natural key: rejected at landing.
    assert (
        db.execute(
            "SELECT count(*) FROM raw.rejects WHERE reason = 'the record has no natural key'"
        ).fetchone()[0]
        == 1
    )
    assert result.rows_landed == 7  # every keyed record is kept verbatim, typed or not
    callees = db.execute("SELECT call_id, callee FROM core.fact_trtc_call_callee ORDER BY 1, 2").fetchall()
    assert callees == [("drift", "b"), ("drift", "c"), ("drift", "d"), ("ok", "a")]
