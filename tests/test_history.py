"""History is kept (the loader, against the real PostgreSQL): a complete pull marks what the
vendor no longer returns gone instead of deleting it, refuses to mark a mass disappearance,
and a record PostgreSQL cannot take is rejected alone, its values kept out of every message."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import psycopg
import pytest

from pipelines.defs.sources.crm.normalize import CALL_LOGS
from pipelines.lib import checks
from pipelines.lib.loading import LoadError, PartitionLoad
from pipelines.lib.loading.json_safety import split_page
from tests.test_loader import DAY, WINDOW, call, load

TEN = [call(i) for i in range(1, 11)]


def state(db: psycopg.Connection) -> dict[int, bool]:
    """call id -> marked gone"""
    return dict(db.execute("SELECT id, _gone_at IS NOT NULL FROM core.fact_crm_call ORDER BY id").fetchall())


def raw_ids(db: psycopg.Connection) -> list[int]:
    return [int(r[0]) for r in db.execute("SELECT record_key FROM raw.crm_call ORDER BY record_key::int")]


def test_a_record_the_vendor_stops_returning_is_marked_gone_and_cleared_when_it_returns(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    load(warehouse_url, [TEN])
    pl = load(warehouse_url, [TEN[1:]])  # call 1 deleted at the vendor: 10 % of the day
    assert pl.result.rows_gone == {"core.fact_crm_call": 1} and not pl.result.gone_refused
    assert state(db) == {1: True, **{i: False for i in range(2, 11)}}
    gone_at = db.execute("SELECT _gone_at FROM core.fact_crm_call WHERE id = 1").fetchone()[0]
    assert gone_at == pl.fetched_at
    assert raw_ids(db) == list(range(1, 11))  # raw keeps the record
    # A later pull that still misses it keeps the time it first went missing.
    load(warehouse_url, [TEN[1:]])
    assert db.execute("SELECT _gone_at FROM core.fact_crm_call WHERE id = 1").fetchone()[0] == gone_at
    load(warehouse_url, [TEN])  # it comes back
    assert state(db) == {i: False for i in range(1, 11)}


def test_a_pull_that_returns_nothing_marks_nothing_and_the_check_says_why(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    load(warehouse_url, [TEN])
    before = db.execute("SELECT * FROM core.fact_crm_call ORDER BY id").fetchall()
    pl = load(warehouse_url, [[]])
    assert pl.result.rows_gone == {"core.fact_crm_call": 0}
    assert db.execute("SELECT * FROM core.fact_crm_call ORDER BY id").fetchall() == before
    assert raw_ids(db) == list(range(1, 11))
    check = checks.no_mass_disappearance(pl.result, "crm", WINDOW)
    assert not check.passed and check.severity == checks.AssetCheckSeverity.ERROR
    assert "returned 0 of 10 known rows" in check.description
    assert "crm core.fact_crm_call" in check.description and WINDOW[0].isoformat() in check.description


def test_more_than_the_allowed_share_is_refused_and_the_setting_raises_it(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    load(warehouse_url, [TEN])
    refused = load(warehouse_url, [TEN[3:] + [call(11)]])  # 3 of 10 gone, one new: 30 % > 20 %
    # Known: the 11 rows the day holds after the pull; missing: the 3 it did not return.
    assert [(r.table, r.live, r.missing) for r in refused.result.gone_refused] == [
        ("core.fact_crm_call", 11, 3)
    ]
    # What is new and changed is committed all the same; nothing is marked gone.
    assert state(db) == {i: False for i in range(1, 12)}
    applied = load(warehouse_url, [TEN[3:] + [call(11)]], max_gone_share=0.5)
    assert not applied.result.gone_refused and applied.result.rows_gone == {"core.fact_crm_call": 3}
    assert [i for i, gone in state(db).items() if gone] == [1, 2, 3]


@pytest.mark.parametrize(
    ("variant", "text", "kind"),
    [
        ("nul", '"Zhang\\u0000San"', "\\u0000"),
        ("surrogate", '"Zhang\\ud800San"', "unpaired UTF-16 surrogate"),
        ("bignum", "1e999999", "beyond the range"),
    ],
)
def test_a_record_postgres_cannot_take_is_rejected_alone(
    warehouse_url: str, db: psycopg.Connection, variant: str, text: str, kind: str
) -> None:
    field = "duration" if variant == "bignum" else "customerName"
    good = [call(i) for i in (1, 2, 4)]
    body = json.dumps({"code": 200, "data": {"list": [*good[:2], {**call(3), field: "POISON"}, good[2]]}})
    body = body.replace('"POISON"', text)

    async def go() -> PartitionLoad:
        async with await psycopg.AsyncConnection.connect(warehouse_url) as conn:
            async with PartitionLoad(
                conn, CALL_LOGS, partition_key=DAY, window=WINDOW, fetched_at=datetime.now(UTC),
                params={"tz": "Asia/Shanghai"},
            ) as pl:  # fmt: skip
                await pl.add(body.encode(), 4)
                await pl.finish(complete=True)
            return pl

    pl = asyncio.run(go())
    assert pl.result.refused_records == 1
    assert sorted(state(db)) == [1, 2, 4]
    key, reason, record = db.execute("SELECT record_key, reason, record FROM raw.rejects").fetchone()
    assert key == "3"
    assert f"field '{field}'" in reason and kind in reason
    assert "Zhang" not in reason and "999999" not in reason  # never the value
    # The made-safe copy keeps every other field, and the offending value as its JSON text.
    assert record["callId"] == "c3" and record[field] == text


def test_a_batch_postgres_refuses_for_another_reason_fails_without_quoting_values(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    body = b'{"code": 200, "data": {"list": [{"id": 1, "customerName": "\xff13800138000"}]}}'

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(warehouse_url) as conn, PartitionLoad(
            conn, CALL_LOGS, partition_key=DAY, window=WINDOW, fetched_at=datetime.now(UTC),
            params={"tz": "Asia/Shanghai"},
        ) as pl:  # fmt: skip
            await pl.add(body, 1)
            await pl.finish(complete=True)

    with pytest.raises(LoadError) as failure:
        asyncio.run(go())
    message = str(failure.value)
    assert "raw.crm_call" in message and DAY in message and "not UTF-8" in message
    assert (
        "13800138000" not in message
        and failure.value.__cause__ is None
        and failure.value.__suppress_context__
    )
    assert db.execute("SELECT count(*) FROM raw.crm_call").fetchone()[0] == 0


def test_split_page_keeps_numbers_exact_and_the_envelope_path() -> None:
    body = b'{"code": 200, "data": {"list": [{"id": 12345678901234567890, "x": 0.1}, {"id": 2, "n": "a\\u0000"}]}}'
    cleaned, refused = split_page(body, ("data", "list"))
    assert json.loads(cleaned) == {"data": {"list": [{"id": 12345678901234567890, "x": 0.1}]}}
    assert b"12345678901234567890" in cleaned
    assert [json.loads(r.record) for r in refused] == [{"id": 2, "n": '"a\\u0000"'}]
