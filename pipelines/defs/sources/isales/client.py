"""Huawei CC-iSales open-API client (seeds 000 and 003): the two endpoints, paging, errors.

Both endpoints are POSTs with a JSON body, signed by ``signing.ISalesAuth`` (recomputed on
every attempt, so a retry never sends a stale timestamp). The body is sent with the documented
``Content-Type: application/json; charset=UTF-8``, set explicitly: it is a signed header.

Errors: HTTP 401/403 means the signature was refused -> ``VendorAuthError`` naming the
settings to check; an envelope whose ``resultCode``/``returnCode`` is not ``0200000`` ->
``VendorError`` carrying the code and its meaning from seed 003's table. Codes are strings
of 7 or 8 digits and are only ever compared as strings (``0200001`` is not ``02000001``).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import Field

from pipelines.defs.sources.isales.signing import CONTENT_TYPE, VARIANTS, ISalesAuth
from pipelines.lib.http import (
    HttpClient,
    Page,
    Reply,
    VendorAuthError,
    VendorError,
    VendorResponseError,
    bounded,
)
from pipelines.lib.settings import SettingError, int_list
from pipelines.lib.vendor_resource import VendorResource, overlap_field

VENDOR = "Huawei CC-iSales"
CREDENTIALS_HINT = (
    "Check ISALES_AK and ISALES_SK (and ISALES_SIGN_VARIANT, hex or base64: the signing scheme is "
    "inferred, see pipelines/defs/sources/isales/README.md)."
)
CALLLOGS = "/rest/isales/v1/openapi/campaigns/{vdn}/calllogs"
QUERY_SERVER = "/rest/isales/v1/openapi/campaigns/{vdn}/file/queryServer"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 100
MAX_SPAN = timedelta(days=7)  # documented: endTime - beginTime <= 7 days
OK = "0200000"

# Seed 003's error table (表6); it applies to both endpoints.
ERROR_CODES: dict[str, str] = {
    "0200001": "参数异常,异常详情在resultDesc中描述 (parameter exception, see resultDesc)",
    "0200033": "外呼数据不存在 (the outbound call data does not exist)",
    "0200034": "子状态与业务结果不匹配 (the sub-status does not match the business result)",
    "02000001": "参数值为空 (a parameter value is empty)",
    "02000002": "参数包含非法字符 (a parameter contains invalid characters)",
    "02000003": "参数长度不能大于规定长度 (a parameter is longer than allowed)",
    "02000004": "参数长度不能小于规定长度 (a parameter is shorter than allowed)",
    "02000005": "参数长度需要介于规定长度之间 (a parameter's length is out of range)",
    "02000006": "参数值类型不正确 (a parameter has the wrong type)",
    "02000007": "参数值大小不正确 (a parameter value is out of range)",
    "02000008": "参数转换异常,请检查请求参数 (parameter conversion failed)",
    "02000009": "参数组合不正确,请检查请求参数 (invalid parameter combination)",
    "02000010": "hour和minute必须同时存在 (hour and minute must both be present)",
    "02000011": "参数个数不能大于规定个数 (too many parameters)",
}


def check_envelope(endpoint: str) -> Callable[[object], None]:
    """Raise the typed error an answer stands for; return when it is a success."""

    def check(payload: object) -> None:
        if not isinstance(payload, dict):
            raise VendorResponseError(
                VENDOR, endpoint, "no envelope", f"expected a JSON object, got {type(payload).__name__}"
            )
        codes = [str(payload[k]) for k in ("returnCode", "resultCode") if payload.get(k) is not None]
        if not codes:
            raise VendorResponseError(
                VENDOR, endpoint, "no code", "the answer has neither resultCode nor returnCode"
            )
        bad = next((c for c in codes if c != OK), None)
        if bad is None:
            return
        desc = str(payload.get("resultDesc") or payload.get("returnDesc") or "")
        if bad in {"401", "403"}:  # a gateway may answer a refused signature in an envelope
            raise VendorAuthError(VENDOR, endpoint, bad, desc or "credentials rejected", CREDENTIALS_HINT)
        meaning = ERROR_CODES.get(bad, "not in seed 003's error table")
        raise VendorError(VENDOR, endpoint, bad, f"{meaning}; resultDesc: {desc}" if desc else meaning)

    return check


def request_ranges(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[str, str]]:
    """The window [start, end) as the API's inclusive ``(beginTime, endTime)`` local strings,
    ``[start, end - 1 s]``, split so that no range spans more than 7 days, neither elapsed
    nor on the wall clock (a week containing a DST fall-back is 7 days and 1 hour long).
    A Monday-to-Monday week in a zone without DST is one range."""
    lo, hi = start.astimezone(tz), end.astimezone(tz)
    out: list[tuple[str, str]] = []
    while lo < hi:
        stop = lo + MAX_SPAN  # aware arithmetic on a ZoneInfo datetime is wall-clock
        if stop.timestamp() - 1 - lo.timestamp() > MAX_SPAN.total_seconds():
            stop = lo + (MAX_SPAN - timedelta(days=1))
        stop = min(stop, hi)
        last = datetime.fromtimestamp(stop.timestamp() - 1, tz)
        out.append((lo.strftime(TIME_FORMAT), last.strftime(TIME_FORMAT)))
        lo = stop
    return out


@dataclass
class VdnPull:
    """What one VDN's pull saw, for the checks and the per-VDN metadata."""

    vdn_id: int
    api_count: int | None = None  # the sum of the ranges' ``count``; None when one had none
    pages: int = 0
    records: int = 0
    ranges: int = 0


def _count(payload: dict) -> int | None:
    value = payload.get("count")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _records(reply: Reply, field: str, endpoint: str) -> tuple[list, bytes]:
    """The record array of an answer and the body to land.

    ``result`` is documented as one object but answers as an array: an object is landed as a
    one-record array (the record itself stays verbatim). Anything else is a drifted answer.
    """
    value = reply.payload.get(field)
    if value is None:
        return [], reply.body
    if isinstance(value, list):
        return value, reply.body
    if isinstance(value, dict):
        return [value], json.dumps({**reply.payload, field: [value]}, ensure_ascii=False).encode()
    raise VendorResponseError(
        VENDOR, endpoint, "bad answer", f"'{field}' is a {type(value).__name__}, expected an array"
    )


class ISalesClient:
    def __init__(self, http: HttpClient, tz: ZoneInfo, limit: int = MAX_LIMIT) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"iSales limit must be 1..{MAX_LIMIT}, got {limit}")
        self.http = http
        self.tz = tz
        self.limit = limit

    async def _post(self, path: str, body: dict[str, Any]) -> Reply:
        return await self.http.request_json(
            "POST",
            path,
            content=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            headers={"Content-Type": CONTENT_TYPE},
            check=check_envelope(path),
        )

    async def call_log_pages(
        self, vdn: int, start: datetime, end: datetime, pull: VdnPull
    ) -> AsyncIterator[Page]:
        """Every page of one VDN's call logs for the window [start, end), range by range."""
        counts: list[int | None] = []
        for begin, finish in request_ranges(start, end, self.tz):
            pull.ranges += 1
            async for page in self._range_pages(vdn, begin, finish, counts):
                pull.pages += 1
                pull.records += page.records
                yield page
        pull.api_count = None if not counts or None in counts else sum(c for c in counts if c is not None)

    async def _range_pages(
        self, vdn: int, begin: str, finish: str, counts: list[int | None]
    ) -> AsyncIterator[Page]:
        """``offset`` paging over one range. The first page gives ``count``; the remaining
        offsets are then fetched concurrently, in order. The walk ends on a short page, or
        once ``count`` records are in; only when a full last page leaves it short of
        ``count`` (the open week grew while it was paged) does it ask once more. Records
        that arrive after ``count`` was read are the next refresh's."""
        path = CALLLOGS.format(vdn=vdn)
        limit = self.limit

        async def fetch(offset: int) -> Page:
            reply = await self._post(
                path, {"offset": offset, "limit": limit, "beginTime": begin, "endTime": finish}
            )
            rows, body = _records(reply, "result", path)
            self.http.stats.pages += 1
            return Page(body, len(rows), _count(reply.payload))

        first = await fetch(0)
        counts.append(first.total)
        yield first
        if first.records < limit:
            return
        last = first
        # Up to the offset that count says holds the last record.
        stop = max(1, math.ceil((first.total or 0) / limit)) * limit
        received = first.records
        async with aclosing(
            bounded(range(limit, stop, limit), fetch, self.http.concurrency, ordered=True)
        ) as pages:
            async for page in pages:
                last = page
                received += page.records
                yield page
                if page.records < limit:
                    return
        if first.total is not None and received >= first.total:
            return
        offset = stop
        while last.records >= limit:
            last = await fetch(offset)
            offset += limit
            yield last

    async def file_server_pages(self, vdn: int) -> AsyncIterator[Page]:
        """One VDN's file servers. ``count`` is documented but may be absent: page until a
        short page (or ``count`` reached, when present), and stop if a page brings no new
        server, in case a server ignores ``offset``."""
        path = QUERY_SERVER.format(vdn=vdn)
        seen: set[str] = set()
        offset = 0
        while True:
            reply = await self._post(path, {"offset": offset, "limit": self.limit})
            rows, body = _records(reply, "server", path)
            self.http.stats.pages += 1
            ids = {json.dumps(r, sort_keys=True) for r in rows}
            if rows and not ids - seen:
                return
            seen |= ids
            total = _count(reply.payload)
            yield Page(body, len(rows), total)
            offset += self.limit
            if len(rows) < self.limit or (total is not None and offset >= total):
                return


def parse_vdn_ids(value: str) -> list[int]:
    """ISALES_VDN_IDS: a comma list of VDN ids, each 1..9999 (duplicates dropped)."""
    ids = list(dict.fromkeys(int_list("ISALES_VDN_IDS", value, lo=1, hi=9999)))
    if not ids:
        raise SettingError("ISALES_VDN_IDS is empty: list the VDN ids to pull, e.g. 1,2")
    return ids


class ISalesResource(VendorResource):
    """Connection settings of the Huawei CC-iSales open API (ISALES_* variables)."""

    SOURCE = "isales"
    VENDOR = VENDOR
    SECRETS = frozenset({"sk"})

    ak: str = Field(description="ISALES_AK: the access key that signs requests")
    sk: str = Field(description="ISALES_SK: the secret key (secret)")
    vdn_ids: str = Field(description="ISALES_VDN_IDS: comma list of VDN ids (1..9999) to pull")
    timezone: str = Field(
        default="Asia/Shanghai", description="ISALES_TIMEZONE: the zone of the API's naive times"
    )
    sign_variant: str = Field(default="hex", description="ISALES_SIGN_VARIANT: hex (default) or base64")
    limit: int = Field(default=MAX_LIMIT, description="Page size (limit), at most 100")
    overlap_minutes: float = overlap_field(
        5, "seed 003 documents no late arrival; covers clock skew and a log written while a pull ran"
    )

    def vdn_list(self) -> list[int]:
        return parse_vdn_ids(self.vdn_ids)

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingError(f"ISALES_TIMEZONE={self.timezone!r} is not an IANA time zone") from None

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> ISalesClient:
        if self.sign_variant not in VARIANTS:
            raise SettingError(f"ISALES_SIGN_VARIANT={self.sign_variant!r}: expected 'hex' or 'base64'")
        if not self.ak or "/" in self.ak:
            raise SettingError("ISALES_AK is empty or contains '/'")
        self.require("base_url", "sk")
        auth = ISalesAuth(self.ak, self.sk, variant=self.sign_variant)  # type: ignore[arg-type]
        return ISalesClient(self.http(auth, transport, auth_hint=CREDENTIALS_HINT), self.zone(), self.limit)
