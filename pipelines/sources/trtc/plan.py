"""Which request windows a TRTC partition becomes: the vendor's 7-day retention and its
7-day request limit, applied before anything is sent.

TRTC only answers for calls placed within the last 7 days (seed 004), judged by the
vendor's clock. The part of a partition older than that, less a safety margin, is never
requested: asking would return nothing, and a "complete" empty answer would let the loader
prune rows the vendor merely forgot. The margin also keeps the walk clear of the retention
edge, where records expiring between two pages would shift offset paging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

RETENTION_S = 7 * 86_400  # seed 004: calls created within the last 7 days
MAX_REQUEST_WINDOW_S = 7 * 86_400  # seed 004: endTimestamp defaults to start + 7 days
DEFAULT_MARGIN_S = 3_600


def vendor_now() -> float:
    """The vendor's "now", for retention. Tencent's servers keep NTP time, so our wall clock
    stands in for theirs; the margin absorbs skew. (Tests move it with the simulator's.)"""
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

    def body(self, page: int, page_size: int) -> dict[str, int]:
        return {
            "startTimestamp": self.first_s,
            "endTimestamp": self.last_s,
            "numberPerPage": page_size,
            "page": page,
        }


@dataclass(frozen=True)
class PullPlan:
    """A partition window and what of it is requested.

    ``requested`` is the half-open range the sub-windows cover (None: nothing requested):
    the only range a complete pull may prune. ``expired`` is the leading part of the window
    that is past the vendor's retention, never requested (None: none).
    """

    window: tuple[datetime, datetime]
    sub_windows: tuple[SubWindow, ...]
    requested: tuple[datetime, datetime] | None
    expired: tuple[datetime, datetime] | None
    now: datetime


def _ts(dt: datetime) -> int:
    return math.floor(dt.timestamp())


def plan_pull(
    start: datetime,
    end: datetime,
    now: float,
    retention_s: int = RETENTION_S,
    margin_s: int = DEFAULT_MARGIN_S,
) -> PullPlan:
    """Split [start, end) into local days (start's zone), drop what is past retention
    (``now - retention_s + margin_s``) and days that have not begun; days are small enough
    to page concurrently and never near the 7-day request limit."""
    tz = start.tzinfo
    cutoff = math.ceil(now - retention_s + margin_s)
    lo = max(_ts(start), cutoff)
    subs: list[SubWindow] = []
    day = start
    while day < end:
        # Aware datetime + timedelta is wall-clock arithmetic: local midnights, DST included.
        nxt = min(day + timedelta(days=1), end)
        a, b = _ts(day), _ts(nxt)
        if b > lo and a <= now:
            subs.append(SubWindow(max(a, lo), b - 1))
        day = nxt
    requested = None
    if subs:
        requested = (
            datetime.fromtimestamp(subs[0].first_s, tz),
            datetime.fromtimestamp(subs[-1].last_s + 1, tz),
        )
    expired = None
    if lo > _ts(start):
        expired = (start, min(end, datetime.fromtimestamp(lo, tz)))
    return PullPlan(
        window=(start, end),
        sub_windows=tuple(subs),
        requested=requested,
        expired=expired,
        now=datetime.fromtimestamp(now, UTC),
    )
