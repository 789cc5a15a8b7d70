"""Walking a TRTC partition's pages: what each sub-window's walk has seen, when it is over,
and a bounded fetcher that keeps the requests in flight constant.

Stop conditions (seed 004 documents paging loosely), whichever comes first in page order:
70011, an empty or short page, ``data.page`` 0, ``totalNum`` reached, or a page repeating the
previous one (a server ignoring ``page``: the pull is then not complete, so nothing is marked
gone). A page reporting a smaller ``totalNum`` than page 1 means records vanished mid-walk
(expired or deleted): offsets shifted and records may have been skipped, so that walk is not
complete either ("count dropped"); one that grew only appended records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.defs.sources.trtc.plan import PullPlan, SubWindow


@dataclass(frozen=True)
class PageResult:
    """One answer of the endpoint, decoded just enough to page."""

    body: bytes
    records: int
    total: int | None
    next_page: int | None  # data.page: 0 = last page, > 0 = more
    first_id: object
    no_records: bool  # errorCode 70011


@dataclass(frozen=True)
class PageSeen:
    """What paging needs to remember of one page (not its records)."""

    records: int
    next_page: int | None
    first_id: object
    no_records: bool
    total: int | None = None


@dataclass
class WindowState:
    """How far one sub-window's walk got. Pages may arrive in any order; ``settle`` reads
    them in page order."""

    window: SubWindow
    page_size: int
    total: int | None = None
    seen: dict[int, PageSeen] = field(default_factory=dict)
    stop: str | None = None  # why the walk ended; None while it goes on
    count_dropped: bool = False  # a later page reported fewer records than page 1

    @property
    def received(self) -> int:
        return sum(p.records for p in self.seen.values())

    @property
    def last_page(self) -> int:
        return max(self.seen, default=0)

    def add(self, page: int, res: PageResult) -> None:
        if page == 1:
            self.total = res.total
            later = [p.total for n, p in self.seen.items() if n > 1 and p.total is not None]
            self.count_dropped = res.total is not None and any(t < res.total for t in later)
        elif self.total is not None and res.total is not None and res.total < self.total:
            self.count_dropped = True
        self.seen[page] = PageSeen(res.records, res.next_page, res.first_id, res.no_records, res.total)

    def settle(self) -> str | None:
        """The reason the walk is over, in page order, or None to ask for the next page."""
        received = 0
        previous: PageSeen | None = None
        for page in sorted(self.seen):
            p = self.seen[page]
            if previous is not None and p.first_id is not None and p.first_id == previous.first_id:
                self.stop = "repeated page"  # the server ignores `page`: stop, and do not prune
                return self.stop
            received += p.records
            if p.no_records:
                self.stop = "70011"
            elif p.records == 0:
                self.stop = "empty page"
            elif p.records < self.page_size:
                self.stop = "short page"
            elif p.next_page == 0:
                self.stop = "page 0"
            elif self.total is not None and received >= self.total:
                self.stop = "totalNum reached"
            if self.stop:
                return self.stop
            previous = p
        return None

    @property
    def complete(self) -> bool:
        reconciled = self.total is None or self.received >= self.total
        return (
            self.stop is not None and self.stop != "repeated page" and reconciled and not self.count_dropped
        )


@dataclass
class Pull:
    """A partition's pull: the plan and every sub-window's walk."""

    plan: PullPlan
    windows: list[WindowState] = field(default_factory=list)  # the walks whose records landed
    splits: int = 0  # edge answers too full to be one page: split in time, their records not landed

    @property
    def api_total(self) -> int | None:
        totals = [w.total for w in self.windows]
        return None if any(t is None for t in totals) else sum(t for t in totals if t is not None)

    @property
    def complete(self) -> bool:
        return all(w.complete for w in self.windows)

    def stops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.windows:
            stop = "count dropped" if w.count_dropped else str(w.stop)
            out[stop] = out.get(stop, 0) + 1
        return out
