"""A vendor's HTTP client: one connection pool, limiter and retry policy; sends a request,
decodes its JSON and has the vendor's ``check`` judge it, retrying what is transient."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pipelines.lib.http.errors import (
    VendorAuthError,
    VendorHTTPError,
    VendorResponseError,
    unanswered,
)
from pipelines.lib.http.rate_limit import RateLimiter
from pipelines.lib.http.retry import RetryPolicy, retry_after_seconds
from pipelines.lib.http.stats import HttpStats

# httpx logs every request URL at INFO, query string included; some vendors sign there.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

# A vendor's judgement of a decoded answer: raises a ``VendorError`` for an error envelope.
Check = Callable[[Any], None]


@dataclass(frozen=True)
class Page:
    """One page of records as a client yields it: the body (UTF-8 JSON, landed verbatim), how
    many records it holds, and the total the API reported, if it reports one.

    The body stays bytes from the socket to PostgreSQL: never decoded into a str the loader
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
        self.retry = RetryPolicy(max_retries, backoff_base_s, backoff_max_s)
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
        async for attempt in self.retry.retrying(self.stats):
            with attempt:
                return await self._attempt(method, path, endpoint, check, kwargs)
        raise AssertionError("unreachable: tenacity returns or raises")

    async def _attempt(
        self, method: str, path: str, endpoint: str, check: Check | None, kwargs: dict[str, Any]
    ) -> Reply:
        """One request; a failure is raised as a ``VendorError``, ``transient`` when it is
        worth another try."""
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
        except httpx.TransportError as exc:
            raise unanswered(self.vendor, endpoint, exc, self.tls_hint) from None
        status = str(response.status_code)
        self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
        payload = self._decode(endpoint, response)
        if check is not None:
            check(payload)
        elif response.status_code >= 400:
            raise VendorHTTPError(self.vendor, endpoint, response.status_code, response.reason_phrase)
        return Reply(payload, response.content)

    def _decode(self, endpoint: str, response: httpx.Response) -> Any:
        """The answer's JSON, unless its status already says it failed: 429 and 5xx are
        transient (after the vendor's ``Retry-After``), as is a body that is not JSON."""
        status = response.status_code
        if status == 429 or status >= 500:
            meaning = response.reason_phrase or "server error"
            raise VendorHTTPError(
                self.vendor,
                endpoint,
                status,
                meaning,
                transient=True,
                retry_after=retry_after_seconds(response),
            )
        if status in (401, 403) and self.auth_hint is not None:
            raise VendorAuthError(self.vendor, endpoint, status, "credentials rejected", self.auth_hint)
        body = response.content
        try:
            return json.loads(body)  # bytes: decoded as UTF-8, or raises
        except ValueError as exc:
            meaning = f"the body is not valid JSON ({exc}; {len(body)} bytes)"
            raise VendorResponseError(
                self.vendor, endpoint, f"HTTP {status}", meaning, transient=True
            ) from None
