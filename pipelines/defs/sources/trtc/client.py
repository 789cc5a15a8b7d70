"""Tencent TRTC TUICallKit call records (seed 004): UserSig auth, the error envelope, paging.

``POST /v1/records/get_records_by_filter?sdkappid=&identifier=&usersig=&random=&contenttype=json``
with ``{startTimestamp, endTimestamp, numberPerPage, page}``. The query string carries the
UserSig, a credential: errors name the endpoint path only (``pipelines.lib.http`` does the same).

Paging (seed 004, loosely documented): ``data.page > 0`` means "more, ask page + 1", 0 the
last page; ``totalNum`` is the window's count. A window's walk stops on whichever comes first:
70011 (no records), an empty or short page, ``page`` 0, ``totalNum`` reached, or a page that
repeats the previous one (a server ignoring ``page``). The part of a partition near the
retention edge is fetched first, in time slices of one page each (``plan``); then page 1 of the
rest (one range: a week fits the 7-day request limit) tells ``totalNum``, and pages 2..N go out
concurrently through one rate limiter, so the client runs close to the vendor's 200 requests/s
even under latency, in as few requests as the page size allows.

The limiter (``pipelines.lib.http.RateLimiter``) paces sends at ``rate_per_s`` (190), never more
in any rolling second, and never lets more than ``limit_per_s`` (200) requests be in flight or
answered within the last second: the vendor counts each request somewhere between those two
instants, so it never counts more than 200 in a second, even when a stall on either side (a
loaded machine) bunches the arrivals it sees.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Generator

import httpx
from pydantic import Field

from pipelines.defs.sources.trtc.paging import PageResult, Pull, WindowState
from pipelines.defs.sources.trtc.plan import DEFAULT_SKEW_S, MAX_SKEW_S, SubWindow
from pipelines.defs.sources.trtc.usersig import fresh_random, gen_usersig
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

VENDOR = "Tencent TRTC"
ENDPOINT = "/v1/records/get_records_by_filter"
MAX_PAGE_SIZE = 100
VENDOR_LIMIT_PER_S = 200  # documented: "200 requests per second at most"
# The pace, under the limit: the window rule (at most 200 in flight or answered within the last
# second) caps the rate at about 200 / (1 s + round trip), 190/s at a 50 ms round trip, so a
# faster pace would only be held back by it.
DEFAULT_RATE_PER_S = 190.0
PACE_BURST = 4  # tokens: up to ~16 ms of late wake-ups are caught up, 4 requests at once at most
MAX_PAGES_PER_WINDOW = 100_000  # a walk longer than this is a paging bug, not data
EDGE_FILL = 0.75  # edge slices aim at this share of a page

OK = 0
NO_RECORDS = 70011
SIG_EXPIRED = 70001
# Codes from IM's public 70000-79999 table (the seed points there) and what to check.
_AUTH_HINTS: dict[int, tuple[str, str]] = {
    70001: ("UserSig expired", "Check this machine's clock: a UserSig carries its creation time."),
    70002: ("UserSig is empty", "Check TRTC_SECRET_KEY."),
    70003: ("UserSig is invalid", "Check TRTC_SECRET_KEY (the key, not a UserSig)."),
    70009: (
        "UserSig verification failed: wrong secret key",
        "Check TRTC_SECRET_KEY and TRTC_SDKAPPID: the key must belong to that SDKAppID.",
    ),
    70013: ("identifier differs from the UserSig's", "Check TRTC_ADMIN_IDENTIFIER."),
    70014: ("SDKAppID differs from the UserSig's", "Check TRTC_SDKAPPID."),
    70020: ("SDKAppID not found", "Check TRTC_SDKAPPID and TRTC_BASE_URL (the SDKAppID's region domain)."),
    70403: (
        "the identifier is not an App administrator",
        "Check TRTC_ADMIN_IDENTIFIER (an IM administrator account).",
    ),
}
_RETRYABLE = {70010: "request rate over the limit"}  # not in the seed: the simulator's reading
_OTHER = {
    50001: "the app needs the TUICallKit group-call package (群组通话版套餐包)",
    70402: "invalid parameter",
}


class TrtcAuth(httpx.Auth):
    """Adds sdkappid, identifier, usersig, a fresh ``random`` and contenttype to every send,
    retries included (httpx runs the flow per attempt). One UserSig serves many requests;
    ``renew`` replaces it once per generation, however many concurrent requests saw it expire."""

    def __init__(
        self,
        sdkappid: int,
        secret_key: str,
        identifier: str,
        expire_s: int = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sdkappid, self._key, self._identifier = sdkappid, secret_key, identifier
        self._expire_s, self._clock = expire_s, clock
        self.generation = 0
        self.renewals = 0
        self._make()

    def __repr__(self) -> str:
        return f"TrtcAuth(sdkappid={self._sdkappid}, identifier={self._identifier!r}, secret_key=***)"

    def _make(self) -> None:
        self._born = time.monotonic()  # age by the monotonic clock: wall-clock jumps do not matter
        self._sig = gen_usersig(
            self._sdkappid, self._key, self._identifier, self._expire_s, now=int(self._clock())
        )

    def renew(self, seen_generation: int) -> None:
        if seen_generation == self.generation:
            self._make()
            self.generation += 1
            self.renewals += 1

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # Renew ahead of expiry rather than spend a request learning it.
        if time.monotonic() > self._born + self._expire_s - 300:
            self.renew(self.generation)
        request.url = request.url.copy_merge_params(
            {
                "sdkappid": str(self._sdkappid),
                "identifier": self._identifier,
                "usersig": self._sig,
                "random": str(fresh_random()),
                "contenttype": "json",
            }
        )
        yield request


class UserSigExpired(VendorAuthError):
    """70001: renewed once and retried by the client before it gives up."""


def check_envelope(payload: object) -> None:
    """Raise the typed error of a non-success envelope; 0 and 70011 (no records) pass."""
    if not isinstance(payload, dict):
        raise VendorResponseError(
            VENDOR, ENDPOINT, "no envelope", f"expected a JSON object, got {type(payload).__name__}"
        )
    raw = payload.get("errorCode")
    try:
        code = int(raw)  # documented Integer; accept "0" too
    except (TypeError, ValueError):
        raise VendorResponseError(VENDOR, ENDPOINT, "no errorCode", f"errorCode is {raw!r}") from None
    if code in (OK, NO_RECORDS):
        return
    message = str(payload.get("errorMessage") or "")
    if code == SIG_EXPIRED:
        meaning, hint = _AUTH_HINTS[code]
        raise UserSigExpired(VENDOR, ENDPOINT, code, meaning, hint)
    if code in _AUTH_HINTS:
        meaning, hint = _AUTH_HINTS[code]
        raise VendorAuthError(VENDOR, ENDPOINT, code, f"{meaning} ({message})" if message else meaning, hint)
    if code in _RETRYABLE:
        raise VendorError(VENDOR, ENDPOINT, code, _RETRYABLE[code], transient=True)
    meaning = _OTHER.get(code, "unknown error code")
    raise VendorError(VENDOR, ENDPOINT, code, f"{meaning} ({message})" if message else meaning)


def parse_page(reply: Reply) -> PageResult:
    payload = reply.payload
    if int(payload["errorCode"]) == NO_RECORDS:
        return PageResult(reply.body, 0, 0, 0, None, True)
    data = payload.get("data")
    rows = data.get("callRecordList") if isinstance(data, dict) else None
    if rows is None:
        rows = []
    if not isinstance(data, dict) or not isinstance(rows, list):
        raise VendorResponseError(VENDOR, ENDPOINT, 0, "success without data.callRecordList (a list)")
    total, page = data.get("totalNum"), data.get("page")
    first = rows[0].get("callId") if rows and isinstance(rows[0], dict) else None
    return PageResult(
        reply.body,
        len(rows),
        total if isinstance(total, int) and not isinstance(total, bool) else None,
        page if isinstance(page, int) and not isinstance(page, bool) else None,
        first,
        False,
    )


class TrtcClient:
    def __init__(self, http: HttpClient, auth: TrtcAuth, page_size: int = MAX_PAGE_SIZE) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SettingError(f"TRTC page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.http, self.auth, self.page_size = http, auth, page_size

    async def post(self, body: dict) -> Reply:
        """One request; a 70001 renews the UserSig once and retries, then gives up."""
        for attempt in range(2):
            generation = self.auth.generation
            try:
                return await self.http.request_json("POST", ENDPOINT, json=body, check=check_envelope)
            except UserSigExpired as exc:
                if attempt:
                    raise UserSigExpired(
                        VENDOR, ENDPOINT, exc.code, "UserSig expired although just renewed", exc.hint
                    ) from None
                self.auth.renew(generation)
        raise AssertionError("unreachable")

    async def fetch(self, window: SubWindow, page: int) -> PageResult:
        reply = await self.post(window.body(page, self.page_size))
        self.http.stats.pages += 1
        return parse_page(reply)

    async def pages(self, pull: Pull) -> AsyncIterator[Page]:
        """Every page of the plan's ranges, as the loader takes them: the retention edge first,
        in one-page time slices, then the other ranges by offset, all their pages at once."""
        size = self.page_size
        states: list[WindowState] = []
        pull.windows = states
        width = self.http.concurrency

        async def fetch(item: tuple[WindowState, int]) -> tuple[WindowState, int, PageResult]:
            s, page = item
            return s, page, await self.fetch(s.window, page)

        # 0. The edge, before its calls expire. One request is one atomic answer, so a slice
        # that fits one page is exact however many calls expire meanwhile; a fuller one is not
        # landed but split in time (slices aimed at 3/4 of a page, so uneven density rarely
        # needs a second split). A single second fuller than a page expires all at once: it is
        # paged by offset with the rest.
        todo = [WindowState(pull.plan.edge, size)] if pull.plan.edge else []
        while todo:
            split: list[SubWindow] = []
            async for s, page, res in bounded([(s, 1) for s in todo], fetch, width):
                s.add(page, res)
                if s.settle() is None and s.window.seconds > 1:
                    pull.splits += 1
                    n = math.ceil(res.total / (size * EDGE_FILL)) if res.total else 2
                    split += s.window.slices(max(2, n))
                    continue
                states.append(s)
                if res.records:
                    yield Page(res.body, res.records, s.total)
            todo = [WindowState(w, size) for w in sorted(split, key=lambda w: w.first_s)]
        # 1. Page 1 of each other range (one, unless the partition is longer than 7 days): it
        # tells totalNum, and a range that fits one page is done.
        bulk = [WindowState(w, size) for w in pull.plan.bulk]
        states.extend(bulk)
        async for s, page, res in bounded([(s, 1) for s in bulk], fetch, width):
            s.add(page, res)
            if res.records:
                yield Page(res.body, res.records, s.total)
        # 2. The pages totalNum promises, every walk's at once: as many in flight as a day
        # split would have, without its extra partial pages.
        planned = [
            (s, page)
            for s in states
            if s.settle() is None and s.total is not None
            for page in range(s.last_page + 1, math.ceil(s.total / size) + 1)
        ]
        async for s, page, res in bounded(planned, fetch, width):
            s.add(page, res)
            if res.records:
                yield Page(res.body, res.records, s.total)
        # 3. A walk that did not end (totalNum missing, or short of the truth): page on.
        for s in states:
            while s.settle() is None:
                page = s.last_page + 1
                if page > MAX_PAGES_PER_WINDOW:
                    raise VendorResponseError(
                        VENDOR, ENDPOINT, "paging", f"no last page after {page - 1} pages"
                    )
                _, _, res = await fetch((s, page))
                repeat = res.first_id is not None and res.first_id == s.seen[s.last_page].first_id
                s.add(page, res)  # a repeat ends the walk in settle(); its records are not landed twice
                if res.records and not repeat:
                    yield Page(res.body, res.records, s.total)


class TrtcResource(VendorResource):
    """Connection settings of the TRTC call-record API (TRTC_* variables)."""

    SOURCE = "trtc"
    VENDOR = VENDOR
    SECRETS = frozenset({"secret_key"})

    sdkappid: str = Field(description="TRTC_SDKAPPID: the application's SDKAppID (an integer)")
    secret_key: str = Field(description="TRTC_SECRET_KEY: the key that signs UserSigs (secret)")
    admin_identifier: str = Field(description="TRTC_ADMIN_IDENTIFIER: an IM App administrator account")
    rate_per_s: float = Field(
        default=DEFAULT_RATE_PER_S,
        description="TRTC_RATE_PER_S: the client's pace (vendor: 200/s, which limit_per_s enforces)",
    )
    limit_per_s: int = Field(
        default=VENDOR_LIMIT_PER_S,
        description="Requests the vendor may count in any second: never more are in flight or "
        "answered within the last second (0: no such guard)",
    )
    concurrency: int = Field(
        default=16, ge=1, description="Requests in flight at once (50 ms x 190/s needs ~10)"
    )
    page_size: int = Field(default=MAX_PAGE_SIZE, description="numberPerPage, at most 100")
    retention_skew_s: int = Field(
        default=DEFAULT_SKEW_S,
        description=f"Seconds at the vendor's 7-day retention edge that are not requested, for the "
        f"difference between our clock and the vendor's (0..{MAX_SKEW_S})",
    )
    usersig_expire_s: int = Field(default=86_400, description="Lifetime of each generated UserSig")
    overlap_minutes: float = overlap_field(
        60,
        "a record is filed under its call's start (startTimestamp) but its result and end are final only "
        "once the call ends: an hour covers a long call",
    )

    def _checked(self) -> int:
        if not self.base_url.startswith(("http://", "https://")):
            raise SettingError(
                "TRTC_BASE_URL must be an http(s) URL such as https://callkit.trtc.tencent-cloud.com"
            )
        if not self.sdkappid.strip().isdigit():
            raise SettingError("TRTC_SDKAPPID must be the application's numeric SDKAppID")
        self.require("secret_key", "admin_identifier")
        return int(self.sdkappid.strip())

    def client(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> TrtcClient:
        sdkappid = self._checked()
        auth = TrtcAuth(sdkappid, self.secret_key, self.admin_identifier, self.usersig_expire_s, clock)
        # A bucket of a few tokens credits the late wake-ups of a busy event loop; no second
        # holds more than rate_per_s sends whatever the bucket. The vendor counts per second
        # on its side: the window rule keeps its count at the limit even when stalls bunch
        # the arrivals it sees.
        http = self.http(auth, transport, burst=PACE_BURST, window_limit=self.limit_per_s or None)
        return TrtcClient(http, auth, self.page_size)
