"""The one HTTP layer every vendor client uses.

Timeouts; retries with exponential backoff and full jitter on connection errors, 429, 5xx,
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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

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


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    throttled_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "pages": self.pages,
            "rate_limit_wait_s": round(self.throttled_s, 3),
        }


class RateLimiter:
    """A token bucket shared by every request of one client: at most ``rate`` requests per
    second, with bursts of at most ``burst``. Requests reserve their slot in order, so
    concurrent waiters never overshoot."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.burst = max(1, burst)
        self._next = 0.0  # monotonic time of the next free slot
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        if not self.interval:
            return 0.0
        async with self._lock:
            now = time.monotonic()
            # Unused capacity accrues up to `burst` slots, never more.
            slot = max(self._next, now - self.interval * (self.burst - 1))
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            await asyncio.sleep(wait)
            return wait
        return 0.0


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
        concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        auth_hint: str | None = None,
    ) -> None:
        self.vendor = vendor
        # Set by vendors that answer refused credentials with HTTP 401/403 (rather than an
        # error body worth reading): those statuses then raise VendorAuthError with this hint.
        self.auth_hint = auth_hint
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.limiter = RateLimiter(rate_per_s, burst)
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
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            retry_after: float | None = None
            self.stats.throttled_s += await self.limiter.acquire()
            try:
                async with self._semaphore:
                    self.stats.requests += 1
                    response = await self._client.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                last = VendorHTTPError(
                    self.vendor, endpoint, "timeout", f"no answer in time ({type(exc).__name__})"
                )
            except httpx.TransportError as exc:
                last = VendorHTTPError(self.vendor, endpoint, "connection", f"{type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                self.stats.statuses[str(status)] = self.stats.statuses.get(str(status), 0) + 1
                if status == 429 or status >= 500:
                    retry_after = retry_after_seconds(response)
                    last = VendorHTTPError(
                        self.vendor, endpoint, status, response.reason_phrase or "server error"
                    )
                elif status in (401, 403) and self.auth_hint is not None:
                    raise VendorAuthError(
                        self.vendor, endpoint, status, "credentials rejected", self.auth_hint
                    )
                else:
                    try:
                        body = response.content
                        payload = json.loads(body)  # bytes: decoded as UTF-8, or raises
                    except ValueError as exc:
                        last = VendorResponseError(
                            self.vendor,
                            endpoint,
                            f"HTTP {status}",
                            f"the body is not valid JSON ({exc}; {len(response.content)} bytes)",
                        )
                    else:
                        try:
                            if check is not None:
                                check(payload)
                            elif status >= 400:
                                raise VendorHTTPError(self.vendor, endpoint, status, response.reason_phrase)
                        except VendorError as exc:
                            if not exc.retryable:
                                raise
                            last = exc
                        else:
                            return Reply(payload, body)
            if attempt < self.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        assert last is not None
        raise last


async def ordered_prefetch(
    items: Iterable[T], fetch: Callable[[T], Awaitable[Any]], window: int
) -> AsyncIterator[Any]:
    """Run ``fetch`` over ``items`` with at most ``window`` in flight, yielding results in
    item order: pages stream through with bounded memory while requests overlap."""
    iterator = iter(items)
    pending: list[asyncio.Task] = []
    try:
        for item in iterator:
            pending.append(asyncio.ensure_future(fetch(item)))
            if len(pending) >= window:
                break
        while pending:
            task = pending.pop(0)
            result = await task
            for item in iterator:
                pending.append(asyncio.ensure_future(fetch(item)))
                break
            yield result
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
