"""Udesk CCPS CRM call logs (seed 002): a faithful simulator.

Endpoints (documented paths; ``simulator.app`` mounts them under ``/crm``):

- ``GET  /v1/callLogs``         ``startTime``/``endTime`` (``yyyy-MM-dd HH:mm:ss``, vendor zone,
  both inclusive), ``pageNum`` (1-based, default 1), ``pageSize`` (default 20, max 100).
  ``data`` = ``{list, pageNum, pageSize, total, paging: null}``; newest first, like the sample.
- ``GET  /v1/callLogs/view``    ``callId``: ``data`` is an array with the one call plus
  ``channelUserType`` and ``callLogRecordFoundResponseList[].recordUrl``; unknown ``callId``: ``[]``.
- ``GET  /v1/hangupReasons``    the 18 reasons of the seed (two names end with a tab), with
  ``exception``, ``paging`` and ``extra`` at the top level.
- ``POST /v1/callLogs/search``  body ``{"masterUserId": N, "pageNum"?, "pageSize"?}``: that
  agent's calls of the last ``search_days`` days, newest first, each with ``ivrDuration`` and the
  recording fields; ``data`` is an object (documented as an array).

Every endpoint is signed with query parameters ``email``, ``timestamp`` (Unix seconds) and
``sign = sha1_hex("<email>&<secretKey>&<timestamp>")``. Errors are HTTP 200 envelopes with a
numeric non-200 ``code``:

    1001 签名错误        wrong email or sign, or a signing parameter missing
    1002 签名已过期      timestamp more than ``sign_ttl_s`` away from the clock
    400  参数错误: ...   a bad parameter (the message names it, e.g. pageSize above the maximum)
    500  系统繁忙        the "envelope" fault

Data: ``volume`` calls per day of the vendor's zone. Call ``i`` of day ``d`` (days since
1970-01-01) has ``createTime = d 00:00:00 + floor(i * 86400 / volume)`` seconds, ``id = d *
10_000_000 + i``, and every other field derived from a keyed hash of ``(seed, d, i)``, so a
window's total and any page are arithmetic (O(page)). Calls after the clock's now do not exist
yet. Agents: call ``i`` of day ``d`` belongs to ``agent_ids[perm_d[i % n]]`` for a per-day
permutation, so an agent's calls are an arithmetic progression within a day.

Faults beyond the generic ones (``simulator.common``), armed per endpoint:

- "envelope": ``500 系统繁忙``; "drift": ``createTime`` as epoch milliseconds, ``spNumber`` a number.
- "empty": the vendor lost the data: ``/v1/callLogs`` and ``/v1/callLogs/search`` answer code
  200 with an empty ``list`` and ``total`` 0, ``/v1/callLogs/view`` and ``/v1/hangupReasons`` an
  empty ``data``.
- "poison": the middle record of the page (position ``len // 2``; the one call of ``/view``)
  carries ``Fault.variant``: "nul" and "surrogate" append ``\\u0000`` or ``\\ud800`` to its
  ``customerName`` (a name stands in where it was null), "bignum" makes its ``duration``
  ``1e999999``. The body stays valid JSON text.

Vendor-side deletions: a call whose ``id`` is in ``state.deleted_ids("crm")`` is no longer
returned by any endpoint; ``total`` drops by one and later calls move up a position, as a real
vendor's paging would. The page is still rendered directly: deleted positions of the window
are computed from the few deleted ids, so a page stays O(page size + deletions).

The ``callId`` (a UUID-shaped string) carries ``(d, i)`` masked by a seed-keyed hash, and its
first 10 bytes are a keyed hash of ``(d, i)``: ``/view`` decodes and verifies it in O(1), and a
made-up callId does not verify.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator import customers
from simulator.common import POISON_VARIANTS, Fault, SimState, json_response, rng, serve

VENDOR = "crm"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DAY_S = 86_400
ID_DAY_FACTOR = 10_000_000  # id = day_number * ID_DAY_FACTOR + index
_EPOCH_ORD = date(1970, 1, 1).toordinal()

# error codes (the vendor's table is not public; these are our reading, kept in one place)
CODE_OK = 200
CODE_BAD_PARAM = 400
CODE_BUSY = 500
CODE_SIGN = 1001
CODE_SIGN_EXPIRED = 1002

# the 18 reasons of seed 002, names exactly as the seed has them (ids 7 and 16 end with a tab)
HANGUP_REASONS: tuple[tuple[int, str], ...] = (
    (1, "关机"),
    (2, "空号"),
    (3, "停机"),
    (4, "占线"),
    (5, "用户拒接"),
    (6, "无法接通"),
    (7, "暂停服务\t"),
    (8, "用户正忙"),
    (9, "拨号方式不正确"),
    (10, "呼入限制"),
    (11, "呼叫转移失败"),
    (12, "网络忙"),
    (13, "无人接听"),
    (14, "欠费"),
    (15, "无法接听"),
    (16, "改号\t"),
    (17, "线路故障"),
    (18, "稍后再拨"),
)
UNKNOWN_HANGUP_CAUSE = 99  # appears rarely, outside the dimension
# digest byte 57 below this: a returning customer (simulator.customers), whom the TRTC app
# knows too; byte 58 picks which
RETURNING_SHARE = 8
_RETURNING = tuple(customers.CRM_NUMBERS[x % len(customers.CRM_NUMBERS)] for x in range(256))

SP_NUMBERS = ("02131204098", "057126200670", "01062668800", "075586013388", "02868731200")
MOBILE_PREFIXES = ("13", "15", "17", "18", "19")
AGENT_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周婷", "吴军")
CUSTOMER_NAMES = (
    "测试ai自定义字段",
    "北京华信科技有限公司",
    "上海明远贸易",
    "王先生",
    "李女士",
    "杭州云帆网络",
    "深圳启航教育",
    "陈总",
)
RECORD_URL_BASE = "https://records.example.com/ccps"


@dataclass
class Settings:
    seed: int = 7
    volume: int = 500  # calls per day
    email: str = "sim@example.com"
    secret_key: str = "sim-crm-secret"
    timezone: str = "Asia/Shanghai"
    default_page_size: int = 20
    max_page_size: int = 100
    sign_ttl_s: int = 300
    agent_ids: tuple[int, ...] = field(default_factory=lambda: tuple(range(1001, 1011)))
    total_skew: int = 0  # added to data.total (the "total disagrees with the list" quirk)
    search_days: int = 7  # how far back /v1/callLogs/search looks
    newest_first: bool = True  # order of /v1/callLogs, as in the sample


def env(settings: Settings, base_url: str) -> dict[str, str]:
    return {
        "CRM_BASE_URL": base_url,
        "CRM_EMAIL": settings.email,
        "CRM_SECRET_KEY": settings.secret_key,
        "CRM_TIMEZONE": settings.timezone,
        "CRM_AGENT_IDS": ",".join(str(a) for a in settings.agent_ids[:3]),
        # The simulator enforces no CRM rate limit, so a client need not wait for one.
        "CRM_RATE_PER_S": "200",
    }


def sign(email: str, secret_key: str, timestamp: int | str) -> str:
    """The vendor's signature: lowercase hex SHA-1 of ``email&secretKey&timestamp``."""
    return hashlib.sha1(f"{email}&{secret_key}&{timestamp}".encode()).hexdigest()


def envelope(data: object, code: int = CODE_OK, message: str = "OK") -> dict:
    return {"code": code, "message": message, "visible": False, "data": data}


class CrmError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(exc: CrmError) -> Response:
    return json_response(envelope(None, exc.code, exc.message))


# --------------------------------------------------------------------------------------------
# deterministic data


@lru_cache(maxsize=64)
def _cached_key(seed: int) -> bytes:
    return hashlib.blake2b(repr(("crm", seed)).encode(), digest_size=32).digest()


@lru_cache(maxsize=64)
def _keyed(seed: int) -> tuple[Any, Any]:
    """Keyed hashers, copied per use: setting the key up once rather than per record halves
    the cost of the two hashes each call takes (the simulator shares the benchmark's CPUs)."""
    key = _cached_key(seed)
    return hashlib.blake2b(key=key, digest_size=64), hashlib.blake2b(b"mask", key=key, digest_size=6)


def _digest(seed: int, day: int, i: int) -> bytes:
    h = _keyed(seed)[0].copy()
    h.update(struct.pack(">qq", day, i))
    return h.digest()


def _mask(seed: int, prefix: bytes) -> bytes:
    h = _keyed(seed)[1].copy()
    h.update(prefix)
    return h.digest()


def _xor6(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(6, "big")


def _uuid_str(b: bytes) -> str:
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def call_id(seed: int, day: int, i: int) -> str:
    """The callId of call ``i`` of day ``day`` (days since 1970-01-01 in the vendor's zone)."""
    return _call_id(seed, day, i, _digest(seed, day, i))


def _call_id(seed: int, day: int, i: int, digest: bytes) -> str:
    prefix = digest[:10]
    payload = day.to_bytes(3, "big") + i.to_bytes(3, "big")
    masked = _xor6(payload, _mask(seed, prefix))
    return _uuid_str(prefix + masked)


def decode_call_id(seed: int, value: str) -> tuple[int, int] | None:
    """``(day, index)`` of a callId this simulator issued for ``seed``, else None."""
    parts = value.strip().lower().split("-")
    if [len(p) for p in parts] != [8, 4, 4, 4, 12]:
        return None
    try:
        raw = bytes.fromhex("".join(parts))
    except ValueError:
        return None
    if len(raw) != 16:
        return None
    prefix, masked = raw[:10], raw[10:]
    payload = _xor6(masked, _mask(seed, prefix))
    day, i = int.from_bytes(payload[:3], "big"), int.from_bytes(payload[3:], "big")
    if _digest(seed, day, i)[:10] != prefix:
        return None
    return day, i


@lru_cache(maxsize=4096)
def _agent_perm(seed: int, n: int, day: int) -> tuple[int, ...]:
    """Per-day permutation: call i of the day belongs to agent position perm[i % n]."""
    perm = list(range(n))
    rng(seed, "crm-agents", day).shuffle(perm)
    return tuple(perm)


@lru_cache(maxsize=4096)
def _date_str(day: int) -> str:
    return date.fromordinal(_EPOCH_ORD + day).isoformat()


def _offset(i: int, volume: int) -> int:
    """Seconds after the day's start of call i."""
    return i * DAY_S // volume


def _first_index_at_or_after(sec: int, volume: int) -> int:
    """Smallest i with offset(i) >= sec (sec an integer)."""
    return -(-sec * volume // DAY_S)


def _last_index_at_or_before(sec: int, volume: int) -> int:
    """Largest i with offset(i) <= sec."""
    return -(-(sec + 1) * volume // DAY_S) - 1


def _u(b: bytes, lo: int, hi: int) -> int:
    return int.from_bytes(b[lo:hi], "big")


def make_call(s: Settings, day: int, i: int, *, detail: bool = False, ivr: bool = False) -> dict:
    """Call ``i`` of ``day``. ``detail`` adds the recording fields, ``ivr`` adds ``ivrDuration``."""
    b = _digest(s.seed, day, i)
    n_agents = len(s.agent_ids)
    agent_pos = _agent_perm(s.seed, n_agents, day)[i % n_agents]

    v = b[10] % 100
    call_type = 2 if v < 40 else 3 if v < 70 else 1  # 1 inbound, 2 outbound, 3 auto-dialled
    v = b[11] % 100
    if call_type == 1:  # noqa: SIM108
        result = 5 if v < 60 else 3 if v < 90 else 4  # agent answered / missed / rejected
    else:
        result = 1 if v < 55 else 2  # customer answered / did not answer
    connected = result in (1, 5)
    duration = 5 + _u(b, 12, 14) % 600 if connected else 0
    ringing = 1 + b[14] % 30 if connected else b[14] % 60

    province = None if b[20] % 100 < 30 else 1 + b[20] % 34
    city = None if province is None or b[21] % 100 < 10 else 1 + b[21] % 20
    agent_name = None if b[22] % 100 < 12 else _agent_names(tuple(s.agent_ids))[agent_pos]
    seat_type = None if b[23] % 100 < 10 else 1 + b[23] % 2
    if connected:  # noqa: SIM108
        drop_side = 1 + b[24] % 2
    else:
        drop_side = None if b[24] % 100 < 70 else 1 + b[24] % 2
    hangup = None
    if result == 2:
        hangup = UNKNOWN_HANGUP_CAUSE if b[25] % 100 < 3 else 1 + b[25] % 18
    customer_name = None if b[26] % 100 < 40 else CUSTOMER_NAMES[b[26] % len(CUSTOMER_NAMES)]
    business_id = None if b[27] % 100 < 35 else 10_000 + _u(b, 28, 31) % 90_000
    business_log_type = None if b[31] % 100 < 30 else 1 + b[31] % 4
    if b[32] % 100 < 75:  # noqa: SIM108
        conversation_id = _uuid_str(b[33:49])
    else:
        conversation_id = str(100_000 + _u(b, 49, 52) % 900_000)

    secs = _offset(i, s.volume)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    rec = {
        "id": day * ID_DAY_FACTOR + i,
        "createTime": f"{_date_str(day)} {hh:02d}:{mm:02d}:{ss:02d}",
        "customerNumber": _RETURNING[b[58]]
        if b[57] < RETURNING_SHARE
        else MOBILE_PREFIXES[b[16] % len(MOBILE_PREFIXES)] + f"{_u(b, 17, 21) % 10**9:09d}",
        "province": province,
        "city": city,
        "agentName": agent_name,
        "duration": duration,
        "result": result,
        "ringingDuration": ringing,
        "spNumber": SP_NUMBERS[b[15] % len(SP_NUMBERS)],
        "callType": call_type,
        "seatType": seat_type,
        "dropSide": drop_side,
        "hangupCauseId": hangup,
        "callId": _call_id(s.seed, day, i, b),
        "customerName": customer_name,
        "businessId": business_id,
        "businessLogType": business_log_type,
        "conversationId": conversation_id,
    }
    if detail:
        n_rec = 0
        if connected:
            v = b[52] % 100
            n_rec = 0 if v < 10 else 1 if v < 70 else 2 if v < 90 else 3
        if n_rec:
            rec["channelUserType"] = (1, 2, 4)[b[53] % 3]
            stem = f"{RECORD_URL_BASE}/{_date_str(day).replace('-', '')}/{rec['callId']}"
            rec["callLogRecordFoundResponseList"] = [
                {"recordUrl": f"{stem}-{k}.mp3"} for k in range(1, n_rec + 1)
            ]
        else:
            rec["channelUserType"] = None
            rec["callLogRecordFoundResponseList"] = None if b[54] % 3 == 0 else []
    if ivr:
        rec["ivrDuration"] = b[55] % 90 if call_type == 1 and b[56] % 100 >= 15 else None
    return rec


@lru_cache(maxsize=64)
def _agent_names(agent_ids: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(
        f"客服-{AGENT_NAMES[pos]}" if pos < len(AGENT_NAMES) else f"客服-{agent_id}"
        for pos, agent_id in enumerate(agent_ids)
    )


def agent_display_name(s: Settings, agent_id: int) -> str:
    """The agentName of an agent (null on some of its calls)."""
    return _agent_names(tuple(s.agent_ids))[s.agent_ids.index(agent_id)]


def agent_of(s: Settings, day: int, i: int) -> int:
    """The masterUserId call ``i`` of ``day`` belongs to."""
    n = len(s.agent_ids)
    return s.agent_ids[_agent_perm(s.seed, n, day)[i % n]]


# --------------------------------------------------------------------------------------------
# rendering: the JSON of make_call's records, written directly
#
# The simulator shares the benchmark's CPUs, so every microsecond it spends per record is
# taken from the pipeline being measured. Building a dict per record and running json.dumps
# over the page cost about two thirds of its CPU. Here a record is one f-string of about 16
# pieces, most of them JSON fragments (keys included) looked up in tables by digest byte,
# and a page is one join. make_call stays the reference: tests compare the bytes of the two
# over thousands of records, so every table below is checked against it.


def _json(value: object) -> str:
    """JSON text as starlette's JSONResponse writes it (non-ASCII kept, no spaces), in the
    form every fragment here takes: the str whose latin-1 encoding is the text's UTF-8.

    One non-ASCII character (an agent's or a customer's name) would otherwise make every
    record and the whole page a two-byte str: each ASCII piece widened when the record is
    built, the page encoded to UTF-8 character by character, about a quarter of the work.
    As latin-1 the pieces join by memcpy and the page encodes by memcpy, to the same bytes.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode().decode("latin-1")


def _by_byte(f: Any) -> tuple:
    return tuple(f(x) for x in range(256))


def _call_type(b10: int) -> int:
    """callType as make_call derives it from digest byte 10."""
    v = b10 % 100
    return 2 if v < 40 else 3 if v < 70 else 1


def _result(call_type: int, b11: int) -> int:
    """result as make_call derives it from the callType and digest byte 11."""
    v = b11 % 100
    if call_type == 1:
        return 5 if v < 60 else 3 if v < 90 else 4
    return 1 if v < 55 else 2


def _by_two_bytes(first: tuple, second: tuple, combine: Any) -> tuple[tuple, ...]:
    """``table[x][y] = combine(first[x], second[y])`` for two digest bytes ``x`` and ``y``,
    with one row per distinct ``first`` value and one object per distinct cell: a few
    kilobytes, which stay in the CPU's caches between requests where a flat 64k table would
    not."""
    rows: dict[Any, tuple] = {}
    cells: dict[tuple, Any] = {}
    for a in first:
        if a not in rows:
            rows[a] = tuple(
                cells[a, b] if (a, b) in cells else cells.setdefault((a, b), combine(a, b)) for b in second
            )
    return tuple(rows[a] for a in first)


_SP_JSON = tuple(_json(sp) for sp in SP_NUMBERS)


@cache
def _kind_tables(call_type: int, result: int) -> tuple:
    """What a (callType, result) pair fixes: whether the call connected and the fragments
    that depend on it, each indexed by its digest byte(s)."""
    connected = result in (1, 5)
    durations = _durations(connected)
    ringing = _by_byte(lambda x: 1 + x % 30 if connected else x % 60)  # byte 14
    sp = _by_byte(lambda x: _SP_JSON[x % len(SP_NUMBERS)])  # byte 15
    # by byte 15 then 14 (fewer distinct rows), written in key order
    sp_ringing = _by_two_bytes(
        sp,
        ringing,
        lambda n, r: f',"result":{result},"ringingDuration":{r},"spNumber":{n},"callType":{call_type}',
    )
    drop = _by_byte(lambda x: str(1 + x % 2) if connected or x % 100 >= 70 else "null")  # byte 24
    hangup = _by_byte(  # byte 25
        lambda x: "null" if result != 2 else str(UNKNOWN_HANGUP_CAUSE) if x % 100 < 3 else str(1 + x % 18)
    )
    # by bytes 23, 24, 25, up to the callId's key
    seat_drop_hangup = tuple(
        _seat_tables(seat, drop, hangup)
        for seat in _by_byte(lambda x: "null" if x % 100 < 10 else str(1 + x % 2))
    )
    return call_type, connected, durations, sp_ringing, seat_drop_hangup


@cache
def _durations(connected: bool) -> tuple[str, ...]:
    """By digest bytes 12-13 (big-endian) mod 600."""
    return tuple(f',"duration":{5 + u if connected else 0}' for u in range(600))


@cache
def _seat_tables(seat: str, drop: tuple, hangup: tuple) -> tuple[tuple, ...]:
    return _by_two_bytes(
        drop, hangup, lambda d, h: f',"seatType":{seat},"dropSide":{d},"hangupCauseId":{h},"callId":"'
    )


def _kinds() -> tuple[tuple, ...]:
    """The kind tables by digest bytes 10 and 11, one shared object per kind."""
    return _by_two_bytes(
        _by_byte(_call_type), tuple(range(256)), lambda ct, b11: _kind_tables(ct, _result(ct, b11))
    )


def _province(b20: int) -> str:
    return "null" if b20 % 100 < 30 else str(1 + b20 % 34)


def _city(b21: int) -> str:
    return "null" if b21 % 100 < 10 else str(1 + b21 % 20)


def _province_city(province: str, city: str) -> str:
    return f'","province":{province},"city":{"null" if province == "null" else city}'


# Each fragment carries the keys up to the next computed value, so that a record is few
# pieces: after the customer number come province and city, the agent, the duration, the
# kind's fields, seat to hangup cause with callId's key, then customerName with businessId's
# key, and businessLogType with conversationId's key.
_KINDS = _kinds()
_PROVINCE_CITY = _by_two_bytes(_by_byte(_province), _by_byte(_city), _province_city)  # bytes 20, 21
# "13" followed by nine digits is the number 13_000_000_000 + n: no zero-padded format
_CUSTOMER_BASE = _by_byte(lambda x: int(MOBILE_PREFIXES[x % len(MOBILE_PREFIXES)]) * 1_000_000_000)
_AGENT_NULL = _by_byte(lambda x: x % 100 < 12)
_CUSTOMER = _by_byte(
    lambda x: (
        '","customerName":'
        + ("null" if x % 100 < 40 else _json(CUSTOMER_NAMES[x % len(CUSTOMER_NAMES)]))
        + ',"businessId":'
    )
)
_BUSINESS_NULL = _by_byte(lambda x: x % 100 < 35)
_BUSINESS_LOG_TYPE = _by_byte(
    lambda x: f',"businessLogType":{"null" if x % 100 < 30 else 1 + x % 4},"conversationId":"'
)
_CONVERSATION_UUID = _by_byte(lambda x: x % 100 < 75)
_N_RECORDINGS = _by_byte(lambda x: 0 if x % 100 < 10 else 1 if x % 100 < 70 else 2 if x % 100 < 90 else 3)
_CHANNEL_USER_TYPE = _by_byte(lambda x: (1, 2, 4)[x % 3])
_NO_RECORDINGS = _by_byte(lambda x: "null" if x % 3 == 0 else "[]")
_IVR = _by_byte(lambda x: str(x % 90))
_IVR_NULL = _by_byte(lambda x: x % 100 < 15)
_HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(DAY_S // 60))
_SS = tuple(f"{x:02d}" for x in range(60))
_PACK_DAY = struct.Struct(">q").pack  # the first half of _digest's input
# the digest bytes every record reads, in one call (cheaper than slicing): 0-9 (the callId's
# prefix), 10, 11, 12-13, 14, 15, 16, 17-20, 21, 22, 23, 24, 25, 26, 27, 28, 29-30, 31, 32,
# 33-43 and 44-48 (a UUID conversationId)
_FIELDS = struct.Struct(">10sBBHBBBIBBBBBBBBHBB11s5s")


@lru_cache(maxsize=64)
def _agent_names_json(agent_ids: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(f',"agentName":{_json(name)}' for name in _agent_names(agent_ids))


@lru_cache(maxsize=256)
def _day_consts(
    seed: int, agent_ids: tuple[int, ...], day: int
) -> tuple[str, str, tuple[tuple[str, ...], ...]]:
    """What every call of ``day`` shares: its date, its recording URL stem (JSON, open
    quote) and its agentName fragment by digest byte 22, then by ``i % len(agent_ids)``."""
    names = _agent_names_json(agent_ids)
    by_residue = tuple(names[pos] for pos in _agent_perm(seed, len(agent_ids), day))
    nulls = (',"agentName":null',) * len(agent_ids)
    date_str = _date_str(day)
    stem = _json(f"{RECORD_URL_BASE}/{date_str.replace('-', '')}/")[:-1]
    return date_str, stem, tuple(nulls if null else by_residue for null in _AGENT_NULL)


Runs = Iterable[tuple[int, Iterable[int]]]  # (day, indices of calls of that day)


def render_calls(s: Settings, runs: Runs, *, detail: bool = False, ivr: bool = False) -> bytes:
    """The JSON array of ``make_call(s, day, i, detail=detail, ivr=ivr)`` for each ``i`` of each
    ``(day, indices)`` run, byte for byte as starlette's JSONResponse writes it."""
    return _render(s, runs, detail, ivr, "", "")


def _render(s: Settings, runs: Runs, detail: bool, ivr: bool, head: str, tail: str) -> bytes:
    """``head``, the JSON array of the runs' calls, ``tail``: a whole body, copied twice."""
    digest_h, mask_h = _keyed(s.seed)
    seed, agent_ids, volume = s.seed, tuple(s.agent_ids), s.volume
    n_agents = len(agent_ids)
    pack_day, unpack, from_bytes = _PACK_DAY, _FIELDS.unpack_from, int.from_bytes
    kinds, province_city, customer_base = _KINDS, _PROVINCE_CITY, _CUSTOMER_BASE
    customer, business_null, business_log_type = _CUSTOMER, _BUSINESS_NULL, _BUSINESS_LOG_TYPE
    conversation_uuid, hh_mm, ss = _CONVERSATION_UUID, _HH_MM, _SS
    out: list[str] = []
    append = out.append
    for day, indices in runs:
        date_str, stem, agents = _day_consts(seed, agent_ids, day)
        id_base = day * ID_DAY_FACTOR
        payload_base = day << 24
        day_h = digest_h.copy()  # the digest's input is (day, i): the day's half once per run
        day_h.update(pack_day(day))
        cur_secs = -1
        create_time = ""
        for i in indices:
            secs = i * DAY_S // volume
            if secs != cur_secs:  # at large volumes neighbouring calls share their second
                cur_secs = secs
                create_time = (
                    f',"createTime":"{date_str} {hh_mm[secs // 60]}{ss[secs % 60]}","customerNumber":"'
                )
            h = day_h.copy()
            h.update(i.to_bytes(8))
            b = h.digest()
            (prefix, b10, b11, u12, b14, b15, b16, u17, b21, b22, b23, b24, b25, b26, b27, b28, u29, b31, b32,
             conversation_head, conversation_end) = unpack(b)  # fmt: skip
            m = mask_h.copy()
            m.update(prefix)
            call_type, connected, durations, sp_ringing, seat_drop_hangup = kinds[b10][b11]
            # hex in 2-byte groups holds the UUID's dashes; only the first group is 4 bytes long
            call_id = prefix.hex("-", 2).replace("-", "", 1)
            masked = (from_bytes(m.digest()) ^ (payload_base | i)).to_bytes(6).hex()
            if conversation_uuid[b32]:  # 11 bytes grouped from the left end with "-ff"
                conversation_id = conversation_head.hex("-", -2).replace("-", "", 1)
                conversation_tail = conversation_end.hex()
            else:
                conversation_id, conversation_tail = (
                    100_000 + (b[49] << 16 | b[50] << 8 | b[51]) % 900_000,
                    "",
                )
            rec = (
                f"{id_base + i}{create_time}"
                f"{_RETURNING[b[58]] if b[57] < RETURNING_SHARE else customer_base[b16] + u17 % 1_000_000_000}"
                f"{province_city[u17 & 255][b21]}{agents[b22][i % n_agents]}{durations[u12 % 600]}"
                f"{sp_ringing[b15][b14]}{seat_drop_hangup[b23][b24][b25]}{call_id}-{masked}{customer[b26]}"
                f"{'null' if business_null[b27] else 10_000 + (b28 << 16 | u29) % 90_000}"
                f"{business_log_type[b31]}{conversation_id}{conversation_tail}"
            )
            if detail or ivr:  # these records close conversationId themselves
                extra = '"'
                if detail:
                    n_rec = _N_RECORDINGS[b[52]] if connected else 0
                    if n_rec:
                        url = f'{{"recordUrl":{stem}{call_id}-{masked}-'
                        urls = ",".join(f'{url}{r}.mp3"}}' for r in range(1, n_rec + 1))
                        extra += (
                            f',"channelUserType":{_CHANNEL_USER_TYPE[b[53]]},'
                            f'"callLogRecordFoundResponseList":[{urls}]'
                        )
                    else:
                        extra += f',"channelUserType":null,"callLogRecordFoundResponseList":{_NO_RECORDINGS[b[54]]}'
                if ivr:
                    extra += f',"ivrDuration":{"null" if call_type != 1 or _IVR_NULL[b[56]] else _IVR[b[55]]}'
                rec += extra
            append(rec)
    if not out:
        return f"{head}[]{tail}".encode("latin-1")
    # Every record opens with its id and most end inside conversationId: the separator holds
    # the rest, and head and tail ride on the first and last record.
    close = "" if detail or ivr else '"'
    out[0] = f'{head}[{{"id":{out[0]}'
    out[-1] = f"{out[-1]}{close}}}]{tail}"
    return f'{close}}},{{"id":'.join(out).encode("latin-1")


_OK_HEAD = f'{{"code":{CODE_OK},"message":"OK","visible":false,"data":'


def _json_body(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _ok_body(s: Settings, runs: Runs, detail: bool) -> Response:
    """envelope(the runs' calls)."""
    return _json_body(_render(s, runs, detail, False, _OK_HEAD, "}"))


def _page_body(
    s: Settings,
    runs: Runs,
    page_num: int,
    page_size: int,
    total: int,
    *,
    detail: bool = False,
    ivr: bool = False,
) -> Response:
    """envelope(_page_data(the runs' calls, ...))."""
    tail = f',"pageNum":{page_num},"pageSize":{page_size},"total":{total},"paging":null}}}}'
    return _json_body(_render(s, runs, detail, ivr, _OK_HEAD + '{"list":', tail))


# --------------------------------------------------------------------------------------------
# time and windows (all in the vendor's naive local time)


def _day_sec(dt: datetime) -> tuple[int, int]:
    return dt.toordinal() - _EPOCH_ORD, dt.hour * 3600 + dt.minute * 60 + dt.second


def now_local(s: Settings, now: float) -> datetime:
    return datetime.fromtimestamp(int(now // 1), ZoneInfo(s.timezone)).replace(tzinfo=None)


def _epoch_ms(s: Settings, create_time: str) -> int:
    dt = datetime.strptime(create_time, TIME_FORMAT).replace(tzinfo=ZoneInfo(s.timezone))
    return int(dt.timestamp()) * 1000


class Window:
    """Calls of ``[start, end]`` (naive local, inclusive), as positions 0..total-1 newest first."""

    def __init__(self, s: Settings, start: datetime, end: datetime) -> None:
        self.volume = v = s.volume
        floor = datetime(1970, 1, 1)
        start = max(start, floor)
        self.total = 0
        if end < start:
            return
        self.d_s, sec_s = _day_sec(start)
        self.d_e, sec_e = _day_sec(end)
        self.lo_s = max(0, _first_index_at_or_after(sec_s, v))
        self.hi_e = min(v - 1, _last_index_at_or_before(sec_e, v))
        if self.d_s == self.d_e:
            self.c_e = max(0, self.hi_e - self.lo_s + 1)
            self.c_s = 0
            self.n_mid = 0
        else:
            self.c_e = max(0, self.hi_e + 1)
            self.c_s = max(0, v - self.lo_s)
            self.n_mid = self.d_e - self.d_s - 1
        self.total = self.c_e + self.n_mid * v + self.c_s

    def at(self, pos: int) -> tuple[int, int]:
        """(day, index) of the call at position ``pos`` (0 = newest)."""
        if pos < self.c_e:
            return self.d_e, self.hi_e - pos
        pos -= self.c_e
        if pos < self.n_mid * self.volume:
            k, r = divmod(pos, self.volume)
            return self.d_e - 1 - k, self.volume - 1 - r
        pos -= self.n_mid * self.volume
        return self.d_s, self.volume - 1 - pos

    def position(self, day: int, i: int) -> int | None:
        """The position (0 = newest) of call ``i`` of ``day``, None when it is outside the window."""
        if self.total == 0 or not 0 <= i < self.volume or not self.d_s <= day <= self.d_e:
            return None
        lowest = self.lo_s if day == self.d_s else 0
        highest = self.hi_e if day == self.d_e else self.volume - 1
        if not lowest <= i <= highest:
            return None
        if day == self.d_e:
            return self.hi_e - i
        if day > self.d_s:
            return self.c_e + (self.d_e - 1 - day) * self.volume + self.volume - 1 - i
        return self.c_e + self.n_mid * self.volume + self.volume - 1 - i

    def runs(self, first: int, last: int, newest_first: bool = True) -> list[tuple[int, range]]:
        """The calls at positions ``[first, last)`` as ``(day, indices)`` runs; positions count
        from the newest call, or from the oldest when not ``newest_first``."""
        if not newest_first:
            return [(day, r[::-1]) for day, r in reversed(self.runs(self.total - last, self.total - first))]
        out = []
        pos = first
        while pos < last:
            day, i = self.at(pos)
            lowest = self.lo_s if day == self.d_s else 0
            n = min(last - pos, i - lowest + 1)
            out.append((day, range(i, i - n, -1)))
            pos += n
        return out


# --------------------------------------------------------------------------------------------
# what the vendor deleted, and the one record it garbles


def deleted_calls(s: Settings, state: SimState) -> list[tuple[int, int]]:
    """``(day, index)`` of every call the vendor has deleted; ids no call of ours carries are
    ignored."""
    out = []
    for raw in state.deleted_ids(VENDOR):
        if raw.isascii() and raw.isdigit():
            day, i = divmod(int(raw), ID_DAY_FACTOR)
            if i < s.volume:
                out.append((day, i))
    return out


def live_segments(first: int, last: int, gone: Sequence[int]) -> list[tuple[int, int]]:
    """The ranges ``[a, b)`` of positions that hold the live positions ``[first, last)`` once
    the positions ``gone`` (sorted, distinct) are left out: what a vendor's offset paging
    shows after deletions. ``last`` is at most the live total."""
    q, k = first, 0
    while k < len(gone) and gone[k] <= q:  # each deletion before q moves q one further
        q += 1
        k += 1
    out = []
    need = last - first
    while need > 0:
        n = min(need, (gone[k] if k < len(gone) else q + need) - q)
        out.append((q, q + n))
        need -= n
        q += n
        while k < len(gone) and gone[k] == q:
            q += 1
            k += 1
    return out


def _gone_positions(win: Window, calls: Iterable[tuple[int, int]], newest_first: bool) -> list[int]:
    """The window positions of ``calls``, counted as ``Window.runs`` counts them."""
    found = (win.position(day, i) for day, i in calls)
    return sorted(p if newest_first else win.total - 1 - p for p in found if p is not None)


def _window_runs(win: Window, first: int, last: int, gone: Sequence[int], newest_first: bool) -> list:
    """The calls at live positions ``[first, last)`` as ``(day, indices)`` runs."""
    if not gone:
        return win.runs(first, last, newest_first)
    return [run for a, b in live_segments(first, last, gone) for run in win.runs(a, b, newest_first)]


_POISON_MARK = "@@poison@@"  # stands in for the poison until the JSON text is written
_POISON_NAME = CUSTOMER_NAMES[3]  # where the poisoned record's customerName was null


def _poisoned(
    payload: object,
    records: list[dict],
    variant: str,
    text_field: str = "customerName",
    number_field: str = "duration",
) -> Response:
    """``payload`` as JSON text, the middle one of ``records`` (dicts inside it) carrying the
    poison ``variant`` in ``text_field`` or, for "bignum", as ``number_field``. The poison is
    put in as JSON text: a lone surrogate cannot be encoded to UTF-8 (the body keeps non-ASCII
    characters as they are) and ``json.dumps`` writes no number beyond a float."""
    mark = _POISON_MARK
    if records:
        record = records[len(records) // 2]
        if variant == "bignum":
            record[number_field] = mark
            mark = json.dumps(mark)  # the quoted string gives way to a bare number
        else:
            record[text_field] = f"{record[text_field] or _POISON_NAME}{mark}"
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return _json_body(text.replace(mark, POISON_VARIANTS[variant]).encode())


# --------------------------------------------------------------------------------------------
# request handling


def _query(request: Request) -> dict[str, str]:
    """``request.query_params`` as a dict: the same parse as starlette's (parse_qsl with blank
    values kept, the last of a repeated name wins) without its multidict, which cost the
    call-log handler as much CPU as the rest of its checks together."""
    q = {}
    for part in request.scope["query_string"].decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            if "+" in name or "%" in name:
                name = _unquote(name.replace("+", " "))
            if "+" in value or "%" in value:
                value = _unquote(value.replace("+", " "))
            q[name] = value
    return q


# the email and the window's times come back with every page
_unquote = lru_cache(maxsize=1024)(unquote)


def _check_sign(s: Settings, q: dict[str, str], now: float) -> None:
    email, ts, sig = q.get("email"), q.get("timestamp"), q.get("sign")
    if not email or not ts or not sig:
        raise CrmError(CODE_SIGN, "签名错误: 缺少email、timestamp或sign")
    try:
        ts_int = int(ts)
    except ValueError:
        raise CrmError(CODE_SIGN, "签名错误: timestamp格式错误") from None
    if email != s.email or sig != sign(s.email, s.secret_key, ts):
        raise CrmError(CODE_SIGN, "签名错误")
    if abs(now - ts_int) > s.sign_ttl_s:
        raise CrmError(CODE_SIGN_EXPIRED, "签名已过期")


def _int_param(name: str, raw: object, default: int) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise CrmError(CODE_BAD_PARAM, f"参数错误: {name}必须是整数")
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CrmError(CODE_BAD_PARAM, f"参数错误: {name}必须是整数") from None


def _paging(s: Settings, raw_num: object, raw_size: object) -> tuple[int, int]:
    page_num = _int_param("pageNum", raw_num, 1)
    page_size = _int_param("pageSize", raw_size, s.default_page_size)
    if page_num < 1:
        raise CrmError(CODE_BAD_PARAM, "参数错误: pageNum必须大于0")
    if page_size < 1:
        raise CrmError(CODE_BAD_PARAM, "参数错误: pageSize必须大于0")
    if page_size > s.max_page_size:
        raise CrmError(CODE_BAD_PARAM, f"参数错误: pageSize不能大于{s.max_page_size}")
    return page_num, page_size


def _time_param(q: dict[str, str], name: str) -> datetime:
    raw = q.get(name)
    if not raw:
        raise CrmError(CODE_BAD_PARAM, f"参数错误: {name}不能为空")
    try:
        return _parse_time(raw)
    except ValueError:
        raise CrmError(CODE_BAD_PARAM, f"参数错误: {name}格式应为yyyy-MM-dd HH:mm:ss") from None


@lru_cache(maxsize=256)
def _parse_time(raw: str) -> datetime:
    # a client paging through a window sends the same two times with every page, and
    # strptime costs about as much as rendering a record
    return datetime.strptime(raw, TIME_FORMAT)


def _drift(s: Settings, rec: dict) -> dict:
    """Schema drift: createTime as epoch milliseconds, spNumber as a number."""
    rec["createTime"] = _epoch_ms(s, rec["createTime"])
    rec["spNumber"] = int(rec["spNumber"])
    return rec


def _page_data(items: list[dict], page_num: int, page_size: int, total: int) -> dict:
    return {"list": items, "pageNum": page_num, "pageSize": page_size, "total": total, "paging": None}


def build_app(settings: Settings, state: SimState) -> Starlette:
    s = settings
    if not 1 <= s.volume < ID_DAY_FACTOR:
        raise ValueError(f"crm volume must be in 1..{ID_DAY_FACTOR - 1}, got {s.volume}")
    if not s.agent_ids:
        raise ValueError("crm agent_ids must not be empty")

    async def call_logs(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            if fault is not None and fault.mode == "envelope":
                return json_response(envelope(None, CODE_BUSY, "系统繁忙"))
            now = state.clock.now()
            try:
                q = _query(request)
                _check_sign(s, q, state.clock.auth_now())
                start = _time_param(q, "startTime")
                end = _time_param(q, "endTime")
                page_num, page_size = _paging(s, q.get("pageNum"), q.get("pageSize"))
            except CrmError as exc:
                return _error(exc)
            if fault is not None and fault.mode == "empty":
                return _page_body(s, (), page_num, page_size, 0)
            win = Window(s, start, min(end, now_local(s, now)))
            # the set is read without its lock: in the normal case it is empty, and a page
            # costs no more than before
            gone = _gone_positions(win, deleted_calls(s, state), s.newest_first) if state.deleted else []
            first = (page_num - 1) * page_size
            last = min(win.total - len(gone), first + page_size)
            runs = _window_runs(win, first, last, gone, s.newest_first)
            total = win.total - len(gone) + s.total_skew
            if fault is None:
                return _page_body(s, runs, page_num, page_size, total)
            items = [make_call(s, day, i) for day, indices in runs for i in indices]
            if fault.mode == "poison":
                return _poisoned(
                    envelope(_page_data(items, page_num, page_size, total)), items, fault.variant
                )
            items = [_drift(s, rec) for rec in items]
            return json_response(envelope(_page_data(items, page_num, page_size, total)))

        return await serve(state, VENDOR, "/v1/callLogs", request, handle)

    async def call_log_view(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            if fault is not None and fault.mode == "envelope":
                return json_response(envelope(None, CODE_BUSY, "系统繁忙"))
            now = state.clock.now()
            try:
                q = _query(request)
                _check_sign(s, q, state.clock.auth_now())
                raw = q.get("callId")
                if not raw:
                    raise CrmError(CODE_BAD_PARAM, "参数错误: callId不能为空")
            except CrmError as exc:
                return _error(exc)
            found = decode_call_id(s.seed, raw)
            calls: list[tuple[int, int]] = []
            if found is not None and (fault is None or fault.mode != "empty"):
                day, i = found
                if i < s.volume and not (state.deleted and found in deleted_calls(s, state)):
                    d_now, sec_now = _day_sec(now_local(s, now))
                    if (day, _offset(i, s.volume)) <= (d_now, sec_now):
                        calls.append(found)
            if fault is None or fault.mode == "empty":
                return _ok_body(s, [(day, (i,)) for day, i in calls], detail=True)
            items = [make_call(s, day, i, detail=True) for day, i in calls]
            if fault.mode == "poison":
                return _poisoned(envelope(items), items, fault.variant)
            return json_response(envelope([_drift(s, rec) for rec in items]))

        return await serve(state, VENDOR, "/v1/callLogs/view", request, handle)

    async def hangup_reasons(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            if fault is not None and fault.mode == "envelope":
                return json_response(envelope(None, CODE_BUSY, "系统繁忙"))
            try:
                _check_sign(s, _query(request), state.clock.auth_now())
            except CrmError as exc:
                return _error(exc)
            mode = fault.mode if fault is not None else None
            if mode == "drift":  # ids as strings
                data = [{"id": str(rid), "name": name} for rid, name in HANGUP_REASONS]
            elif mode == "empty":
                data = []
            else:
                data = [{"id": rid, "name": name} for rid, name in HANGUP_REASONS]
            n = len(data)
            payload = {
                "code": CODE_OK,
                "message": "OK",
                "visible": False,
                "exception": None,
                "paging": {"pageNum": 1, "pageSize": n, "total": n},
                "data": data,
                "extra": None,
            }
            if mode == "poison":  # a reason's name, or for "bignum" its id
                return _poisoned(payload, data, fault.variant, text_field="name", number_field="id")
            return json_response(payload)

        return await serve(state, VENDOR, "/v1/hangupReasons", request, handle)

    async def search(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            if fault is not None and fault.mode == "envelope":
                return json_response(envelope(None, CODE_BUSY, "系统繁忙"))
            now = state.clock.now()
            try:
                _check_sign(s, _query(request), state.clock.auth_now())
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError:
                    raise CrmError(CODE_BAD_PARAM, "参数错误: 请求体不是合法的JSON") from None
                if not isinstance(body, dict):
                    raise CrmError(CODE_BAD_PARAM, "参数错误: 请求体应为JSON对象")
                if body.get("masterUserId") in (None, ""):
                    raise CrmError(CODE_BAD_PARAM, "参数错误: masterUserId不能为空")
                agent = _int_param("masterUserId", body.get("masterUserId"), 0)
                page_num, page_size = _paging(s, body.get("pageNum"), body.get("pageSize"))
            except CrmError as exc:
                return _error(exc)
            if fault is not None and fault.mode == "empty":
                return _page_body(s, (), page_num, page_size, 0, detail=True, ivr=True)
            total, calls = 0, []
            if agent in s.agent_ids:
                end = now_local(s, now)
                total, calls = _agent_calls(
                    s,
                    agent,
                    end - timedelta(days=s.search_days),
                    end,
                    (page_num - 1) * page_size,
                    page_size,
                    deleted_calls(s, state) if state.deleted else (),
                )
            total += s.total_skew
            if fault is None:
                runs = [(day, (i,)) for day, i in calls]
                return _page_body(s, runs, page_num, page_size, total, detail=True, ivr=True)
            items = [make_call(s, day, i, detail=True, ivr=True) for day, i in calls]
            if fault.mode == "poison":
                return _poisoned(
                    envelope(_page_data(items, page_num, page_size, total)), items, fault.variant
                )
            items = [_drift(s, rec) for rec in items]
            return json_response(envelope(_page_data(items, page_num, page_size, total)))

        return await serve(state, VENDOR, "/v1/callLogs/search", request, handle)

    return Starlette(
        routes=[
            Route("/v1/callLogs", call_logs, methods=["GET"]),
            Route("/v1/callLogs/view", call_log_view, methods=["GET"]),
            Route("/v1/hangupReasons", hangup_reasons, methods=["GET"]),
            Route("/v1/callLogs/search", search, methods=["POST"]),
        ]
    )


def _agent_days(s: Settings, agent: int, start: datetime, end: datetime) -> list[tuple[int, int, int, int]]:
    """``(day, lowest, newest, count)`` of each day holding the agent's calls in ``[start, end]``,
    newest day first: that day's calls are ``newest, newest - n, ...`` down to ``lowest``."""
    n = len(s.agent_ids)
    pos_of_agent = s.agent_ids.index(agent)
    d_s, sec_s = _day_sec(max(start, datetime(1970, 1, 1)))
    d_e, sec_e = _day_sec(end)
    out = []
    for day in range(d_e, d_s - 1, -1):  # at most search_days + 1 days
        lo = _first_index_at_or_after(sec_s, s.volume) if day == d_s else 0
        hi = _last_index_at_or_before(sec_e, s.volume) if day == d_e else s.volume - 1
        lo, hi = max(lo, 0), min(hi, s.volume - 1)
        if hi < lo:
            continue
        r = _agent_perm(s.seed, n, day).index(pos_of_agent)  # this agent's residue mod n
        top = hi - ((hi - r) % n)  # largest i <= hi with i % n == r
        if top >= lo:
            out.append((day, lo, top, (top - lo) // n + 1))
    return out


def _agent_calls(
    s: Settings,
    agent: int,
    start: datetime,
    end: datetime,
    offset: int,
    limit: int,
    deleted: Sequence[tuple[int, int]] = (),
) -> tuple[int, list[tuple[int, int]]]:
    """An agent's calls in ``[start, end]`` but the ``deleted`` ones, newest first: (total, the
    ``(day, index)`` of the page at ``offset``)."""
    n = len(s.agent_ids)
    days = _agent_days(s, agent, start, end)
    base, gone = 0, []
    for day, lo, top, count in days:  # the positions of the deleted calls in the agent's list
        gone += [
            base + (top - i) // n for d, i in deleted if d == day and lo <= i <= top and (top - i) % n == 0
        ]
        base += count
    gone.sort()
    total = base - len(gone)
    out: list[tuple[int, int]] = []
    for a, b in live_segments(offset, min(offset + limit, total), gone):
        base = 0
        for day, _lo, top, count in days:
            out += [(day, top - (pos - base) * n) for pos in range(max(a, base), min(b, base + count))]
            base += count
    return total, out
