"""Alibaba Cloud VMS ``CloudListCurlLog`` client (seed 001): V3 signing, error codes, paging.

RPC style: ``POST <base>/`` with every parameter in the query string and an empty body,
signed by ``AcsV3Auth`` (a fresh date and nonce on every attempt, retries included).

Paging: ``Start`` (offset) and ``Limit`` (at most 500); there is no total, so a window's walk
ends at the first page shorter than ``Limit`` (a full last page costs one empty request).
Offset paging is sequential by nature, so a range is split into day sub-windows (in the
vendor's zone, never across a calendar month) that are walked concurrently.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from pydantic import Field

from pipelines.http import (
    HttpClient,
    Page,
    RetryableVendorError,
    VendorAuthError,
    VendorError,
    VendorResponseError,
)
from pipelines.settings import SettingError
from pipelines.sources.pushlog.signing import AcsV3Auth
from pipelines.vendor_resource import VendorResource

VENDOR = "Alibaba Cloud VMS"
ENDPOINT = "CloudListCurlLog"
CREDENTIAL_VARS = "PUSHLOG_ACCESS_KEY_ID and PUSHLOG_ACCESS_KEY_SECRET"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 500
SECOND = timedelta(seconds=1)

# Alibaba Cloud gateway codes (confirmed names; the API's own codes are not documented).
_AUTH_CODES = {"SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeyId"}
_AUTH_PREFIXES = ("InvalidAccessKeyId.", "InvalidAccessKeySecret")
_PERMISSION_PREFIXES = ("Forbidden", "NoPermission")
_CLOCK_CODES = {"InvalidTimeStamp.Expired", "InvalidTimeStamp.Format"}
# Throttling and transient server states; a reused nonce is cured by the next attempt's nonce.
_RETRYABLE = re.compile(
    r"^(Throttling.*|isv\.BUSINESS_LIMIT_CONTROL|ServiceUnavailable.*|InternalError|SignatureNonceUsed)$"
)


def _short(message: str) -> str:
    # SignatureDoesNotMatch carries the server's string to sign: noise, kept out of errors.
    return message.split(" server string to sign", 1)[0].strip()[:300]


def check_envelope(payload: object) -> None:
    """Accept ``Code == "OK"`` with ``Data.List``; anything else is a typed error."""
    if not isinstance(payload, dict):
        raise VendorResponseError(VENDOR, ENDPOINT, "no envelope", f"a JSON {type(payload).__name__}")
    code = payload.get("Code")
    if code == "OK":
        data = payload.get("Data")
        # Inferred: an empty window may answer Data null or List null; a missing Data is drift.
        if "Data" not in payload or not (
            data is None or (isinstance(data, dict) and isinstance(data.get("List") or [], list))
        ):
            raise VendorResponseError(VENDOR, ENDPOINT, "OK", "the answer has no Data.List array")
        return
    code = str(code) if code is not None else "no code"
    message = _short(str(payload.get("Message") or ""))
    if code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES):
        raise VendorAuthError(VENDOR, ENDPOINT, code, message, f"Check {CREDENTIAL_VARS}.")
    if code.startswith(_PERMISSION_PREFIXES):
        raise VendorAuthError(
            VENDOR,
            ENDPOINT,
            code,
            message,
            f"Check PUSHLOG_ENTERPRISE_ID and the permissions of PUSHLOG_ACCESS_KEY_ID ({CREDENTIAL_VARS}).",
        )
    if code in _CLOCK_CODES:
        raise VendorError(
            VENDOR, ENDPOINT, code, message, "Check this machine's clock (x-acs-date, 15 minutes)."
        )
    if _RETRYABLE.match(code):
        raise RetryableVendorError(VENDOR, ENDPOINT, code, message)
    raise VendorError(VENDOR, ENDPOINT, code, message or "no message")


def request_times(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """A range [start, end) as the API's inclusive ``StartTime``/``EndTime`` in the vendor's
    zone, refusing a range that would span a calendar month there."""
    lo = start.astimezone(tz)
    hi = (end - SECOND).astimezone(tz)
    if (lo.year, lo.month) != (hi.year, hi.month) or hi < lo:
        raise ValueError(f"{ENDPOINT}: [{start}, {end}) spans a calendar month in {tz.key} or is empty")
    return lo.strftime(TIME_FORMAT), hi.strftime(TIME_FORMAT)


def sub_windows(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at every local midnight (so also at every month boundary), each piece
    whole seconds: the API's time precision."""
    pieces: list[tuple[datetime, datetime]] = []
    lo = start.astimezone(tz)
    end = end.astimezone(tz)
    while lo < end:
        next_day = (lo + timedelta(days=1)).date()
        midnight = datetime(next_day.year, next_day.month, next_day.day, tzinfo=tz)
        hi = min(end, midnight)
        pieces.append((lo, hi))
        lo = hi
    return pieces


class PushLogClient:
    def __init__(self, http: HttpClient, enterprise_id: str, page_size: int = MAX_LIMIT) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise SettingError(f"PushLog page size must be in 1..{MAX_LIMIT} (got {page_size})")
        self.http = http
        self.enterprise_id = enterprise_id
        self.page_size = page_size

    async def window_pages(self, start: datetime, end: datetime, tz: ZoneInfo) -> AsyncIterator[Page]:
        """Every page of one sub-window [start, end) (within one month), walked by offset until
        the first short page."""
        begin, finish = request_times(start, end, tz)
        offset = 0
        while True:
            reply = await self.http.request_json(
                "POST",
                "/",
                endpoint=ENDPOINT,
                check=check_envelope,
                params={
                    "EnterpriseId": self.enterprise_id,
                    "StartTime": begin,
                    "EndTime": finish,
                    "Start": str(offset),
                    "Limit": str(self.page_size),
                },
            )
            rows = ((reply.payload.get("Data") or {}).get("List")) or []
            self.http.stats.pages += 1
            yield Page(reply.body, len(rows))
            if len(rows) < self.page_size:
                return
            offset += len(rows)

    async def pages(self, start: datetime, end: datetime, tz: ZoneInfo) -> AsyncIterator[Page]:
        """Every page of [start, end), its day sub-windows walked ``concurrency`` at a time;
        pages come in completion order through a bounded queue (memory stays flat)."""
        windows = sub_windows(start, end, tz)
        async for page in merge(
            [lambda w=w: self.window_pages(w[0], w[1], tz) for w in windows], self.http.concurrency
        ):
            yield page


_DONE = object()


async def merge(
    walks: list[Callable[[], AsyncIterator[Page]]], concurrency: int, depth: int = 64
) -> AsyncIterator[Page]:
    """Run at most ``concurrency`` walks at once, yielding their pages as they come. The
    first error cancels the other walks and propagates."""
    queue: asyncio.Queue = asyncio.Queue(depth)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def run(walk: Callable[[], AsyncIterator[Page]]) -> None:
        try:
            async with gate:
                async for page in walk():
                    await queue.put(page)
            await queue.put(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which raises it
            await queue.put(exc)

    tasks = [asyncio.ensure_future(run(walk)) for walk in walks]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class PushLogResource(VendorResource):
    """Connection settings of the push-log API (PUSHLOG_* variables)."""

    SOURCE = "pushlog"
    VENDOR = VENDOR
    SECRETS = frozenset({"access_key_secret"})

    base_url: str = Field(
        description="PUSHLOG_BASE_URL: scheme, host, port and any path prefix; POST goes to <base>/"
    )
    access_key_id: str = Field(description="PUSHLOG_ACCESS_KEY_ID: the Alibaba Cloud AccessKey id")
    access_key_secret: str = Field(description="PUSHLOG_ACCESS_KEY_SECRET: the AccessKey secret (signs V3)")
    enterprise_id: str = Field(description="PUSHLOG_ENTERPRISE_ID: the call center id (EnterpriseId)")
    concurrency: int = Field(default=8, ge=1, description="Sub-windows of a busy month walked at once")
    page_size: int = Field(default=MAX_LIMIT, description="Limit, at most 500")
    overlap_minutes: float = Field(
        default=15.0, description="How far before the high-water mark an incremental pull starts (late rows)"
    )

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> PushLogClient:
        self.require("base_url", "access_key_id", "access_key_secret")
        if not self.enterprise_id.strip().isdigit():
            raise SettingError(
                f"PUSHLOG_ENTERPRISE_ID={self.enterprise_id!r} is not a call-center id (digits)"
            )
        http = self.http(self.base_url, AcsV3Auth(self.access_key_id, self.access_key_secret), transport)
        return PushLogClient(http, self.enterprise_id.strip(), self.page_size)
