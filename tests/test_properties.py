"""Property tests (issue 15, item 2): arbitrary JSON values thrown at each source's
normalization in PostgreSQL, through the loader's ``PartitionLoad`` with the source's own
``SourceSpec``.

Each example is a page of records, each a valid record of the vendor (from the simulator)
with some fields replaced by arbitrary JSON (any type, nested, strings with a NUL or a lone
surrogate, numbers beyond what PostgreSQL stores), some removed, and a field no document
names added. Whatever the values, the load completes and nothing disappears: every record
ends typed in the source's core table or in ``raw.rejects`` with a reason, and every record
PostgreSQL can store is kept in raw.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pipelines.defs.sources.crm import normalize as crm
from pipelines.defs.sources.isales import normalize as isales
from pipelines.defs.sources.pushlog import normalize as pushlog
from pipelines.defs.sources.trtc import normalize as trtc
from pipelines.lib.loading import PartitionLoad, SourceSpec
from simulator import crm as crm_sim
from simulator import isales as isales_sim
from simulator import pushlog as pushlog_sim
from simulator import trtc as trtc_sim

T0 = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
WINDOW = (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
# Stands in for a number beyond PostgreSQL's numeric until the JSON text is written.
BIGNUM = "\x01bignum\x01"


@dataclass(frozen=True)
class Case:
    name: str
    spec: SourceSpec
    params: dict[str, Any]
    samples: Callable[[], list[dict]]  # valid records of the vendor
    keys: tuple[str, ...]  # the fields the natural key is made of (kept unique)


def _pushlog_samples() -> list[dict]:
    data = pushlog_sim.PushLogData(pushlog_sim.Settings())
    return [
        json.loads(t)
        for t in data.page(T0 * 1000, (T0 + 86_400) * 1000, (T0 + 3 * 86_400) * 1000, 0, 4, None)
    ]


CASES = [
    Case(
        "crm",
        crm.CALL_LOGS,
        {"tz": "Asia/Shanghai"},
        lambda: [crm_sim.make_call(crm_sim.Settings(), 20_400, i) for i in range(4)],
        ("id",),
    ),
    Case(
        "isales",
        isales.API_CALLS,
        {"tz": "Asia/Shanghai", "vdn_id": 1},
        lambda: isales_sim.CallLogs(isales_sim.Settings()).page(
            1, T0, T0 + 86_400, T0 + 10 * 86_400, 0, 4, "", False
        )[1],
        ("id",),
    ),
    Case("pushlog", pushlog.PUSH_LOGS, {}, _pushlog_samples, ("Id",)),
    Case(
        "trtc",
        trtc.CALLS,
        {"sdk_app_id": "1400000001"},
        lambda: [trtc_sim.make_record(trtc_sim.Settings(), g) for g in range(4)],
        ("callId",),
    ),
]

_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),  # anything UTF-8 can carry, NUL included
        st.sampled_from(["\x00", "\ud800", "\udfff", "'", '"', "\\", "-", ":", " "]),  # lone surrogates
    ),
    max_size=12,
)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    st.sampled_from(
        ["", '""', "0", "-1", "1e3", "2026-11-10 08:00:00", "2026-13-40 25:61:61", "1794268814400"]
    ),
    st.just(BIGNUM),
)
json_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def pages(draw: st.DrawFn, case: Case) -> list[dict]:
    samples = case.samples()
    fields = sorted({k for s in samples for k in s})
    n = draw(st.integers(min_value=1, max_value=6))
    records = []
    for i in range(n):
        record = dict(samples[i % len(samples)])
        for name in draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))):
            if draw(st.booleans()):
                record[name] = draw(json_values)
            else:
                record.pop(name, None)
        if draw(st.booleans()):
            record[draw(st.text(min_size=1, max_size=6))] = draw(json_values)  # a field nobody documents
        for key in case.keys:  # the natural key: unique, or (rarely) missing
            if draw(st.integers(0, 9)) == 0:
                record.pop(key, None)
            else:
                record[key] = f"{i + 1}" if key != "callId" else f"call-{i + 1}"
        record["_probe"] = i  # two keyless records stay two records
        records.append(record)
    return records


def encode(case: Case, records: list[dict]) -> bytes:
    page: Any = records
    for name in reversed(case.spec.records_path):
        page = {name: page}
    text = json.dumps(page)  # ensure_ascii: a lone surrogate is written as its \ud800 escape
    return text.replace(json.dumps(BIGNUM), "1e999999").encode()


async def load(url: str, case: Case, body: bytes, n: int) -> None:
    async with (
        await psycopg.AsyncConnection.connect(url) as conn,
        PartitionLoad(
            conn,
            case.spec,
            partition_key="2026-11-09",
            window=WINDOW,
            fetched_at=datetime.now(UTC),
            params=case.params,
        ) as partition,
    ):
        await partition.add(body, n)
        await partition.finish(complete=False)


def _count(db: psycopg.Connection, query: sql.Composable, params: tuple = ()) -> int:
    return db.execute(query, params).fetchone()[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_arbitrary_values_end_typed_or_rejected_with_a_reason_and_nothing_disappears(
    case: Case, warehouse_url: str, db: psycopg.Connection
) -> None:
    target = case.spec.targets[0]
    tables = [case.spec.raw_table, *(t.table for t in case.spec.targets), "raw.rejects"]
    seen = {"typed": 0, "rejected by typing": 0, "refused by PostgreSQL or keyless": 0}

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI never flakes on a new draw
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(records=pages(case))
    def check(records: list[dict]) -> None:
        db.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(*t.split(".")) for t in tables))
        )
        asyncio.run(load(warehouse_url, case, encode(case, records), len(records)))

        typed = _count(
            db, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*target.table.split(".")))
        )
        raw = _count(
            db, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*case.spec.raw_table.split(".")))
        )
        rejected_raw = _count(
            db, sql.SQL("SELECT count(*) FROM raw.rejects WHERE source_table = %s"), (case.spec.raw_table,)
        )
        rejected_typing = _count(
            db, sql.SQL("SELECT count(*) FROM raw.rejects WHERE source_table = %s"), (target.table,)
        )
        no_reason = _count(db, sql.SQL("SELECT count(*) FROM raw.rejects WHERE coalesce(reason, '') = ''"))
        # Every record is typed or rejected, once: none lost, none counted twice.
        assert typed + rejected_raw + rejected_typing == len(records)
        # Every record PostgreSQL can store is in raw (the rest are in raw.rejects).
        assert raw + rejected_raw == len(records)
        assert no_reason == 0
        seen["typed"] += typed
        seen["rejected by typing"] += rejected_typing
        seen["refused by PostgreSQL or keyless"] += rejected_raw

    check()
    # The examples reached every outcome: a property over pages that all type (or all fail)
    # would prove little.
    assert all(seen.values()), seen
