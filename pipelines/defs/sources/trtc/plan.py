"""Which request ranges a TRTC partition becomes: the vendor's 7-day retention and its 7-day
request limit, applied before anything is sent.

TRTC only answers for calls placed within the last 7 days (seed 004), judged by the vendor's
clock. Everything the vendor still holds is asked for, less ``skew_s`` (at most 60 s) at the
retention edge for the difference between our clock and the vendor's: asking for an older
second would return nothing, and a "complete" empty answer must not make the loader mark rows
gone that the vendor merely forgot.

Near the edge, calls expire while the walk runs, and offset paging over a range whose oldest
records vanish between two pages skips records. So the part of the range within ``EDGE_S`` of
the edge is its own range (``PullPlan.edge``), fetched first and walked as time slices of one
page each (each answer atomic, see ``client.TrtcClient.pages``); the rest (``PullPlan.bulk``)
expires no sooner than ``EDGE_S`` after planning, far longer than a walk takes, and is paged by
offset. A range is as long as the 7-day request limit allows: requests are spent on pages, not
on ranges (a week is one range, pages 2..N go out concurrently once page 1 tells ``totalNum``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

RETENTION_S = 7 * 86_400  # seed 004: calls created within the last 7 days
MAX_REQUEST_WINDOW_S = 7 * 86_400  # seed 004: endTimestamp defaults to start + 7 days
DEFAULT_SKEW_S = 30  # NTP on both sides keeps clocks within a second; this is a wide allowance
MAX_SKEW_S = 60  # issue 11: every call held more than 60 s inside retention is loaded
EDGE_S = 3_600  # the part of a range that may expire during a walk, walked one page at a time


def vendor_now() -> float:
    """The vendor's "now", for retention. Tencent's servers keep NTP time, so our wall clock
    stands in for theirs; ``skew_s`` absorbs the difference. (Tests move it with the simulator's.)"""
    return time.time()


@dataclass(frozen=True)
class SubWindow:
    """One request range, both ends inclusive, in epoch seconds (the API's startTimestamp /
    endTimestamp both include their second)."""

    first_s: int
    last_s: int

    def __post_init__(self) -> None:
        # The guard the vendor's 7-day rule asks for: no request may ever span more.
        if not 0 < self.first_s <= self.last_s or self.last_s - self.first_s > MAX_REQUEST_WINDOW_S:
            raise ValueError(f"TRTC request window [{self.first_s}, {self.last_s}] breaks the 7-day rule")

    @property
    def seconds(self) -> int:
        return self.last_s - self.first_s + 1

    def body(self, page: int, page_size: int) -> dict[str, int]:
        return {
            "startTimestamp": self.first_s,
            "endTimestamp": self.last_s,
            "numberPerPage": page_size,
            "page": page,
        }

    def slices(self, n: int) -> list[SubWindow]:
        """``n`` (at most one a second) consecutive ranges of near-equal length tiling this one."""
        n = max(1, min(n, self.seconds))
        cuts = [self.first_s + self.seconds * i // n for i in range(n + 1)]
        return [SubWindow(a, b - 1) for a, b in zip(cuts, cuts[1:], strict=False)]


@dataclass(frozen=True)
class PullPlan:
    """A partition window and what of it is requested.

    ``edge`` (None: not near the retention edge) is fetched first, in one-page time slices;
    ``bulk`` are offset-paged ranges. ``requested`` is the half-open range both cover (None:
    nothing requested): the only range a complete pull may mark rows gone in. ``expired`` is the
    leading part of the window that is past the vendor's retention, never requested (None: none).
    """

    window: tuple[datetime, datetime]
    edge: SubWindow | None
    bulk: tuple[SubWindow, ...]
    requested: tuple[datetime, datetime] | None
    expired: tuple[datetime, datetime] | None
    now: datetime

    @property
    def sub_windows(self) -> tuple[SubWindow, ...]:
        return ((self.edge,) if self.edge else ()) + self.bulk


def _ts(dt: datetime) -> int:
    return math.floor(dt.timestamp())


def _chunks(first_s: int, last_s: int) -> list[SubWindow]:
    """[first_s, last_s] in as few ranges as the 7-day request limit allows (a week of a zone
    that leaves daylight saving time is an hour longer than 7 days)."""
    out = []
    while first_s <= last_s:
        b = min(last_s, first_s + MAX_REQUEST_WINDOW_S)
        out.append(SubWindow(first_s, b))
        first_s = b + 1
    return out


def plan_pull(
    start: datetime,
    end: datetime,
    now: float,
    retention_s: int = RETENTION_S,
    skew_s: int = DEFAULT_SKEW_S,
) -> PullPlan:
    """[start, end) less what is past retention (older than ``now - retention_s + skew_s``) and
    less what has not begun; the part within ``EDGE_S`` of the retention edge on its own."""
    if not 0 <= skew_s <= MAX_SKEW_S:
        raise ValueError(f"TRTC retention skew must be 0..{MAX_SKEW_S} s, got {skew_s}")
    tz = start.tzinfo
    cutoff = math.ceil(now - retention_s + skew_s)
    lo = max(_ts(start), cutoff)
    hi = _ts(end) - 1
    edge: SubWindow | None = None
    bulk: list[SubWindow] = []
    if lo <= hi and lo <= now:
        edge_last = min(hi, cutoff + EDGE_S - 1)
        if lo <= edge_last:
            edge = SubWindow(lo, edge_last)
        bulk = _chunks(max(lo, edge_last + 1), hi)
    requested = None
    if edge or bulk:
        last = (bulk[-1] if bulk else edge).last_s  # type: ignore[union-attr]
        requested = (datetime.fromtimestamp(lo, tz), datetime.fromtimestamp(last + 1, tz))
    expired = None
    if lo > _ts(start):
        expired = (start, min(end, datetime.fromtimestamp(lo, tz)))
    return PullPlan(
        window=(start, end),
        edge=edge,
        bulk=tuple(bulk),
        requested=requested,
        expired=expired,
        now=datetime.fromtimestamp(now, UTC),
    )
