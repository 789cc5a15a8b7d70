"""Udesk CCPS CRM client (seed 002): signing, the four endpoints, paging.

Signing (confirmed): query parameters ``email``, ``timestamp`` (Unix seconds) and
``sign = sha1_hex("<email>&<secretKey>&<timestamp>")`` on every request, recomputed on
every attempt so a retry never sends a stale timestamp.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Generator
from datetime import datetime, timedelta

import httpx
from pydantic import Field

from pipelines.lib.http import (
    HttpClient,
    Page,
    Reply,
    VendorAuthError,
    VendorError,
    bounded,
)
from pipelines.lib.vendor_resource import VendorResource, overlap_field

VENDOR = "Udesk CRM"
CREDENTIAL_VARS = "CRM_EMAIL and CRM_SECRET_KEY"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_PAGE_SIZE = 100

# Inferred: the document has no error table. A non-200 code whose message speaks of the
# signature, the e-mail or an expiry is an authentication failure; "busy" is transient.
_AUTH_WORDS = re.compile(r"sign|签名|auth|认证|鉴权|email|邮箱|expire|过期|secret|密钥", re.IGNORECASE)
_BUSY_WORDS = re.compile(r"busy|繁忙|频繁|too many|限流", re.IGNORECASE)


def sign(email: str, secret_key: str, timestamp: int) -> str:
    return hashlib.sha1(f"{email}&{secret_key}&{timestamp}".encode()).hexdigest()


class CrmSignAuth(httpx.Auth):
    def __init__(self, email: str, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self._email, self._secret_key, self._clock = email, secret_key, clock

    def __repr__(self) -> str:
        return "CrmSignAuth(email=***, secret_key=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        ts = int(self._clock())
        request.url = request.url.copy_merge_params(
            {"email": self._email, "timestamp": str(ts), "sign": sign(self._email, self._secret_key, ts)}
        )
        yield request


def check_envelope(endpoint: str) -> Callable[[object], None]:
    def check(payload: object) -> None:
        if not isinstance(payload, dict):
            raise VendorError(
                VENDOR, endpoint, "no envelope", f"expected a JSON object, got {type(payload).__name__}"
            )
        code = payload.get("code")
        # Documented as a string, sent as a number: accept both forms.
        if str(code) == "200":
            return
        message = str(payload.get("message") or "")
        if code is None:
            raise VendorError(VENDOR, endpoint, "no code", "the answer has no 'code' field")
        if _AUTH_WORDS.search(message) or str(code) in {"401", "403"}:
            raise VendorAuthError(
                VENDOR, endpoint, code, message or "authentication failed", f"Check {CREDENTIAL_VARS}."
            )
        if _BUSY_WORDS.search(message):
            raise VendorError(VENDOR, endpoint, code, message, transient=True)
        raise VendorError(VENDOR, endpoint, code, message or "no message")

    return check


def request_window(start: datetime, end: datetime) -> tuple[str, str]:
    """A partition window [start, end) as the API's inclusive local-time range."""
    return start.strftime(TIME_FORMAT), (end - timedelta(seconds=1)).strftime(TIME_FORMAT)


class CrmClient:
    def __init__(self, http: HttpClient, page_size: int = MAX_PAGE_SIZE) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"CRM page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.http = http
        self.page_size = page_size

    async def _get(self, path: str, params: dict | None = None) -> Reply:
        return await self.http.request_json("GET", path, params=params, check=check_envelope(path))

    async def call_log_pages(self, start: datetime, end: datetime) -> AsyncIterator[Page]:
        """Every page of ``/v1/callLogs`` for the window [start, end).

        Page 1 gives ``total``; the remaining pages are fetched concurrently in order.
        ``total`` is not trusted to end the walk: it can disagree with the list, so a
        full last page leads to one more request, and the walk ends on a short page.
        """
        begin, finish = request_window(start, end)
        size = self.page_size

        async def fetch(page: int) -> Page:
            reply = await self._get(
                "/v1/callLogs", {"startTime": begin, "endTime": finish, "pageNum": page, "pageSize": size}
            )
            data = reply.payload.get("data") or {}
            rows = data.get("list") or []
            total = data.get("total")
            self.http.stats.pages += 1
            return Page(
                reply.body,
                len(rows),
                int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
            )

        first = await fetch(1)
        yield first
        if first.records < size:
            return
        pages = max(2, math.ceil((first.total or 0) / size))
        last = first
        async for page in bounded(range(2, pages + 1), fetch, self.http.concurrency, ordered=True):
            last = page
            yield page
        next_page = pages + 1
        while last.records >= size:
            last = await fetch(next_page)
            next_page += 1
            yield last

    async def call_detail(self, call_id: str) -> Page:
        reply = await self._get("/v1/callLogs/view", {"callId": call_id})
        data = reply.payload.get("data")
        self.http.stats.pages += 1
        return Page(reply.body, len(data) if isinstance(data, list) else 0)

    async def hangup_reasons(self) -> Page:
        reply = await self._get("/v1/hangupReasons")
        data = reply.payload.get("data")
        self.http.stats.pages += 1
        return Page(reply.body, len(data) if isinstance(data, list) else 0)

    async def agent_call_pages(self, master_user_id: int) -> AsyncIterator[Page]:
        """An agent's recent calls from ``/v1/callLogs/search``.

        Documented with only ``masterUserId``; the answer carries pageNum/pageSize/total,
        so the walk pages on, but stops when a page brings nothing new, in case a server
        ignores the paging fields and repeats page 1.
        """
        seen: set[object] = set()
        page_num = 1
        while True:
            reply = await self.http.request_json(
                "POST",
                "/v1/callLogs/search",
                json={"masterUserId": master_user_id, "pageNum": page_num, "pageSize": self.page_size},
                check=check_envelope("/v1/callLogs/search"),
            )
            data = reply.payload.get("data")
            rows = (data.get("list") if isinstance(data, dict) else data) or []
            self.http.stats.pages += 1
            ids = {r.get("id") for r in rows if isinstance(r, dict)}
            fresh = ids - seen
            if not fresh:
                return
            seen |= ids
            total = data.get("total") if isinstance(data, dict) else None
            yield Page(reply.body, len(rows), total if isinstance(total, int) else None)
            if len(rows) < self.page_size or (isinstance(total, int) and len(seen) >= total):
                return
            page_num += 1


class CrmResource(VendorResource):
    """Connection settings of the Udesk CRM API (CRM_* variables)."""

    SOURCE = "crm"
    VENDOR = VENDOR
    SECRETS = frozenset({"secret_key"})

    email: str = Field(description="CRM_EMAIL: the account e-mail that signs requests")
    secret_key: str = Field(description="CRM_SECRET_KEY: the signing secret")
    agent_ids: str = Field(
        default="", description="CRM_AGENT_IDS: comma list of masterUserIds for /v1/callLogs/search"
    )
    # 20 requests/s at a 200 ms round trip keep 4 in flight; more only adds connections
    # whose bookkeeping costs client CPU (bench/README.md).
    concurrency: int = Field(default=4, ge=1, description="Requests in flight at once (CRM_CONCURRENCY)")
    page_size: int = Field(default=MAX_PAGE_SIZE, description="pageSize, at most 100")
    overlap_minutes: float = overlap_field(
        5, "seed 002 documents no late arrival; covers clock skew and a call logged while a pull ran"
    )
    recording_lookback_hours: float = Field(
        default=48,
        ge=0,
        allow_inf_nan=False,
        description="CRM_RECORDING_LOOKBACK_HOURS: how long a call whose /v1/callLogs/view answer held no "
        "recording is asked again (hours since the call); older ones are not asked again",
    )

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> CrmClient:
        self.require("base_url", "email", "secret_key")
        auth = CrmSignAuth(self.email, self.secret_key)
        return CrmClient(self.http(auth, transport, auth_hint=f"Check {CREDENTIAL_VARS}."), self.page_size)
