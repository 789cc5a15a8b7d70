"""The one HTTP layer every vendor client uses.

Timeouts; retries (``tenacity``) with exponential backoff and full jitter on connection errors, 429, 5xx,
unparsable bodies and vendor errors marked retryable, honouring ``Retry-After``; a
client-side rate limiter; bounded concurrency; typed errors that name the vendor, the
endpoint, the code and its meaning; counters for the Dagster UI.

Errors name the endpoint path only, never the query string: some vendors put credentials
(a signature, a UserSig) there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

# httpx logs every request URL at INFO, query string included; some vendors sign there.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

T = TypeVar("T")


class VendorError(Exception):
    """A vendor answered with an error (HTTP status or an error envelope)."""

    retryable = False

    def __init__(self, vendor: str, endpoint: str, code: object, meaning: str, hint: str = "") -> None:
        self.vendor, self.endpoint, self.code, self.meaning, self.hint = vendor, endpoint, code, meaning, hint
        text = f"{vendor} {endpoint}: error {code}: {meaning}"
        super().__init__(f"{text}. {hint}" if hint else text)


class RetryableVendorError(VendorError):
    """An error envelope that means "try again later" (throttling, busy)."""

    retryable = True


class VendorAuthError(VendorError):
    """Credentials rejected: the message says which variables to check."""


class VendorHTTPError(VendorError):
    """An HTTP status that retries did not cure."""


class VendorResponseError(VendorError):
    """A body that is not the JSON the vendor documents (truncated, HTML, drifted)."""


class VendorTLSError(VendorError):
    """The vendor's certificate failed verification: retrying cannot cure it."""


def _certificate_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a connection error, if that is what it is."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    throttled_s: float = 0.0
    retry_wait_s: float = 0.0  # the backoffs decided before retries (a Retry-After honoured)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "pages": self.pages,
            "rate_limit_wait_s": round(self.throttled_s, 3),
            "retry_wait_s": round(self.retry_wait_s, 3),
        }


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
            while True:
                now = self._clock()
                delay = self._delay(now)
                if delay is None:
                    self._answer.clear()
                    await self._answer.wait()
                elif delay > 0:
                    await self._sleep(delay)
                else:
                    break
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


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


Check = Callable[[Any], None]


@dataclass(frozen=True)
class Page:
    """One page of records as a client yields it: the body (UTF-8 JSON, landed verbatim), how
    many records it holds, and the total the API reported, if it reports one.

    The body stays bytes from the socket to ``COPY``: never decoded into a str the loader
    would encode again, and its length is the memory it holds."""

    body: bytes
    records: int
    total: int | None = None


@dataclass(frozen=True)
class Reply:
    """A decoded answer and its body (UTF-8 JSON), which the loader lands verbatim."""

    payload: Any
    body: bytes


class HttpClient:
    """One vendor's connection pool, limiter and retry policy.

    ``request_json`` sends, decodes and validates (through the vendor's ``check``, which
    raises a ``VendorError`` for an error envelope), retrying what is transient.
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        rate_per_s: float | None = None,
        burst: int = 1,
        window_limit: int | None = None,
        concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        auth_hint: str | None = None,
        verify: ssl.SSLContext | bool = True,
        tls_hint: str = "",
    ) -> None:
        self.vendor = vendor
        # What to set when the vendor's certificate is not trusted (its CA bundle variable).
        self.tls_hint = tls_hint
        # Set by vendors that answer refused credentials with HTTP 401/403 (rather than an
        # error body worth reading): those statuses then raise VendorAuthError with this hint.
        self.auth_hint = auth_hint
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.limiter = RateLimiter(rate_per_s, burst, window_limit)
        self.concurrency = max(1, concurrency)
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self.stats = HttpStats()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            transport=transport,
            headers=headers,
            verify=verify,
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s * 4)
        # Full jitter: spreads the retries of concurrent requests apart.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        endpoint: str | None = None,
        check: Check | None = None,
        **kwargs: Any,
    ) -> Reply:
        """Send one request and return its decoded JSON, after ``check`` accepted it.

        ``kwargs`` go to ``httpx.AsyncClient.request`` (params, json, content, headers).
        ``endpoint`` names the request in errors (defaults to ``path``).
        """
        endpoint = endpoint or path
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: getattr(exc, "transient", False)),
            before_sleep=self._count_retry,
            reraise=True,  # the last attempt's own error, naming vendor, endpoint and cause
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(method, path, endpoint, check, kwargs)
        raise AssertionError("unreachable: tenacity returns or raises")

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = self._backoff(state.attempt_number - 1, getattr(error, "retry_after", None))
        self.stats.retry_wait_s += wait
        return wait

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1

    async def _attempt(
        self, method: str, path: str, endpoint: str, check: Check | None, kwargs: dict[str, Any]
    ) -> Reply:
        """One request. A failure worth another try (a timeout, a dropped connection, 429, 5xx, a
        body that is not JSON, a vendor error marked retryable) is raised ``transient``."""
        try:
            # The rate is taken inside the concurrency slot, right before the send: a slot
            # taken earlier would be spent late, in a bunch with others.
            async with self._semaphore:
                self.stats.throttled_s += await self.limiter.acquire()
                self.stats.requests += 1
                try:
                    response = await self._client.request(method, path, **kwargs)
                finally:
                    self.limiter.release()
        except httpx.TimeoutException as exc:
            raise _transient(
                VendorHTTPError(self.vendor, endpoint, "timeout", f"no answer in time ({type(exc).__name__})")
            ) from None
        except httpx.ConnectError as exc:
            problem = _certificate_problem(exc)
            if problem is None:
                raise _transient(
                    VendorHTTPError(self.vendor, endpoint, "connection", f"{type(exc).__name__}: {exc}")
                ) from None
            # Not worth another try: the certificate will not change; the hint names the setting.
            raise VendorTLSError(
                self.vendor,
                endpoint,
                "certificate",
                f"the server's TLS certificate failed verification ({problem.verify_message or problem.reason})",
                self.tls_hint,
            ) from None
        except httpx.TransportError as exc:
            raise _transient(
                VendorHTTPError(self.vendor, endpoint, "connection", f"{type(exc).__name__}: {exc}")
            ) from None
        status = response.status_code
        self.stats.statuses[str(status)] = self.stats.statuses.get(str(status), 0) + 1
        if status == 429 or status >= 500:
            error = VendorHTTPError(self.vendor, endpoint, status, response.reason_phrase or "server error")
            raise _transient(error, retry_after_seconds(response))
        if status in (401, 403) and self.auth_hint is not None:
            raise VendorAuthError(self.vendor, endpoint, status, "credentials rejected", self.auth_hint)
        body = response.content
        try:
            payload = json.loads(body)  # bytes: decoded as UTF-8, or raises
        except ValueError as exc:
            raise _transient(
                VendorResponseError(
                    self.vendor,
                    endpoint,
                    f"HTTP {status}",
                    f"the body is not valid JSON ({exc}; {len(body)} bytes)",
                )
            ) from None
        try:
            if check is not None:
                check(payload)
            elif status >= 400:
                raise VendorHTTPError(self.vendor, endpoint, status, response.reason_phrase)
        except VendorError as exc:
            if exc.retryable:
                raise _transient(exc) from None
            raise
        return Reply(payload, body)


def _transient(error: VendorError, retry_after: float | None = None) -> VendorError:
    """Mark ``error`` worth another try (after ``retry_after`` seconds, when the vendor said)."""
    error.transient = True  # type: ignore[attr-defined]
    error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


class _Failed:
    """A fetch's exception, handed to the consumer to raise there."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # one item's fetch has no more results


async def bounded(
    items: Iterable[T],
    fetch: Callable[[T], Awaitable[Any] | AsyncIterator[Any]],
    limit: int,
    *,
    ordered: bool = False,
) -> AsyncIterator[Any]:
    """Run ``fetch`` over ``items``, at most ``limit`` at once, and yield what it gives: one
    result per item (an awaitable) or a stream of them (an async iterator, e.g. one
    sub-window's pages). Results come as they arrive, so one slow answer never holds the
    others back and the number in flight stays at ``limit`` (what sustains a rate under
    latency); or, ``ordered``, every result of an item before those of the next.

    A running item waits while its results are not taken, so at most about ``2 * limit``
    results are held whatever the number of items. An exception in any fetch
    stops them all and is raised here."""
    iterator = iter(items)
    shared: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, limit))
    running: deque[tuple[asyncio.Task, asyncio.Queue[Any]]] = deque()

    async def drive(item: T, box: asyncio.Queue[Any]) -> None:
        try:
            produced = fetch(item)
            if hasattr(produced, "__aiter__"):
                async for result in produced:  # type: ignore[union-attr]
                    await box.put(result)
            else:
                await box.put(await produced)  # type: ignore[misc]
            await box.put(_END)
        except Exception as error:  # noqa: BLE001 (raised again by the consumer)
            await box.put(_Failed(error))

    def start() -> bool:
        for item in iterator:
            box = asyncio.Queue(maxsize=1) if ordered else shared
            running.append((asyncio.ensure_future(drive(item, box)), box))
            return True
        return False

    try:
        for _ in range(max(1, limit)):
            if not start():
                break
        active = len(running)
        while active:
            result = await (running[0][1] if ordered else shared).get()
            if isinstance(result, _Failed):
                raise result.error
            if result is _END:
                while running and running[0][0].done():  # forget what has finished
                    running.popleft()
                active -= 1
                active += start()
                continue
            yield result
    finally:
        tasks = [task for task, _ in running if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
