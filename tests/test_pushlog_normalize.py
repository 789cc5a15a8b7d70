"""Normalization of CloudListCurlLog records into core.fact_push_log, on the real database:
the seed's own sample answer (verbatim) plus variants of its quirks, loaded through the
loader exactly as a pull lands them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import psycopg
import pytest

from pipelines.defs.sources.pushlog import normalize, quality
from pipelines.lib.loading import PartitionLoad

# Seed 001's "正常返回示例", verbatim: Params and ResultText escaped twice, "" as empty.
SEED_SAMPLE = r"""{
"AccessDeniedDetail": "无",
"RequestId": "6086693B-2250-17CE-A41F-06259AB6DB1B",
"Message": "OK",
"Data": {
"List": [
{
"UniqueId": "\"\"",
"EndTime": "1774822137959",
"ContentType": 1,
"Position": "0",
"Timeout": "3",
"Headers": "{}",
"CreateTime": "1774822134415",
"TypeStr": "主通话记录推送",
"StartTime": "1774822134132",
"Params": "{\\\"bindTel\\\":\\\"01041000229\\\",\\\"stateAction\\\":\\\"idle\\\",\\\"cno\\\":\\\"8702\\\",\\\"bindType\\\":\\\"1\\\",\\\"enterpriseId\\\":\\\"7122600\\\",\\\"state\\\":\\\"空闲\\\",\\\"timeInMillis\\\":\\\"1774822137188\\\",\\\"time\\\":\\\"1774822137\\\",\\\"event\\\":\\\"status\\\",\\\"loginStatus\\\":\\\"1\\\",\\\"deviceStatus\\\":\\\"0\\\"}",
"RequestTime": "1774822137191",
"Method": "GET",
"StatusCode": "200",
"Url": "https://www.aaa.com/index.htm",
"Delay": 0,
"EnterpriseId": "7122600",
"Result": "1",
"Type": 9,
"ResultText": "{\\\"stateAction\\\":\\\"busyAgentOb\\\",\\\"cno\\\":\\\"8702\\\",\\\"bindType\\\":\\\"1\\\",\\\"timeInMillis\\\":\\\"1774822133193\\\",\\\"loginStatus\\\":\\\"1\\\",\\\"customerNumber\\\":\\\"01042000229\\\",\\\"callType\\\":\\\"4\\\",\\\"deviceStatus\\\":\\\"4\\\",\\\"bindTel\\\":\\\"01041000229\\\",\\\"mainUniqueId\\\":\\\"sip-33-1774822127.355\\\",\\\"enterpriseId\\\":\\\"7122600\\\",\\\"state\\\":\\\"通话\\\",\\\"time\\\":\\\"1774822133\\\",\\\"event\\\":\\\"status\\\",\\\"uniqueId\\\":\\\"sip-33-1774822127.355\\\"}",
"Level": 0,
"Retry": 0,
"Id": "12715",
"CurrentMonth": "\"\""
}
]
},
"Code": "OK"
}"""

MARCH = (datetime(2026, 2, 28, 16, tzinfo=UTC), datetime(2026, 3, 31, 16, tzinfo=UTC))


def _variants() -> list[dict]:
    sample = json.loads(SEED_SAMPLE)["Data"]["List"][0]
    once = dict(
        sample, Id="12716", UniqueId="sip-33-1774822127.355", CurrentMonth="202603", TypeStr="座席状态推送"
    )
    once["Params"] = '{"bindTel":"01041000229","event":"status"}'  # escaped once (plain JSON text)
    once["ResultText"] = "success"  # never JSON: kept as text
    once["Headers"] = json.dumps(json.dumps('{"X-Token":"t"}'))  # escaped three times
    unknown = dict(sample, Id="12717", Type=31, TypeStr="新推送", StatusCode="", Position=7)
    broken = dict(sample, Id="12718", CreateTime="yesterday")
    return [sample, once, unknown, broken]


async def _land(url: str, records: list[dict]) -> None:
    body = json.dumps({"Code": "OK", "Data": {"List": records}}, ensure_ascii=False)
    async with (
        await psycopg.AsyncConnection.connect(url) as conn,
        PartitionLoad(
            conn, normalize.PUSH_LOGS, partition_key="2026-03-01", window=MARCH, fetched_at=datetime.now(UTC)
        ) as load,
    ):
        await load.add(body.encode(), len(records))
        await load.finish(complete=True)


@pytest.fixture
def landed(warehouse_url: str, db: psycopg.Connection) -> psycopg.Connection:
    asyncio.run(_land(warehouse_url, _variants()))
    return db


def _row(db: psycopg.Connection, rid: int) -> dict:
    cur = db.execute("SELECT * FROM core.fact_push_log WHERE enterprise_id = 7122600 AND id = %s", (rid,))
    names = [c.name for c in cur.description]
    row = cur.fetchone()
    assert row is not None, rid
    return dict(zip(names, row, strict=True))


def test_seed_sample_is_typed(landed: psycopg.Connection) -> None:
    row = _row(landed, 12715)
    ms = landed.execute(
        "SELECT (extract(epoch FROM create_time) * 1000)::bigint, (extract(epoch FROM start_time) * 1000)::bigint,"
        " (extract(epoch FROM end_time) * 1000)::bigint, (extract(epoch FROM request_time) * 1000)::bigint"
        " FROM core.fact_push_log WHERE id = 12715"
    ).fetchone()
    # epoch-ms strings become instants exact to the millisecond
    assert ms == (1774822134415, 1774822134132, 1774822137959, 1774822137191)
    assert row["create_time"] == datetime(2026, 3, 29, 22, 8, 54, 415000, tzinfo=UTC)
    assert row["latency_ms"] == 1774822137959 - 1774822134132
    # numeric strings are numbers
    assert (row["enterprise_id"], row["status_code"], row["position"], row["timeout"], row["result"]) == (
        7122600,
        200,
        0,
        3,
        1,
    )
    assert (row["type"], row["content_type"], row["delay"], row["level"], row["retry"]) == (9, 1, 0, 0, 0)
    # the two characters "" mean empty
    assert row["unique_id"] is None and row["current_month"] is None
    # JSON escaped twice is decoded to objects, no text kept
    assert row["params"]["bindTel"] == "01041000229" and row["params"]["state"] == "空闲"
    assert row["result_text"]["mainUniqueId"] == "sip-33-1774822127.355"
    assert row["headers"] == {}
    assert row["params_text"] is None and row["result_text_text"] is None and row["headers_text"] is None


def test_variants_decode_and_keep_text(landed: psycopg.Connection) -> None:
    once = _row(landed, 12716)
    assert once["params"] == {"bindTel": "01041000229", "event": "status"}
    assert once["result_text"] is None and once["result_text_text"] == "success"
    assert once["headers"] == {"X-Token": "t"}  # three levels of escaping
    assert once["unique_id"] == "sip-33-1774822127.355" and once["current_month"] == "202603"
    unknown = _row(landed, 12717)
    assert unknown["status_code"] is None and unknown["position"] == 7  # "" is no value, 7 a number
    # an unparsable CreateTime (the partition time) is a reject, not a row and not a failure
    assert landed.execute("SELECT count(*) FROM core.fact_push_log WHERE id = 12718").fetchone()[0] == 0
    reasons = landed.execute(
        "SELECT record_key, reason FROM raw.rejects WHERE source_table = 'core.fact_push_log'"
    ).fetchall()
    assert reasons == [("7122600:12718", "CreateTime missing or malformed")]
    # raw keeps every record verbatim, the rejected one too
    raw = landed.execute(
        "SELECT record->>'Params' FROM raw.pushlog WHERE record_key = '7122600:12715'"
    ).fetchone()
    assert raw[0] == json.loads(SEED_SAMPLE)["Data"]["List"][0]["Params"]
    assert landed.execute("SELECT count(*) FROM raw.pushlog").fetchone()[0] == 4


def test_type_checks_list_unknown_types_and_disagreeing_type_str(landed: psycopg.Connection) -> None:
    assert landed.execute("SELECT count(*) FROM core.dim_push_type").fetchone()[0] == 29
    known = quality.known_push_types(landed, MARCH)
    assert not known.passed and known.metadata["unknown_types"].value == {"31": 1}
    # A known quirk, recorded as metadata: the seed's own sample has Type 9 (座席状态推送)
    # with TypeStr 主通话记录推送; 12716 agrees.
    quirks = quality.type_str_disagreements(landed, MARCH)
    assert quirks["type_str_disagreeing_rows"].value == 1
    assert quirks["type_str_disagreeing_pairs"].value == [
        {"type": 9, "documented": "座席状态推送", "type_str": "主通话记录推送", "rows": 1}
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a":1}', {"a": 1}),
        ('{\\"a\\":1}', {"a": 1}),
        (json.dumps('{"a":"b"}'), {"a": "b"}),
        (json.dumps(json.dumps(json.dumps('[1,{"x":"y"}]'))), [1, {"x": "y"}]),
        ("success", None),
        ("0", None),
        ('""', None),
        ("", None),
        ("{broken", None),
        ("<html><body>502 Bad Gateway</body></html>", None),
    ],
)
def test_decode_json_text(db: psycopg.Connection, text: str, expected: object) -> None:
    assert db.execute("SELECT core.decode_json_text(%s)", (text,)).fetchone()[0] == expected
