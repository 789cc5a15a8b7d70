"""The client-side rate limiter: one per client, shared by every request of it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Paces the requests of one client; every request of the client shares it.

    Call ``acquire`` right before a request goes out, inside its concurrency slot, and
    ``release`` once its answer (or its failure) is in. The rules below decide when a request
    may go, all at the moment it actually goes, never by a time booked earlier: a request
    that booked a time and then waited (for a connection slot, or on an event loop stalled by
    a loaded machine) sends late, and such late sends bunch together above the rate.

    - Pace (``rate``, ``burst``): a token bucket (GCRA) of ``rate`` tokens a second holding at
      most ``burst``. Idle time and stalls accrue at most ``burst`` tokens, so after a stall at
      most ``burst`` requests leave at once, then one per ``1 / rate``. A bucket of more than
      one token also credits the small delays of a busy event loop (each wake-up a little
      late), which a bucket of one loses for good: at 190/s a millisecond late per request
      costs 30 requests a second.
    - Per second (with ``rate``): at most ``max(1, floor(rate))`` requests leave in any
      rolling second, counted from the send times themselves; the bucket alone would let
      ``burst - 1`` more through. ``burst`` therefore never raises a second's count over
      ``rate``: it only decides how quickly unused capacity may be caught up.
    - Window (``window_limit``, for a vendor that counts requests per second on its side):
      a request counts from when it leaves until one second after its answer came back, and
      none leaves while ``window_limit`` count. The vendor sees each request at some instant
      between those two, so at most ``window_limit`` requests reach it in any rolling second
      of its clock, whatever stalls the client, the network or the vendor had (a vendor that
      queues arrivals during a stall and counts them together afterwards included), which
      pacing alone cannot promise. It costs throughput only beyond
      ``window_limit / (1 s + round trip)``. One hole: a request given up on (timeout, reset)
      counts from then, so a vendor that still counts it later is not covered.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        window_limit: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.burst = max(1, burst)
        self.per_second = max(1, int(rate)) if rate else 0
        self.window_limit = window_limit
        self._clock, self._sleep = clock, sleep
        self._tat = float("-inf")  # GCRA's theoretical arrival time of the next request
        self._sent: deque[float] = deque()  # send times of the last second, oldest first
        self._in_flight = 0
        self._answered: deque[float] = deque()  # answer times of the last second, oldest first
        self._lock = asyncio.Lock()  # waiters go in arrival order
        self._answer = asyncio.Event()

    def _delay(self, now: float) -> float | None:
        """Seconds before a request may leave at ``now`` (<= 0: now); None: not before an
        answer comes back."""
        delay = 0.0
        if self.interval:
            delay = self._tat - self.interval * (self.burst - 1) - now
            sent = self._sent
            while sent and sent[0] + 1.0 <= now:
                sent.popleft()
            if len(sent) >= self.per_second:
                delay = max(delay, sent[len(sent) - self.per_second] + 1.0 - now)
        if self.window_limit is not None:
            answered = self._answered
            while answered and answered[0] + 1.0 <= now:
                answered.popleft()
            over = self._in_flight + len(answered) + 1 - self.window_limit
            if over > 0:
                if over > len(answered):
                    return None  # requests in flight alone fill the window
                # Only ageing frees a place: an answer just moves its request to `answered`.
                delay = max(delay, answered[over - 1] + 1.0 - now)
        return delay

    async def acquire(self) -> float:
        """Wait until a request may leave and count it as gone; return the seconds waited."""
        if not self.interval and self.window_limit is None:
            return 0.0
        start = self._clock()
        async with self._lock:
            while (delay := self._delay(now := self._clock())) is None or delay > 0:
                if delay is None:
                    self._answer.clear()
                    await self._answer.wait()
                else:
                    await self._sleep(delay)
            if self.interval:
                self._tat = max(self._tat, now) + self.interval
                self._sent.append(now)
            if self.window_limit is not None:
                self._in_flight += 1
        return now - start

    def release(self) -> None:
        """The request ``acquire`` let go has its answer, or failed: it counts one second more."""
        if self.window_limit is None:
            return
        self._in_flight -= 1
        self._answered.append(self._clock())
        self._answer.set()
