"""The client-side rate limiter (``pipelines.lib.http.RateLimiter``) and where ``HttpClient`` takes
its slot: what the vendor sees in any rolling second, even after a stall.

The "vendors" here are httpx mock transports that stamp each request when they handle it, as
the simulator's (and TRTC's) per-second limit does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import httpx
import pytest

from pipelines.lib.http import HttpClient, RateLimiter


def peak_per_second(stamps: list[float]) -> int:
    """The most stamps in any half-open second (t - 1, t], the simulator's window."""
    window: deque[float] = deque()
    peak = 0
    for t in sorted(stamps):
        window.append(t)
        while window[0] <= t - 1.0:
            window.popleft()
        peak = max(peak, len(window))
    return peak


def fetch_all(
    n: int, handler: Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]], **client: object
) -> HttpClient:
    """``n`` requests at once through one client (most wait for their turn)."""

    async def go() -> HttpClient:
        async with HttpClient(
            "vendor", "http://vendor", transport=httpx.MockTransport(handler), **client
        ) as http:
            await asyncio.gather(*(http.request_json("GET", f"/r/{i}") for i in range(n)))
        return http

    return asyncio.run(go())


@pytest.mark.parametrize("burst", [1, 4])
def test_a_stalled_event_loop_does_not_release_a_burst(burst: int) -> None:
    # A loaded machine stalls the event loop (here: a blocking handler) while requests wait
    # for their turn. A slot booked before the stall and spent after it goes out together
    # with the others booked meanwhile, and with the sends that follow packs a rolling second
    # over the rate (here 50 + the 15 slots of the stall).
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        if len(stamps) == 20:
            time.sleep(0.3)
        return httpx.Response(200, json={})

    http = fetch_all(100, handler, rate_per_s=50, burst=burst, concurrency=8)
    assert len(stamps) == 100 and http.stats.retries == 0 and http.stats.throttled_s > 0
    # At most 50 leave in any second; one more may be stamped in it if the OS preempts the
    # process between a request's turn and its stamp (the window rule below closes that too).
    assert peak_per_second(stamps) <= 50 + 1


def test_the_window_limit_holds_when_the_vendor_bunches_arrivals() -> None:
    # The vendor stalls: what arrives meanwhile waits in its queue and is counted when it gets
    # to it, so the vendor counts arrivals closer together than they were sent: pacing at the
    # limit is not enough. The window rule (in flight or answered within the last second) is.
    stamps: list[float] = []
    stall: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        if len(stamps) == 30 and not stall:
            stall.append(time.monotonic() + 0.4)
        if stall and time.monotonic() < stall[0]:
            await asyncio.sleep(stall[0] - time.monotonic())
        stamps.append(time.monotonic())
        return httpx.Response(200, json={})

    async def go(window_limit: int | None) -> HttpClient:
        async with HttpClient(
            "vendor", "http://vendor", transport=httpx.MockTransport(handler), concurrency=16
        ) as http:
            http.limiter = RateLimiter(50, burst=1, window_limit=window_limit)
            await asyncio.gather(*(http.request_json("GET", f"/r/{i}") for i in range(100)))
        return http

    assert asyncio.run(go(None)).stats.requests == 100
    assert peak_per_second(stamps) > 50  # the 16 queued at once, then the pace: 50 is not enough

    stamps.clear()
    stall.clear()
    guarded = asyncio.run(go(50))
    assert guarded.stats.requests == 100 and guarded.stats.throttled_s > 0
    assert peak_per_second(stamps) <= 50


class FakeTime:
    """A clock that moves only when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def send_times(
    limiter: RateLimiter, fake: FakeTime, n: int, stall_at: int = -1, stall_s: float = 0.0
) -> list[float]:
    async def go() -> list[float]:
        out = []
        for i in range(n):
            if i == stall_at:
                fake.now += stall_s
            await limiter.acquire()
            out.append(fake.now)
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("burst", [1, 4])
def test_after_a_stall_burst_at_once_and_never_more_than_rate_in_a_second(burst: int) -> None:
    fake = FakeTime()
    limiter = RateLimiter(20, burst=burst, clock=fake.clock, sleep=fake.sleep)
    times = send_times(limiter, fake, 200, stall_at=50, stall_s=5.0)
    assert times.count(times[50]) == burst  # after 5 s idle: `burst` at once, not 100
    assert peak_per_second(times) == 20  # the bucket alone would let burst - 1 more through
    assert times[-1] - times[50] == pytest.approx((149 - (burst - 1)) / 20)


@pytest.mark.parametrize(("burst", "rate"), [(1, 91), (4, 100)])
def test_a_bucket_of_several_tokens_credits_late_wake_ups(burst: int, rate: int) -> None:
    # Every sleep returns a millisecond late, as on a busy event loop: a bucket of one token
    # loses that millisecond per request (100/s becomes 91/s); a few tokens catch it up.
    fake = FakeTime()

    async def late(seconds: float) -> None:
        await fake.sleep(seconds + 0.001)

    limiter = RateLimiter(100, burst=burst, clock=fake.clock, sleep=late)
    times = send_times(limiter, fake, 1000)
    assert (len(times) - 1) / (times[-1] - times[0]) == pytest.approx(rate, rel=0.01)
    assert peak_per_second(times) <= 100


def test_the_window_counts_requests_until_a_second_after_their_answer() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, window_limit=3, clock=fake.clock, sleep=fake.sleep)

    async def go() -> list[float]:
        starts = []
        for _ in range(3):
            assert await limiter.acquire() == 0
            starts.append(fake.now)
        # Three in flight fill the window: the fourth waits for an answer, then one second.
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        fake.now += 0.5
        limiter.release()
        waited = await waiter
        starts.append(fake.now)
        assert waited == pytest.approx(1.5)
        return starts

    starts = asyncio.run(go())
    assert starts[-1] - starts[0] == pytest.approx(1.5)


def test_no_limit_never_waits() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    assert send_times(limiter, fake, 1000) == [1000.0] * 1000
