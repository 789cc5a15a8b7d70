"""Tencent TRTC TUICallKit call records (seed 004): a faithful simulator.

Endpoint (documented path; ``simulator.app`` mounts it under ``/trtc``):

``POST /v1/records/get_records_by_filter?sdkappid=&identifier=&usersig=&random=&contenttype=json``
with a JSON body ``{startTimestamp, endTimestamp?, callResult?, callType?, numberPerPage?, page?}``.

Every answer is HTTP 200 (the generic faults aside) with ``errorCode``/``errorMessage``/``requestId``.
The seed lists only 0, 50001 and 70011 and points at IM's public 70000-79999 table; the codes
below follow that table where it has a matching entry and are our reading otherwise:

    0      Success
    70001  UserSig 已过期 (TLS.time + TLS.expire before the clock's now)
    70002  UserSig 长度为0 (usersig missing)
    70003  UserSig 非法 (not Base64 / zlib / JSON, or fields missing)
    70009  UserSig 验证失败 (HMAC does not match: wrong secret key)
    70010  请求频率超限 (more than ``max_rps`` requests in one second) -- NOT from any document
    70013  identifier in the request differs from the UserSig's TLS.identifier
    70014  sdkappid in the request differs from the UserSig's TLS.sdkappid
    70020  SDKAppID 未找到 (the request's sdkappid is not this app's)
    70402  参数非法 (random/contenttype, body not JSON, startTimestamp missing, end < start,
           end - start > 7 days, numberPerPage > ``max_page_size``, page < 0, unknown callType)
    70403  需要 App 管理员权限 (identifier is not ``admin_identifier``)
    50001  群组通话版套餐包 missing (callType "group" with ``group_package=False``; also the
           "envelope" fault)
    70011  未找到任何记录 (the window, after retention and filters, holds no call)

Reading of the documents:
- Both ends of the window are inclusive on ``startCallTs`` (the design asks ``[start, end - 1 s]``).
  Only calls with ``now - retention_s <= startCallTs <= now`` exist; older ones are gone.
- ``0`` means "not given" for endTimestamp, numberPerPage and page (the server's zero values).
- Paging: ``data.page`` is ``page + 1`` (the page to ask next) while records remain after this
  page, and 0 on the last page; ``page_semantics="current"`` echoes the requested page instead
  (the other reading of "page > 0: ask for page + 1"). A page past the end answers errorCode 0,
  the true ``totalNum``, ``page`` 0 and an empty list. Records come oldest first.
- Rate limiting uses real monotonic time (the simulator clock may be frozen); every rejection
  also counts under ``state.requests["trtc rate_limited"]`` (see ``rate_limited_count``).

Data: ``volume`` calls per UTC day; call ``i`` of day ``d`` starts at ``d * 86400 +
floor(i * 86400 / volume)``. The global index ``g = d * volume + i`` orders calls by time. The
(callType, callResult) pair of call ``g`` is ``PATTERN[g % 1009]`` (a seeded shuffle with fixed
shares), so filtered totals and pages are arithmetic; every other field comes from a keyed
hash of ``(seed, g)``. Quirks of the sample kept: ``offline`` (outside the documented enum)
with ``acceptTs == startCallTs``, ``totalUserNumber`` 0, the caller among ``callees`` and an
``endTs`` hours or days later; ``acceptTs`` 0 or absent for ``not_answer``; group calls only
``normal_end``. The "drift" fault sends ``startCallTs`` as a string and ``callees`` as one
comma-joined string. The "empty" fault answers 70011 for any valid query (a vendor that lost
the window); "poison" puts ``Fault.variant`` into the middle record of the page (a string poison
into ``roomId``, the number into ``totalUserNumber``). Deleted calls (``SimState.deleted``,
``"trtc:<callId>"``) are no longer returned: ``totalNum`` drops and later pages start one
record earlier, as the vendor's offset paging would.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.common import POISON_VARIANTS, Fault, SimState, rng, serve

VENDOR = "trtc"
ENDPOINT = "/v1/records/get_records_by_filter"
DAY_S = 86_400
WEEK_S = 7 * DAY_S
RATE_LIMITED_KEY = f"{VENDOR} rate_limited"

OK = 0
E_GROUP_PACKAGE = 50001
E_SIG_EXPIRED = 70001
E_SIG_EMPTY = 70002
E_SIG_INVALID = 70003
E_SIG_VERIFY = 70009
E_RATE_LIMIT = 70010
E_IDENTIFIER_MISMATCH = 70013
E_SDKAPPID_MISMATCH = 70014
E_SDKAPPID_UNKNOWN = 70020
E_NO_RECORDS = 70011
E_PARAM = 70402
E_NOT_ADMIN = 70403

MESSAGES = {
    E_GROUP_PACKAGE: "当前应用需要购买 TUICallKit 群组通话版套餐包方可使用",
    E_SIG_EXPIRED: "UserSig 已过期,请重新生成 UserSig",
    E_SIG_EMPTY: "UserSig 长度为0",
    E_SIG_INVALID: "UserSig 非法,请使用官网提供的 API 重新生成 UserSig",
    E_SIG_VERIFY: "UserSig 验证失败,请确认生成 UserSig 时使用的密钥与 SDKAppID 对应",
    E_RATE_LIMIT: "请求频率超限",
    E_IDENTIFIER_MISMATCH: "请求中的 identifier 与生成 UserSig 时使用的 UserID 不匹配",
    E_SDKAPPID_MISMATCH: "请求中的 SDKAppID 与生成 UserSig 时使用的 SDKAppID 不匹配",
    E_SDKAPPID_UNKNOWN: "SDKAppID 未找到",
    E_NO_RECORDS: "未找到任何记录",
    E_PARAM: "参数非法",
    E_NOT_ADMIN: "请求失败,需要 App 管理员权限",
}

PERIOD = 1009  # prime, so the result pattern never lines up with a day's volume
# (callType, callResult) shares per PERIOD calls; group calls only end normally (seed 004)
SHARES: tuple[tuple[str, str, int], ...] = (
    ("group", "normal_end", 150),
    ("single", "cancel", 100),
    ("single", "reject", 70),
    ("single", "not_answer", 100),
    ("single", "call_busy", 40),
    ("single", "interrupt", 35),
    ("single", "offline", 30),
    # normal_end single takes the rest
)
CALL_TYPES = ("single", "group")

SURNAMES = ("zhang", "wang", "li", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun")
GIVEN = ("wei", "fang", "na", "yang", "jing", "lei", "min", "qiang", "ting", "jun", "xiu", "hao")
MOBILE_PREFIXES = ("133", "135", "138", "139", "150", "158", "177", "186", "189", "199")
N_USERS = 2000


@dataclass
class Settings:
    seed: int = 7
    volume: int = 500  # calls per UTC day
    sdkappid: int = 1400000001
    secret_key: str = "sim-trtc-secret-key"
    admin_identifier: str = "administrator"
    timezone: str = "Asia/Shanghai"  # TRTC speaks epoch seconds; the zone only shapes partitions
    max_rps: int = 200
    max_page_size: int = 100
    default_page_size: int = 100
    max_window_s: int = WEEK_S
    retention_s: int = WEEK_S
    group_package: bool = True  # False: a callType "group" query answers 50001
    page_semantics: str = "next"  # "next": data.page = page + 1 while more; "current": echo page


def env(settings: Settings, base_url: str) -> dict[str, str]:
    return {
        "TRTC_BASE_URL": base_url,
        "TRTC_SDKAPPID": str(settings.sdkappid),
        "TRTC_SECRET_KEY": settings.secret_key,
        "TRTC_ADMIN_IDENTIFIER": settings.admin_identifier,
        "TRTC_TIMEZONE": settings.timezone,
    }


def rate_limited_count(state: SimState) -> int:
    """Requests refused by the 200/s limit so far (benchmarks assert zero)."""
    with state.lock:
        return state.requests[RATE_LIMITED_KEY]


class TrtcError(Exception):
    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.message = MESSAGES[code] + (f": {detail}" if detail else "")
        super().__init__(self.message)


# --------------------------------------------------------------------------------------------
# UserSig (TLSSigAPIv2), verified independently of the client's generator


def _b64url_decode(sig: str) -> bytes:
    return base64.b64decode(sig.translate(str.maketrans("*-_", "+/=")), validate=True)


def verify_usersig(s: Settings, sig: str, identifier: str, sdkappid: int, now: float) -> None:
    """Raise TrtcError unless ``sig`` is a live UserSig of ``identifier`` for this app."""
    if not sig:
        raise TrtcError(E_SIG_EMPTY)
    try:
        doc = json.loads(zlib.decompress(_b64url_decode(sig)))
        sig_identifier = doc["TLS.identifier"]
        sig_appid = int(doc["TLS.sdkappid"])
        t = int(doc["TLS.time"])
        expire = int(doc["TLS.expire"])
        mac = doc["TLS.sig"]
    except (binascii.Error, ValueError, TypeError, KeyError, zlib.error):
        raise TrtcError(E_SIG_INVALID) from None
    if not isinstance(mac, str) or not isinstance(sig_identifier, str):
        raise TrtcError(E_SIG_INVALID)
    if sig_appid != sdkappid:
        raise TrtcError(E_SDKAPPID_MISMATCH)
    if sig_identifier != identifier:
        raise TrtcError(E_IDENTIFIER_MISMATCH)
    content = (
        f"TLS.identifier:{sig_identifier}\nTLS.sdkappid:{sig_appid}\nTLS.time:{t}\nTLS.expire:{expire}\n"
    )
    if "TLS.userbuf" in doc:  # gen_sig_with_userbuf signs the buffer too
        content += f"TLS.userbuf:{doc['TLS.userbuf']}\n"
    expected = base64.b64encode(hmac.new(s.secret_key.encode(), content.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac.encode()):
        raise TrtcError(E_SIG_VERIFY)
    if t + expire < now:
        raise TrtcError(E_SIG_EXPIRED)


# --------------------------------------------------------------------------------------------
# rate limit


class RateLimiter:
    """At most ``max_rps`` accepted requests in any sliding second of real monotonic time
    (the simulator clock may be frozen by tests, so it cannot drive the limiter)."""

    def __init__(self, max_rps: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_rps = max_rps
        self.monotonic = monotonic
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        now = self.monotonic()
        with self._lock:
            stamps = self._stamps
            while stamps and stamps[0] <= now - 1.0:
                stamps.popleft()
            if len(stamps) >= self.max_rps:
                return False
            stamps.append(now)
            return True


# --------------------------------------------------------------------------------------------
# deterministic data


@lru_cache(maxsize=64)
def _pattern(seed: int) -> tuple[tuple[str, str], ...]:
    cells: list[tuple[str, str]] = []
    for call_type, result, n in SHARES:
        cells += [(call_type, result)] * n
    cells += [("single", "normal_end")] * (PERIOD - len(cells))
    rng(seed, "trtc-pattern").shuffle(cells)
    return tuple(cells)


@lru_cache(maxsize=256)
def _matches(seed: int, call_type: str | None, result: str | None) -> tuple[int, ...]:
    """Residues r (mod PERIOD) whose call passes the filters, ascending."""
    return tuple(
        r
        for r, (t, res) in enumerate(_pattern(seed))
        if (call_type is None or t == call_type) and (result is None or res == result)
    )


@lru_cache(maxsize=64)
def _users(seed: int) -> tuple[str, ...]:
    """The app's user ids: numeric ids (some with a leading zero), mobile numbers, pinyin names."""
    r = rng(seed, "trtc-users")
    out: dict[str, None] = {}
    while len(out) < N_USERS:
        kind = r.random()
        if kind < 0.3:
            uid = str(r.randint(100, 99_999_999))
        elif kind < 0.4:
            uid = f"0{r.randint(0, 9_999_999):07d}"
        elif kind < 0.7:
            uid = r.choice(MOBILE_PREFIXES) + f"{r.randint(0, 99_999_999):08d}"
        else:
            uid = f"{r.choice(SURNAMES)}{r.choice(GIVEN)}{r.choice(('', '_', '.'))}{r.randint(1, 999)}"
        out[uid] = None
    return tuple(out)


@lru_cache(maxsize=64)
def _key(seed: int) -> bytes:
    return hashlib.blake2b(repr(("trtc", seed)).encode(), digest_size=32).digest()


def _digest(seed: int, g: int) -> bytes:
    return hashlib.blake2b(g.to_bytes(8, "big"), key=_key(seed), digest_size=32).digest()


def _call_id(b: bytes) -> str:
    h = b[:16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[b[8] & 3]}{h[17:20]}-{h[20:32]}"


def call_id(seed: int, g: int) -> str:
    """The callId of the call with global index ``g``."""
    return _call_id(_digest(seed, g))


@lru_cache(maxsize=256)
def _deleted_ranks(
    seed: int, volume: int, g_lo: int, g_hi: int, matches: tuple[int, ...], ids: frozenset[str]
) -> tuple[int, ...]:
    """Filtered ranks (see ``_filtered_before``) of the deleted calls with global index in
    [g_lo, g_hi), ascending. A callId is a hash, so the window's ids are computed once per
    window and deletion set (cached: every page of a walk shares the answer); with no deletion
    nothing is computed at all."""
    residues = frozenset(matches)
    return tuple(
        _filtered_before(g, matches)
        for g in range(g_lo, g_hi)
        if g % PERIOD in residues and call_id(seed, g) in ids
    )


def _physical(first: int, offset: int, deleted: tuple[int, ...]) -> int:
    """The filtered rank of the ``offset``-th call still held, counting from rank ``first``:
    every deleted rank at or before the candidate pushes it one further."""
    k = first + offset
    for d in deleted:  # ascending; deletions are few
        if d <= k:
            k += 1
        else:
            break
    return k


def start_ts(g: int, volume: int) -> int:
    """startCallTs of the call with global index ``g``."""
    d, i = divmod(g, volume)
    return d * DAY_S + i * DAY_S // volume


def count_until(t: int, volume: int) -> int:
    """Number of calls with startCallTs <= t (global indices 0 .. count - 1)."""
    if t < 0 or volume <= 0:
        return 0
    d, s = divmod(t, DAY_S)
    return d * volume + min(volume, ((s + 1) * volume + DAY_S - 1) // DAY_S)


def _filtered_before(g: int, matches: tuple[int, ...]) -> int:
    """How many calls with global index < g pass the filters."""
    q, r = divmod(g, PERIOD)
    return q * len(matches) + bisect.bisect_left(matches, r)


def _kth_match(k: int, matches: tuple[int, ...]) -> int:
    q, r = divmod(k, len(matches))
    return q * PERIOD + matches[r]


def make_record(s: Settings, g: int, users: tuple[str, ...] | None = None) -> dict:
    """The call with global index ``g``."""
    users = users or _users(s.seed)
    call_type, result = _pattern(s.seed)[g % PERIOD]
    b = _digest(s.seed, g)
    call_id = _call_id(b)
    h = b[:16].hex()
    # bytes 16.. drive the other fields (single bytes: cheaper than big-int arithmetic)
    start = start_ts(g, s.volume)
    n_users = len(users)
    caller_i = (b[16] << 8 | b[17]) % n_users
    media = "video" if b[18] < 154 else "audio"
    room = str(100 + int.from_bytes(b[20:24], "big") % 4_294_967_000) if b[19] % 7 else f"room_{h[:6]}"
    n_callees = 1 if call_type == "single" else 2 + b[24] % 5
    callees: list[str] = []
    j = caller_i
    step = 1 + b[25] % 97
    while len(callees) < n_callees:
        j = (j + step) % n_users
        if j != caller_i:
            callees.append(users[j])
    ring = 2 + b[26] % 28
    talk = 10 + (b[27] << 8 | b[28]) % 600 * (1 + b[29] % 3)  # a long tail of long calls
    x = int.from_bytes(b[29:32], "big")
    rec: dict = {
        "callId": call_id,
        "sdkAppId": s.sdkappid,
        "mediaType": media,
        "roomId": room,
        "startCallTs": start,
        "acceptTs": start,
        "endTs": start,
        "caller": users[caller_i],
        "totalUserNumber": 1,
        "callType": call_type,
        "callResult": result,
        "callees": callees,
    }
    if result == "normal_end":
        rec["acceptTs"] = start + ring
        rec["endTs"] = start + ring + talk
        rec["totalUserNumber"] = 1 + n_callees
    elif result == "interrupt":
        rec["acceptTs"] = start + ring
        rec["endTs"] = start + ring + talk % 120
        rec["totalUserNumber"] = 2
    elif result == "not_answer":
        if x % 2:
            del rec["acceptTs"]
        else:
            rec["acceptTs"] = 0
        rec["endTs"] = start + 30 + x % 31
    elif result == "offline":
        # the sample's shape: callee list includes the caller, nobody counted, a late endTs
        callees.append(users[caller_i])
        rec["totalUserNumber"] = 0
        rec["endTs"] = start + 3600 + x % (5 * DAY_S)
    else:  # cancel, reject, call_busy: never accepted, acceptTs equals the start
        rec["endTs"] = start + (ring if result != "call_busy" else x % 3)
    return rec


def _drift(rec: dict) -> dict:
    rec["startCallTs"] = str(rec["startCallTs"])
    rec["callees"] = ",".join(rec["callees"])
    return rec


# --------------------------------------------------------------------------------------------
# request handling


def _request_id() -> str:
    return os.urandom(16).hex()


def _answer(payload: dict) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), media_type="application/json")


def _error(code: int, message: str | None = None) -> Response:
    return _answer({"errorCode": code, "errorMessage": message or MESSAGES[code], "requestId": _request_id()})


def _int_field(body: dict, name: str) -> int:
    """An integer body field; 0 when absent (the server cannot tell absent from 0)."""
    v = body.get(name, 0)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise TrtcError(E_PARAM, f"{name} 必须为整数")
    return v


def _check_query(s: Settings, request: Request, now: float) -> None:
    q = request.query_params
    try:
        sdkappid = int(q.get("sdkappid", ""))
    except ValueError:
        raise TrtcError(E_SDKAPPID_UNKNOWN) from None
    if sdkappid != s.sdkappid:
        raise TrtcError(E_SDKAPPID_UNKNOWN)
    identifier = q.get("identifier", "")
    verify_usersig(s, q.get("usersig", ""), identifier, sdkappid, now)
    if identifier != s.admin_identifier:
        raise TrtcError(E_NOT_ADMIN)
    random = q.get("random", "")
    if not random.isdigit() or int(random) > 0xFFFFFFFF:
        raise TrtcError(E_PARAM, "random 必须为 0 - 4294967295 的整数")
    if q.get("contenttype") != "json":
        raise TrtcError(E_PARAM, "contenttype 必须为 json")


# Poison (fault mode "poison"): one record of the page carries a value that is valid JSON but
# that PostgreSQL's jsonb refuses or cannot store. A marker is put into the record and swapped
# for the raw JSON text after encoding (json.dumps can write neither a lone surrogate escape
# nor a number out of float's range). Strings go into roomId (free text), the number into
# totalUserNumber.
_POISON_MARK = "\x01poison\x01"


def _poison(rec: dict, variant: str) -> None:
    if variant == "bignum":
        rec["totalUserNumber"] = _POISON_MARK
    else:
        rec["roomId"] = f"room{_POISON_MARK}{rec['roomId']}"


def _encode(payload: dict, variant: str | None) -> bytes:
    text = json.dumps(payload, ensure_ascii=False)
    if variant is not None:
        mark = json.dumps(_POISON_MARK)[1:-1]  # as json.dumps escapes it
        if variant == "bignum":
            mark = f'"{mark}"'
        text = text.replace(mark, POISON_VARIANTS[variant], 1)
    return text.encode()


def _page(
    s: Settings, body: dict, now: float, fault: Fault | None = None, deleted: frozenset[str] = frozenset()
) -> Response:
    start = _int_field(body, "startTimestamp")
    if start <= 0:
        raise TrtcError(E_PARAM, "startTimestamp 为必填")
    end = _int_field(body, "endTimestamp") or start + s.max_window_s
    if end < start:
        raise TrtcError(E_PARAM, "endTimestamp 小于 startTimestamp")
    if end - start > s.max_window_s:
        raise TrtcError(E_PARAM, "查询时间范围不能超过7天")
    per_page = _int_field(body, "numberPerPage") or s.default_page_size
    if per_page < 0 or per_page > s.max_page_size:
        raise TrtcError(E_PARAM, f"numberPerPage 取值范围 1 - {s.max_page_size}")
    page = _int_field(body, "page") or 1
    if page < 0:
        raise TrtcError(E_PARAM, "page 必须大于 0")
    call_type = body.get("callType") or None
    result = body.get("callResult") or None
    if call_type is not None and call_type not in CALL_TYPES:
        raise TrtcError(E_PARAM, "callType 取值 single 或 group")
    if result is not None and not isinstance(result, str):
        raise TrtcError(E_PARAM, "callResult 必须为字符串")
    if call_type == "group" and not s.group_package:
        raise TrtcError(E_GROUP_PACKAGE)

    mode = fault.mode if fault is not None else None
    if mode == "empty":  # the vendor lost or forgot the window's calls
        raise TrtcError(E_NO_RECORDS)
    now_i = int(now)
    lo = max(start, now_i - s.retention_s)
    hi = min(end, now_i)
    matches = _matches(s.seed, call_type, result)
    first = total = 0
    gone: tuple[int, ...] = ()
    if lo <= hi and matches and s.volume > 0:
        g_lo, g_hi = count_until(lo - 1, s.volume), count_until(hi, s.volume)
        first = _filtered_before(g_lo, matches)
        total = _filtered_before(g_hi, matches) - first
        if deleted and total > 0:
            gone = _deleted_ranks(s.seed, s.volume, g_lo, g_hi, matches, deleted)
            total -= len(gone)
    if total <= 0:
        raise TrtcError(E_NO_RECORDS)

    offset = (page - 1) * per_page
    n = max(0, min(per_page, total - offset))
    users = _users(s.seed)
    records = [
        make_record(s, _kth_match(_physical(first, offset + k, gone), matches), users) for k in range(n)
    ]
    if mode == "drift":
        records = [_drift(r) for r in records]
    variant = fault.variant if mode == "poison" and records else None
    if variant is not None:
        _poison(records[len(records) // 2], variant)
    more = offset + per_page < total
    next_page = (page + 1 if s.page_semantics == "next" else page) if more else 0
    payload = {
        "errorCode": OK,
        "errorMessage": "Success",
        "requestId": _request_id(),
        "data": {"totalNum": total, "page": next_page, "callRecordList": records},
    }
    return Response(_encode(payload, variant), media_type="application/json")


def build_app(settings: Settings, state: SimState) -> Starlette:
    limiter = RateLimiter(settings.max_rps)

    async def handler(request: Request, fault: Fault | None) -> Response:
        if not limiter.allow():
            with state.lock:
                state.requests[RATE_LIMITED_KEY] += 1
            return _error(E_RATE_LIMIT)
        now = state.clock.now()
        try:
            _check_query(settings, request, state.clock.auth_now())
            if fault is not None and fault.mode == "envelope":
                raise TrtcError(E_GROUP_PACKAGE)
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise TrtcError(E_PARAM, "请求包体不是合法的 JSON") from None
            if not isinstance(body, dict):
                raise TrtcError(E_PARAM, "请求包体必须为 JSON 对象")
            return _page(settings, body, now, fault, state.deleted_ids(VENDOR))
        except TrtcError as exc:
            return _error(exc.code, exc.message)

    async def get_records_by_filter(request: Request) -> Response:
        return await serve(state, VENDOR, ENDPOINT, request, handler)

    return Starlette(routes=[Route(ENDPOINT, get_records_by_filter, methods=["POST"])])
