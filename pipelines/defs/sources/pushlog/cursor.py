"""Which pull a monthly partition needs, and the high-water mark that decides it.

- The open month, with a cursor: an incremental pull from ``high_water - overlap`` (late
  rows are re-read and de-duplicated by key) up to now, so a refresh costs what is new.
- The open month without a cursor (first pull, or a forced one): a full pull up to now.
- A closed month: a full pull of the whole month, the final one that reconciles it.

The cursor lives in ``raw.pushlog_cursor`` and is written in the load's transaction, so it
survives instances and a failed run never advances it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import psycopg

# Range requests end a little after our now: a vendor clock slightly ahead loses nothing
# (and what lies beyond is read by the next pull, which starts before the high-water mark).
FUTURE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class Cursor:
    high_water: datetime
    last_pull_kind: str
    last_pulled_from: datetime
    last_pulled_to: datetime
    final_pull_at: datetime | None


@dataclass(frozen=True)
class PullPlan:
    kind: Literal["incremental", "full"]
    lo: datetime
    hi: datetime
    final: bool  # the closed month's complete, reconciling pull
    reason: str


def _floor_s(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def _ceil_s(t: datetime) -> datetime:
    return _floor_s(t) + timedelta(seconds=math.ceil(t.microsecond / 1e6))


def plan_pull(
    window: tuple[datetime, datetime],
    now: datetime,
    cursor: Cursor | None,
    overlap: timedelta,
    force_full: bool = False,
) -> PullPlan:
    start, end = window
    if now >= end:
        why = (
            "closed month: final pull"
            if cursor is None or cursor.final_pull_at is None
            else "closed month: re-pull"
        )
        return PullPlan("full", start, end, True, why)
    hi = min(end, _ceil_s(now + FUTURE_SLACK))
    if force_full or cursor is None:
        return PullPlan(
            "full", start, hi, False, "forced full pull" if force_full else "open month, no cursor yet"
        )
    lo = max(start, _floor_s(cursor.high_water - overlap))
    # A vendor clock far ahead of ours: still read past the high-water mark.
    hi = min(end, max(hi, _ceil_s(cursor.high_water) + timedelta(seconds=1)))
    return PullPlan("incremental", lo, hi, False, "open month with a cursor")


async def read_cursor(conn: psycopg.AsyncConnection, partition_key: str) -> Cursor | None:
    cur = await conn.execute(
        "SELECT high_water, last_pull_kind, last_pulled_from, last_pulled_to, final_pull_at "
        "FROM raw.pushlog_cursor WHERE partition_key = %s",
        (partition_key,),
    )
    row = await cur.fetchone()
    return Cursor(*row) if row else None


async def write_cursor(
    conn: psycopg.AsyncConnection,
    partition_key: str,
    window: tuple[datetime, datetime],
    plan: PullPlan,
    fetched_at: datetime,
) -> datetime:
    """Advance the cursor to the max CreateTime of the month in core (the pull's end when the
    month has no rows); call it inside the load's transaction. Returns the new high water."""
    cur = await conn.execute(
        """
        INSERT INTO raw.pushlog_cursor AS c (partition_key, high_water, last_pull_kind, last_pulled_from,
            last_pulled_to, last_pull_at, last_full_pull_at, final_pull_at)
        SELECT %(key)s, COALESCE(max(create_time), %(hi)s), %(kind)s, %(lo)s, %(hi)s, %(at)s,
               CASE WHEN %(kind)s = 'full' THEN %(at)s END, CASE WHEN %(final)s THEN %(at)s END
        FROM core.fact_push_log WHERE create_time >= %(ws)s AND create_time < %(we)s
        ON CONFLICT (partition_key) DO UPDATE SET
            high_water = EXCLUDED.high_water,
            last_pull_kind = EXCLUDED.last_pull_kind,
            last_pulled_from = EXCLUDED.last_pulled_from,
            last_pulled_to = EXCLUDED.last_pulled_to,
            last_pull_at = EXCLUDED.last_pull_at,
            last_full_pull_at = COALESCE(EXCLUDED.last_full_pull_at, c.last_full_pull_at),
            final_pull_at = COALESCE(EXCLUDED.final_pull_at, c.final_pull_at)
        RETURNING high_water
        """,
        {
            "key": partition_key,
            "kind": plan.kind,
            "lo": plan.lo,
            "hi": plan.hi,
            "at": fetched_at,
            "final": plan.final,
            "ws": window[0],
            "we": window[1],
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def final_pull_done(conn: psycopg.Connection, partition_key: str) -> bool:
    row = conn.execute(
        "SELECT final_pull_at IS NOT NULL FROM raw.pushlog_cursor WHERE partition_key = %s", (partition_key,)
    ).fetchone()
    return bool(row and row[0])
