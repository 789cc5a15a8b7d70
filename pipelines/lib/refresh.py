"""What a pull of a window asks the vendor for: the whole window, or, for the open window
already loaded, only what is new since its high-water mark.

- A window that has not ended (``now < end``), already holding rows: an *incremental* pull of
  ``[mark - overlap, now + slack)``, where the mark is the newest time of the load's core
  table in the window (live rows, the load's scope). The overlap re-reads records that
  arrive late with an older time; they are de-duplicated by key, and one older than the mark
  is kept like any other. An incremental pull saw only part of the window, so it never marks
  anything gone.
- A window that has not ended and holds nothing yet (or ``full`` asked for): a full pull up
  to ``now + slack``.
- A window that has ended (the closing pull, the late-data pass over the previous partition,
  a backfill): the whole window, the complete pull that marks rows gone.

``slack`` reaches a little past our clock: a vendor clock slightly ahead loses nothing, and
what lies beyond is read by the next pull, which starts before the mark. Every pull is
recorded in ``raw.pull_log`` in the load's transaction: rows are rewritten only when they
change, so "when was this window last pulled" lives there, per pull, not per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from pipelines.lib.loading import SourceSpec, qualified_ident
from pipelines.lib.loading.spec import target_scope

FUTURE_SLACK = timedelta(minutes=10)

Window = tuple[datetime, datetime]


def utc_now() -> datetime:
    """The pipeline's clock: decides whether a window is open and where its pull ends (tests
    align it with the simulator's data clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Incremental:
    """A load that may refresh its open window from a high-water mark."""

    overlap: timedelta  # how far before the mark an incremental pull starts (late arrivals)
    slack: timedelta = FUTURE_SLACK


@dataclass(frozen=True)
class Pull:
    """What one load asks the vendor for."""

    kind: Literal["incremental", "full"]
    lo: datetime
    hi: datetime
    mark: datetime | None  # the high-water mark it was planned from
    overlap: timedelta | None
    reason: str

    @property
    def range(self) -> Window:
        return self.lo, self.hi

    def metadata(self) -> dict[str, Any]:
        return {
            "pull": self.kind,
            "pull_reason": self.reason,
            "pulled_from": self.lo.isoformat(),
            "pulled_to": self.hi.isoformat(),
            "high_water_mark": self.mark.isoformat() if self.mark else "none",
            "overlap_minutes": self.overlap.total_seconds() / 60 if self.overlap is not None else "n/a",
        }


def _floor_s(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def _ceil_s(t: datetime) -> datetime:
    return _floor_s(t) + timedelta(seconds=math.ceil(t.microsecond / 1e6))


def plan(
    window: Window, now: datetime, mark: datetime | None, incremental: Incremental, *, full: bool = False
) -> Pull:
    """The pull of ``window`` at ``now``, given its high-water ``mark`` (None: no row yet)."""
    start, end = window
    # In the window's zone: a vendor that reads naive local times gets them from these.
    now = now.astimezone(start.tzinfo)
    mark = mark.astimezone(start.tzinfo) if mark is not None else None
    overlap = incremental.overlap
    if now >= end:
        return Pull("full", start, end, mark, None, "closed window: the whole window")
    hi = min(end, _ceil_s(now + incremental.slack))
    if full or mark is None:
        why = "full pull asked for" if full else "open window, nothing loaded yet"
        return Pull("full", start, hi, mark, None, why)
    lo = max(start, _floor_s(mark - overlap))
    # A vendor clock far ahead of ours: still read past the mark.
    hi = min(end, max(hi, _ceil_s(mark) + timedelta(seconds=1)))
    return Pull("incremental", lo, hi, mark, overlap, "open window: what is new since the high-water mark")


def mark_target(spec: SourceSpec) -> int:
    """The index of the spec's target whose time column holds the mark (its first timed one)."""
    for i, target in enumerate(spec.targets):
        if target.time_column is not None:
            return i
    raise ValueError(f"{spec.raw_table}: an incremental load needs a target with a time column")


async def high_water_mark(
    conn: psycopg.AsyncConnection, spec: SourceSpec, params: Mapping[str, Any]
) -> datetime | None:
    """The newest time of the load's live rows in its window (``params``: the load's)."""
    target = spec.targets[mark_target(spec)]
    cur = await conn.execute(
        sql.SQL("SELECT max({col}) FROM {table} WHERE {scope} AND _gone_at IS NULL").format(
            col=sql.Identifier(target.time_column or ""),
            table=qualified_ident(target.table),
            scope=target_scope(target),
        ),
        {**params, "lo": params["window_start"], "hi": params["window_end"]},
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def record(
    conn: psycopg.AsyncConnection,
    raw_table: str,
    partition_key: str,
    fetched_at: datetime,
    pulled: Window,
    *,
    kind: str,
    complete: bool,
    records: int,
) -> None:
    """One pull of a partition, in raw.pull_log (inside the load's transaction)."""
    await conn.execute(
        "INSERT INTO raw.pull_log (raw_table, partition_key, fetched_at, kind, pulled_from, pulled_to, "
        "complete, records) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (raw_table, partition_key, fetched_at) DO NOTHING",
        (raw_table, partition_key, fetched_at, kind, pulled[0], pulled[1], complete, records),
    )


def last_pull(
    conn: psycopg.Connection,
    raw_table: str,
    partition_key: str | None = None,
    *,
    closed_at: datetime | None = None,
) -> datetime | None:
    """When the newest pull of ``raw_table`` (of one partition) started; with ``closed_at``
    (the window's end): the newest full pull of the whole window once it had closed."""
    row = conn.execute(
        "SELECT max(fetched_at) FROM raw.pull_log WHERE raw_table = %(t)s "
        "AND (%(p)s::text IS NULL OR partition_key = %(p)s) "
        "AND (%(end)s::timestamptz IS NULL OR (kind = 'full' AND pulled_to >= %(end)s AND fetched_at >= %(end)s))",
        {"t": raw_table, "p": partition_key, "end": closed_at},
    ).fetchone()
    return row[0] if row else None
