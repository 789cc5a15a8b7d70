"""The push-log client against the simulator over real HTTP: V3 signatures the server
verifies, typed errors, month-bounded sub-windows, Start/Limit paging to the first short page."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from pipelines.defs.sources.pushlog.client import SECOND, PushLogResource, even_windows, request_times
from pipelines.lib.http import VendorAuthError
from simulator.app import Simulator
from simulator.server import ThreadedServer

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the real server and keeps every request's query (as signed and sent)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.queries: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(dict(request.url.params))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def resource(server: ThreadedServer, **overrides: object) -> PushLogResource:
    env = server.env()
    fields = {
        "base_url": env["PUSHLOG_BASE_URL"],
        "access_key_id": env["PUSHLOG_ACCESS_KEY_ID"],
        "access_key_secret": env["PUSHLOG_ACCESS_KEY_SECRET"],
        "enterprise_id": env["PUSHLOG_ENTERPRISE_ID"],
        "rate_per_s": 0.0,
        **overrides,
    }
    return PushLogResource(**fields)


def pull(res: PushLogResource, start: datetime, end: datetime, tz: ZoneInfo) -> tuple[list, Recorder]:
    recorder = Recorder()

    async def run() -> list:
        client = res.client(transport=recorder)
        async with client.http:
            return [page async for page in client.pages(start, end, tz)]

    return asyncio.run(run()), recorder


def _local(text: str, tz: ZoneInfo) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)


def test_ranges_never_span_a_month_and_limit_is_at_most_500(simulator: Simulator) -> None:
    tz_name = "America/New_York"
    settings = simulator.settings["pushlog"]
    settings.timezone, settings.volume = tz_name, 24
    with_server = ThreadedServer(simulator).start()
    try:
        tz = ZoneInfo(tz_name)
        # Across a month boundary and a DST change (2026-11-01 has 25 hours in New York).
        start, end = datetime(2026, 10, 30, 6, tzinfo=tz), datetime(2026, 11, 3, tzinfo=tz)
        pages, recorder = pull(resource(with_server), start, end, tz)
    finally:
        with_server.stop()
    assert recorder.queries
    for q in recorder.queries:
        lo, hi = _local(q["StartTime"], tz), _local(q["EndTime"], tz)
        assert (lo.year, lo.month) == (hi.year, hi.month), q
        assert start <= lo <= hi < end, q
        assert 1 <= int(q["Limit"]) <= 500 and q["EnterpriseId"] == "7122600"
    # one range per month, each one short page: 18 deliveries on Oct 30 after 06:00, then 24 a day
    assert sum(p.records for p in pages) == 18 + 24 * 3
    assert sorted((q["StartTime"], q["EndTime"]) for q in recorder.queries) == [
        ("2026-10-30 06:00:00", "2026-10-31 23:59:59"),
        ("2026-11-01 00:00:00", "2026-11-02 23:59:59"),
    ]
    with pytest.raises(ValueError, match="spans a calendar month"):
        request_times(datetime(2026, 10, 31, tzinfo=tz), datetime(2026, 11, 1, 0, 0, 1, tzinfo=tz), tz)


@pytest.mark.parametrize("volume", [499, 500, 1234])
def test_paging_stops_at_the_first_short_page(simulator: Simulator, volume: int) -> None:
    simulator.settings["pushlog"].volume = volume
    server = ThreadedServer(simulator).start()
    try:
        day = (datetime(2026, 10, 5, tzinfo=SHANGHAI), datetime(2026, 10, 6, tzinfo=SHANGHAI))
        pages, recorder = pull(resource(server), *day, SHANGHAI)
        requests = simulator.state.requests["pushlog /"]
    finally:
        server.stop()
    expected = math.ceil(volume / 500) + (volume % 500 == 0)
    assert requests == len(recorder.queries) == expected
    assert [q["Start"] for q in recorder.queries] == [str(500 * k) for k in range(expected)]
    assert {q["Limit"] for q in recorder.queries} == {"500"}
    assert sum(p.records for p in pages) == volume


@pytest.mark.parametrize(("volume", "requests"), [(1, 1), (16, 1), (39, 3)])
def test_a_quiet_month_costs_the_paging_minimum(simulator: Simulator, volume: int, requests: int) -> None:
    """Issue 11: a month of ~1,200 deliveries took 33 requests (a walk per day); one walk of the
    month needs N // 500 + 1 (no total: the walk ends at the first short page)."""
    simulator.settings["pushlog"].volume = volume
    server = ThreadedServer(simulator).start()
    try:
        month = (datetime(2026, 10, 1, tzinfo=SHANGHAI), datetime(2026, 11, 1, tzinfo=SHANGHAI))
        pages, recorder = pull(resource(server), *month, SHANGHAI)
        served = simulator.state.requests["pushlog /"]
    finally:
        server.stop()
    n = 31 * volume
    assert sum(p.records for p in pages) == n
    assert served == len(recorder.queries) == requests == n // 500 + 1
    assert {(q["StartTime"], q["EndTime"]) for q in recorder.queries} == {
        ("2026-10-01 00:00:00", "2026-10-31 23:59:59")
    }
    assert [q["Start"] for q in recorder.queries] == [str(500 * k) for k in range(requests)]


def test_a_busy_month_is_split_into_concurrent_sub_windows_by_its_first_page(simulator: Simulator) -> None:
    simulator.settings["pushlog"].volume = 1000  # 30,000 deliveries in November: 60 pages
    server = ThreadedServer(simulator).start()
    try:
        month = (datetime(2026, 11, 1, tzinfo=SHANGHAI), datetime(2026, 12, 1, tzinfo=SHANGHAI))
        pages, recorder = pull(resource(server, concurrency=4), *month, SHANGHAI)
    finally:
        server.stop()
    assert sum(p.records for p in pages) == 30_000
    ranges = [(q["StartTime"], q["EndTime"]) for q in recorder.queries]
    # the deciding request asked for the whole month; its page was dropped, not landed twice
    assert ranges[0] == ("2026-11-01 00:00:00", "2026-11-30 23:59:59")
    subs = sorted(set(ranges[1:]))
    assert len(subs) == 60 // 4  # MIN_PAGES_PER_WINDOW pages each
    # the sub-windows tile the month, second to second
    assert subs[0][0] == "2026-11-01 00:00:00" and subs[-1][1] == "2026-11-30 23:59:59"
    for (_, end), (begin, _) in zip(subs, subs[1:], strict=False):
        assert _local(begin, SHANGHAI) - _local(end, SHANGHAI) == timedelta(seconds=1)
    # each cut costs at most one request more than one walk: the minimum is 30,000 // 500 + 1
    assert len(recorder.queries) <= 1 + 60 + len(subs)
    assert len(pages) == len(recorder.queries) - 1


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("access_key_secret", "wrong-secret-do-not-print", "SignatureDoesNotMatch"),
        ("access_key_id", "LTAI-unknown-id", "InvalidAccessKeyId.NotFound"),
    ],
)
def test_rejected_credentials_name_the_variables(
    sim: ThreadedServer, field: str, value: str, code: str
) -> None:
    res = resource(sim, **{field: value})
    day = (datetime(2026, 10, 5, tzinfo=SHANGHAI), datetime(2026, 10, 6, tzinfo=SHANGHAI))
    with pytest.raises(VendorAuthError) as err:
        pull(res, *day, SHANGHAI)
    text = str(err.value)
    assert code in text and "PUSHLOG_ACCESS_KEY_ID" in text and "PUSHLOG_ACCESS_KEY_SECRET" in text
    assert "wrong-secret" not in text and "string to sign" not in text
    # not retried: a rejected signature fails at once
    assert sim.sim.state.requests["pushlog /"] == 1


def test_even_windows_tile_a_month_in_elapsed_seconds_across_dst() -> None:
    # November 2026 in New York holds the fall-back hour: 30 days and 1 hour elapsed
    start, end = datetime(2026, 11, 1, tzinfo=NEW_YORK), datetime(2026, 12, 1, tzinfo=NEW_YORK)
    windows = even_windows(start, end, 7)
    assert len(windows) == 7 and windows[0][0] == start and windows[-1][1] == end
    lengths = [b.timestamp() - a.timestamp() for a, b in windows]
    assert sum(lengths) == end.timestamp() - start.timestamp() == 30 * 86400 + 3600
    assert max(lengths) - min(lengths) <= 1 and all(n == int(n) for n in lengths)
    for (_, hi), (lo, _) in zip(windows, windows[1:], strict=False):
        assert hi == lo
        assert (
            request_times(lo - timedelta(hours=1), lo, NEW_YORK)[1]
            < request_times(lo, lo + SECOND, NEW_YORK)[0]
        )
    assert even_windows(start, start + 3 * SECOND, 10) == [
        (start + k * SECOND, start + (k + 1) * SECOND) for k in range(3)
    ]
