"""Alibaba Cloud VMS ``CloudListCurlLog`` client (seed 001): V3 signing, error codes, paging.

RPC style: ``POST <base>/`` with every parameter in the query string and an empty body,
signed by ``AcsV3Auth`` (a fresh date and nonce on every attempt, retries included).

Paging: ``Start`` (offset) and ``Limit`` (at most 500); there is no total, so a window's walk
ends at the first page shorter than ``Limit`` (a full last page costs one empty request).

Requests: a range is asked for whole (one request range per calendar month in the vendor's
zone, the API's rule), so a small month costs the minimum the paging allows: 1,201 deliveries
are 3 requests. Offset paging is sequential, though, so when the first page comes back full
its records decide: from how far into the range 500 deliveries reach, the range's volume is
estimated, and only when it holds enough pages for every sub-window to carry several
(``MIN_PAGES_PER_WINDOW``) is the range cut into equal sub-windows walked concurrently. That
first page is then dropped (its records are in the first sub-window, read again): one request
spent to save many round trips. Each cut costs at most one request (a sub-window's short page).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from pydantic import Field

from pipelines.defs.sources.pushlog.signing import AcsV3Auth
from pipelines.lib.http import (
    HttpClient,
    Page,
    Reply,
    VendorAuthError,
    VendorError,
    VendorResponseError,
    bounded,
)
from pipelines.lib.settings import SettingError
from pipelines.lib.vendor_resource import VendorResource, overlap_field

VENDOR = "Alibaba Cloud VMS"
ENDPOINT = "CloudListCurlLog"
CREDENTIAL_VARS = "PUSHLOG_ACCESS_KEY_ID and PUSHLOG_ACCESS_KEY_SECRET"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 500
SECOND = timedelta(seconds=1)
# A cut costs at most one request (the sub-window's own short page): with at least this many
# pages per sub-window, splitting adds at most a quarter to the requests and saves most of the
# round trips.
MIN_PAGES_PER_WINDOW = 4
# Sub-windows per request in flight: enough to even out busy and quiet days between the walks.
WINDOWS_PER_SLOT = 4

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
        raise VendorError(VENDOR, ENDPOINT, code, message, transient=True)
    raise VendorError(VENDOR, ENDPOINT, code, message or "no message")


def request_times(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """A range [start, end) as the API's inclusive ``StartTime``/``EndTime`` in the vendor's
    zone, refusing a range that would span a calendar month there."""
    lo = start.astimezone(tz)
    hi = (end - SECOND).astimezone(tz)
    if (lo.year, lo.month) != (hi.year, hi.month) or hi < lo:
        raise ValueError(f"{ENDPOINT}: [{start}, {end}) spans a calendar month in {tz.key} or is empty")
    return lo.strftime(TIME_FORMAT), hi.strftime(TIME_FORMAT)


def month_windows(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at every local month boundary: the widest ranges the API takes."""
    pieces: list[tuple[datetime, datetime]] = []
    lo = start.astimezone(tz)
    end = end.astimezone(tz)
    while lo < end:
        year, month = (lo.year, lo.month + 1) if lo.month < 12 else (lo.year + 1, 1)
        hi = min(end, datetime(year, month, 1, tzinfo=tz))
        pieces.append((lo, hi))
        lo = hi
    return pieces


def even_windows(start: datetime, end: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into ``count`` pieces of (nearly) equal length, at whole seconds (the
    API's precision; ``start`` and ``end`` are whole seconds). Elapsed time, not wall-clock
    arithmetic (which a DST change in the zone would bend)."""
    first = start.timestamp()
    seconds = int(end.timestamp() - first)
    count = max(1, min(count, seconds))
    cuts = [start] + [
        datetime.fromtimestamp(first + seconds * k // count, start.tzinfo) for k in range(1, count)
    ]
    return list(zip(cuts, [*cuts[1:], end], strict=True))


def _create_ms(record: object) -> int | None:
    value = record.get("CreateTime") if isinstance(record, dict) else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def split_count(start: datetime, end: datetime, first_page: list, page_size: int, concurrency: int) -> int:
    """How many sub-windows [start, end) is worth walking as, judged by its first (full) page.

    Deliveries come by ``Id``, which follows ``CreateTime``: the newest ``CreateTime`` of the
    first ``page_size`` deliveries tells how much of the range they cover, hence its volume.
    1 (no split) when the estimate is too small to gain from one, or cannot be made."""
    times = [t for t in map(_create_ms, first_page) if t is not None]
    if not times or concurrency < 2:
        return 1
    lo_ms = start.timestamp() * 1000
    covered = max(1000.0, max(times) - lo_ms + 1)
    pages = len(first_page) / page_size * (end.timestamp() * 1000 - lo_ms) / covered
    count = min(int(pages // MIN_PAGES_PER_WINDOW), concurrency * WINDOWS_PER_SLOT)
    return count if count >= 2 else 1


class PushLogClient:
    def __init__(self, http: HttpClient, enterprise_id: str, page_size: int = MAX_LIMIT) -> None:
        if not 1 <= page_size <= MAX_LIMIT:
            raise SettingError(f"PushLog page size must be in 1..{MAX_LIMIT} (got {page_size})")
        self.http = http
        self.enterprise_id = enterprise_id
        self.page_size = page_size

    async def _fetch(self, begin: str, finish: str, offset: int) -> tuple[Reply, list]:
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
        return reply, ((reply.payload.get("Data") or {}).get("List")) or []

    async def window_pages(
        self, start: datetime, end: datetime, tz: ZoneInfo, first: tuple[Reply, list] | None = None
    ) -> AsyncIterator[Page]:
        """Every page of one sub-window [start, end) (within one month), walked by offset until
        the first short page; ``first`` is its page at offset 0 when already fetched."""
        begin, finish = request_times(start, end, tz)
        offset = 0
        while True:
            reply, rows = first if first is not None else await self._fetch(begin, finish, offset)
            first = None
            self.http.stats.pages += 1
            yield Page(reply.body, len(rows))
            if len(rows) < self.page_size:
                return
            offset += len(rows)

    async def month_pages(self, start: datetime, end: datetime, tz: ZoneInfo) -> AsyncIterator[Page]:
        """Every page of [start, end) (within one month): one walk, or, when its first page
        shows enough volume, concurrent sub-windows (see the module's docstring)."""
        first = await self._fetch(*request_times(start, end, tz), 0)
        count = 1
        if len(first[1]) >= self.page_size:
            count = split_count(start, end, first[1], self.page_size, self.http.concurrency)
        if count == 1:
            async for page in self.window_pages(start, end, tz, first):
                yield page
            return
        windows = even_windows(start, end, count)
        async for page in bounded(
            windows, lambda w: self.window_pages(w[0], w[1], tz), self.http.concurrency
        ):
            yield page

    async def pages(self, start: datetime, end: datetime, tz: ZoneInfo) -> AsyncIterator[Page]:
        """Every page of [start, end), a request range per calendar month; pages come in
        completion order (``http.bounded``: memory stays flat)."""
        months = month_windows(start, end, tz)
        if len(months) == 1:
            async for page in self.month_pages(*months[0], tz):
                yield page
            return
        async for page in bounded(months, lambda w: self.month_pages(w[0], w[1], tz), self.http.concurrency):
            yield page


class PushLogResource(VendorResource):
    """Connection settings of the push-log API (PUSHLOG_* variables)."""

    SOURCE = "pushlog"
    VENDOR = VENDOR
    SECRETS = frozenset({"access_key_secret"})

    access_key_id: str = Field(description="PUSHLOG_ACCESS_KEY_ID: the Alibaba Cloud AccessKey id")
    access_key_secret: str = Field(description="PUSHLOG_ACCESS_KEY_SECRET: the AccessKey secret (signs V3)")
    enterprise_id: str = Field(description="PUSHLOG_ENTERPRISE_ID: the call center id (EnterpriseId)")
    concurrency: int = Field(
        default=8, ge=1, description="Requests in flight at once, when a month holds enough to split it"
    )
    page_size: int = Field(default=MAX_LIMIT, description="Limit, at most 500")
    overlap_minutes: float = overlap_field(
        15,
        "seed 001 documents delayed (Delay) and retried (Retry) pushes, logged after newer ones",
    )

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> PushLogClient:
        self.require("base_url", "access_key_id", "access_key_secret")
        if not self.enterprise_id.strip().isdigit():
            raise SettingError(
                f"PUSHLOG_ENTERPRISE_ID={self.enterprise_id!r} is not a call-center id (digits)"
            )
        http = self.http(AcsV3Auth(self.access_key_id, self.access_key_secret), transport)
        return PushLogClient(http, self.enterprise_id.strip(), self.page_size)
