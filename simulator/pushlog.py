"""Alibaba Cloud VMS ``CloudListCurlLog`` (seed 001): the push (webhook) log of a Tinet
Clink call center, behind Alibaba Cloud's RPC gateway.

Contract (an independent reading of seed 001 and of Alibaba Cloud's signature V3, not of our client):

- ``POST /`` (``GET`` too, as the gateway accepts both), action and version in the
  ``x-acs-action`` / ``x-acs-version`` headers, the API parameters in the query string (or
  form-encoded in the body), signed with Alibaba Cloud signature V3 (``ACS3-HMAC-SHA256``),
  verified here by our own implementation of the spec.
- Parameters: ``EnterpriseId`` (required), ``StartTime`` / ``EndTime`` (required,
  ``yyyy-MM-dd HH:mm:ss`` in the vendor's zone, same calendar month, both inclusive to the
  second), ``Start`` (offset, string, >= 0, default 0), ``Limit`` (string, 1..500, default 10),
  filters ``Type`` (1..29), ``Result`` (1/0), ``Url``, ``Retry`` (-2, the default, = any).
- No total: a page is records ``[Start, Start + Limit)`` of the window ordered by ``Id``;
  the last page is the one shorter than ``Limit``. The window filters on ``CreateTime``.

Data: ``volume`` deliveries per local day; delivery ``i`` of day ``d`` has ``Id = d * 10_000_000
+ i`` (``d`` = days since 1970-01-01 in the vendor's zone) and ``CreateTime = day start +
floor(i * day_ms / volume)``. A delivery exists once ``CreateTime <= now``, or, for the
``late_fraction`` of deliveries that are logged late, once ``CreateTime + lag <= now`` (lag up
to ``max_late_ms``): a window's content grows as the clock moves.

Faults the vendor answers itself: "envelope" (``isv.BUSINESS_LIMIT_CONTROL`` in an HTTP 200),
"drift" (``Type`` as a string, ``Position`` gone), "empty" (``Code`` OK with an empty
``Data.List``: the log store lost the window) and "poison" (the page's first record carries
``\u0000`` or a lone ``\ud800`` in ``ResultText``, or ``Delay`` as ``1e999999``). Deliveries
deleted vendor-side (``SimState.deleted``, ``pushlog:<Id>``) are no longer returned and the
offsets of the later ones shift down, as a real store's would.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import time
import uuid
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.common import POISON_VARIANTS, Fault, SimState, serve, stable_int

VENDOR = "pushlog"
ENDPOINT = "/"
ACTION = "CloudListCurlLog"
VERSION = "2017-05-25"
HOST_ID = "dyvmsapi.aliyuncs.com"
ALGORITHM = "ACS3-HMAC-SHA256"
ID_STRIDE = 10_000_000  # Ids per local day: volume must stay below it
JSON_TYPE = "application/json;charset=utf-8"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The documents' "empty" is the two characters "" (JSON "\"\""), as the wire carries it.
WIRE_EMPTY = '\\"\\"'
WIRE_QUOTE_TWICE = '\\\\\\"'  # a quote of JSON escaped twice, then JSON-encoded: \\\"
WIRE_QUOTE_ONCE = '\\"'


@dataclass
class Settings:
    seed: int = 7
    volume: int = 2000  # deliveries per local day
    access_key_id: str = "sim-pushlog-access-key-id"
    access_key_secret: str = "sim-pushlog-access-key-secret"
    enterprise_id: int = 7122600
    timezone: str = "Asia/Shanghai"
    late_fraction: float = 0.0  # share of deliveries logged after their CreateTime
    max_late_ms: int = 600_000  # how late such a delivery can appear
    max_limit: int = 500
    default_limit: int = 10
    date_tolerance_s: int = 900  # x-acs-date must be this close to the clock
    nonce_memory: int = 200_000  # recent nonces remembered (bounded memory)

    def __post_init__(self) -> None:
        if not 1 <= self.volume < ID_STRIDE:
            raise ValueError(f"volume must be in 1..{ID_STRIDE - 1}")


# The seed's list, verbatim.
TYPE_NAMES: dict[int, str] = {
    1: "来电推送",
    2: "来电响铃推送",
    3: "外呼响铃推送",
    4: "webcall 转座席响铃推送",
    5: "来电接通推送",
    6: "外呼接通推送",
    7: "来电挂机推送",
    8: "外呼挂机推送",
    9: "座席状态推送",
    10: "按键推送",
    11: "号码状态识别推送",
    12: "录音状态推送",
    13: "HTTP 交互推送",
    14: "预测式外呼任务推送",
    15: "ASR 语音转换结果推送",
    16: "webcall 客户侧响铃推送",
    17: "满意度调查推送",
    18: "预测外呼客户接听状态推送",
    19: "NLU 推送",
    20: "预测外呼双方接听推送",
    21: "IVR 交互结束推送",
    22: "外呼客户响铃推送",
    23: "webcall 客户接听推送",
    24: "webcall 转接响铃推送",
    25: "webcall 转接接通推送",
    26: "主叫外呼分机响铃推送",
    27: "主叫外呼分机接听推送",
    28: "主叫外呼客户响铃推送",
    29: "主叫外呼双方接通推送",
}
# Labels the vendor prints in TypeStr that are not the documented name of Type (the sample
# has Type 9 with 主通话记录推送).
ODD_TYPE_STRS = [
    "主通话记录推送",
    "通话记录推送",
    "座席状态",
    "来电推送",
    "外呼推送",
    "状态推送",
    "",
    "未知推送",
]

_TYPE_WEIGHTS = {9: 260, 1: 70, 2: 70, 5: 55, 7: 70, 3: 60, 22: 40, 6: 45, 8: 60, 12: 60, 10: 30}
_TYPE_WEIGHTS.update({t: 12 for t in TYPE_NAMES if t not in _TYPE_WEIGHTS})


def _weighted_table(weights: dict[int, int], size: int = 1024) -> list[int]:
    total = sum(weights.values())
    table: list[int] = []
    for key, weight in weights.items():
        table += [key] * (weight * size // total)
    table += [9] * (size - len(table))
    return table


TYPE_TABLE = _weighted_table(_TYPE_WEIGHTS)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚晨丹")
GIVEN += ["秀英", "秀兰", "桂英", "欣怡", "子涵", "浩然", "雨萱", "建华", "海燕", "志强"]
MOBILE_PREFIXES = ["130", "131", "132", "135", "136", "137", "138", "139"]
MOBILE_PREFIXES += ["150", "151", "152", "158", "159", "186", "187", "188"]
AREA_CODES = ["010", "021", "020", "0755", "0571", "028", "027", "029"]
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安"]
AREA_NAMES = dict(zip(["010", "021", "020", "075", "057", "028", "027", "029"], CITIES, strict=True))
URLS = [
    "https://www.aaa.com/index.htm",
    "https://crm.example.cn/api/clink/push",
    "http://callback.example.com.cn:8080/tinet/notify",
    "https://www.aaa.com/index.htm",
]
HOTLINES = ["4008106688", "01053912000", "4006012345", "02160911800"]
AGENT_STATES = [
    ("idle", "空闲"),
    ("busyAgentOb", "通话"),
    ("busyAgentIb", "通话"),
    ("pause", "置忙"),
    ("ringing", "响铃"),
    ("wrapup", "整理"),
    ("online", "空闲"),
    ("offline", "离线"),
]
EVENT_OF_TYPE = {
    1: "incoming",
    2: "ringing",
    3: "ringing",
    4: "ringing",
    5: "answer",
    6: "answer",
    7: "hangup",
    8: "hangup",
    10: "press",
    11: "numberStatus",
    12: "record",
    13: "http",
    14: "taskStatus",
    15: "asr",
    16: "ringing",
    17: "investigation",
    18: "answer",
    19: "nlu",
    20: "bridge",
    21: "ivrEnd",
    22: "ringing",
    23: "answer",
    24: "ringing",
    25: "answer",
    26: "ringing",
    27: "answer",
    28: "ringing",
    29: "bridge",
}
CALL_TYPE_OF_TYPE = {t: ("1" if t in (1, 2, 5, 7, 10, 12, 17, 21) else "4") for t in TYPE_NAMES}
FAIL_STATUS = ["500", "502", "404", "504", "0", "503", "500", "400"]
FAIL_TEXT = ["Read timed out", "", "<html><body>502 Bad Gateway</body></html>", "Not Found"]
PLAIN_OK = ["success", "ok", "SUCCESS", "OK"]
HEADER_FORM = '{"Content-Type":"application/x-www-form-urlencoded;charset=UTF-8"}'
HEADER_JSON = '{"Content-Type":"application/json;charset=UTF-8"}'
HEADER_TOKEN = '{"Content-Type":"application/json;charset=UTF-8","X-Token":"clink-7f3a9c"}'

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: one cheap, well-spread 64-bit hash per record (no Random objects)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _phone(h: int) -> str:
    if h & 3:
        return MOBILE_PREFIXES[(h >> 2) & 15] + f"{(h >> 6) % 100_000_000:08d}"
    return AREA_CODES[(h >> 2) & 7] + f"{(h >> 6) % 100_000_000:08d}"


@lru_cache(maxsize=8192)
def _day_start_ms(tz: str, day: int) -> int:
    d = date.fromordinal(day + EPOCH_ORDINAL)
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp()) * 1000


@lru_cache(maxsize=8192)
def _month_of(tz: str, day: int) -> str:
    return date.fromordinal(day + EPOCH_ORDINAL).strftime("%Y%m")


def _day_of(tz: str, ms: int) -> int:
    return datetime.fromtimestamp(ms // 1000, ZoneInfo(tz)).date().toordinal() - EPOCH_ORDINAL


def _within(indices: list[int] | None, lo: int, hi: int) -> list[int]:
    """The sorted ``indices`` in [lo, hi)."""
    if not indices:
        return []
    return indices[bisect_left(indices, lo) : bisect_left(indices, hi)]


def _is_deleted(deleted: dict[int, list[int]], day: int, i: int) -> bool:
    found = deleted.get(day)
    if not found:
        return False
    k = bisect_left(found, i)
    return k < len(found) and found[k] == i


def deleted_by_day(ids: frozenset[str]) -> dict[int, list[int]]:
    """Deleted ``Id`` values as {day: sorted delivery indices}; ids that are not ours are ignored."""
    out: dict[int, list[int]] = {}
    for text in ids:
        if not text.isdigit():
            continue
        day, i = divmod(int(text), ID_STRIDE)
        out.setdefault(day, []).append(i)
    for found in out.values():
        found.sort()
    return out


def poison(record: str, variant: str) -> str:
    """One record's JSON text carrying a value PostgreSQL refuses: a string poison inside the
    free text ``ResultText``, the number in ``Delay``. The body stays valid JSON."""
    if variant == "bignum":
        return re.sub(r'"Delay":\d+', '"Delay":' + POISON_VARIANTS[variant], record, count=1)
    return record.replace('"ResultText":"', '"ResultText":"' + POISON_VARIANTS[variant], 1)


class PushLogData:
    """Deterministic deliveries from (seed, volume); every page costs O(page size)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.n = settings.volume
        self.tz = settings.timezone
        self.salt = stable_int(settings.seed, "pushlog", bits=64)
        self.late_salt = stable_int(settings.seed, "pushlog-late", bits=64)
        self.late_threshold = int(settings.late_fraction * (1 << 24))
        self.ent = str(settings.enterprise_id)
        self.agents = []
        for k in range(160):
            h = stable_int(settings.seed, "agent", k, bits=64)
            name = SURNAMES[h % len(SURNAMES)] + GIVEN[(h >> 8) % len(GIVEN)]
            self.agents.append((str(8000 + k * 7 % 1000), f"0104100{k:04d}", name))

    # -- where records are -------------------------------------------------------------

    def segments(self, lo_ms: int, hi_ms: int) -> list[tuple[int, int, int, int, int]]:
        """(day, day_start_ms, day_ms, i_lo, i_hi) runs of deliveries with lo <= CreateTime < hi."""
        out: list[tuple[int, int, int, int, int]] = []
        if hi_ms <= lo_ms:
            return out
        n, day = self.n, _day_of(self.tz, lo_ms)
        while True:
            ds, de = _day_start_ms(self.tz, day), _day_start_ms(self.tz, day + 1)
            length = de - ds
            a, b = max(lo_ms, ds) - ds, min(hi_ms, de) - ds
            if b > a:
                # offset(i) = i * length // n, so offset >= a  <=>  i >= ceil(a * n / length)
                i_lo, i_hi = -(-a * n // length), -(-b * n // length)
                if i_hi > i_lo:
                    out.append((day, ds, length, i_lo, i_hi))
            if de >= hi_ms:
                return out
            day += 1

    def lag_ms(self, rid: int) -> int:
        if not self.late_threshold:
            return 0
        h = _mix(self.late_salt ^ rid)
        if (h >> 40) < self.late_threshold:
            return 1 + (h & 0xFFFFFF) % self.s.max_late_ms
        return 0

    def page(
        self,
        lo_ms: int,
        hi_ms: int,
        now_ms: int,
        start: int,
        limit: int,
        filters: dict | None,
        deleted: dict[int, list[int]] | None = None,
    ) -> list[str]:
        """Records [start, start+limit) of the visible deliveries created in [lo, hi), by Id,
        each as JSON text. ``deleted`` maps a day to the sorted indices of its deliveries the
        vendor deleted: they are skipped and the offsets after them shift."""
        visible_hi = min(hi_ms, now_ms + 1)
        out: list[str] = []
        deleted = deleted or {}
        if filters:
            # Filtered reads scan the window (O(window)); the pipeline never filters.
            skip = start
            for day, ds, length, i_lo, i_hi in self.segments(lo_ms, visible_hi):
                month = _month_of(self.tz, day)
                for i in range(i_lo, i_hi):
                    created = ds + i * length // self.n
                    rid = day * ID_STRIDE + i
                    if created + self.lag_ms(rid) > now_ms or _is_deleted(deleted, day, i):
                        continue
                    if not self.matches(rid, filters):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    out.append(self.record(rid, created, month))
                    if len(out) == limit:
                        return out
            return out
        # Deliveries older than the longest lag are all visible: index straight into them.
        sure_hi = visible_hi if not self.late_threshold else min(visible_hi, now_ms - self.s.max_late_ms + 1)
        sure = self.segments(lo_ms, sure_hi)
        skip = start
        for day, ds, length, i_lo, i_hi in sure:
            gone = _within(deleted.get(day), i_lo, i_hi)
            count = i_hi - i_lo - len(gone)
            if skip >= count:
                skip -= count
                continue
            month = _month_of(self.tz, day)
            base = day * ID_STRIDE
            n = self.n
            if not gone:
                for i in range(i_lo + skip, min(i_hi, i_lo + skip + limit - len(out))):
                    out.append(self.record(base + i, ds + i * length // n, month))
            else:
                # the logical offset's physical index: step over the deleted ones before it
                i = i_lo + skip
                for d in gone:
                    if d <= i:
                        i += 1
                    else:
                        break
                skipped = set(gone)
                while i < i_hi and len(out) < limit:
                    if i not in skipped:
                        out.append(self.record(base + i, ds + i * length // n, month))
                    i += 1
            skip = 0
            if len(out) == limit:
                return out
        # The last few minutes, where late deliveries leave gaps, are walked one by one.
        for day, ds, length, i_lo, i_hi in self.segments(max(lo_ms, sure_hi), visible_hi):
            month = _month_of(self.tz, day)
            for i in range(i_lo, i_hi):
                created = ds + i * length // self.n
                rid = day * ID_STRIDE + i
                if created + self.lag_ms(rid) > now_ms or _is_deleted(deleted, day, i):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append(self.record(rid, created, month))
                if len(out) == limit:
                    return out
        return out

    # -- what a record says ------------------------------------------------------------

    def facts(self, rid: int) -> tuple[int, int, bool, int, str]:
        """The hashes and the filterable fields (Type, Result, Retry, Url) of one delivery."""
        h = _mix(self.salt ^ rid)
        g = _mix(h)
        failed = ((h >> 19) & 31) == 0
        # a failed push was retried 1..3 times; a few successes needed one retry
        retry = 1 + (g >> 24) % 3 if failed else int(((g >> 26) & 63) == 0)
        return h, g, failed, retry, URLS[(h >> 58) & 3]

    def matches(self, rid: int, filters: dict) -> bool:
        h, _, failed, retry, url = self.facts(rid)
        have = {"Type": TYPE_TABLE[h & 1023], "Result": "0" if failed else "1", "Retry": retry, "Url": url}
        return all(have[k] == v for k, v in filters.items())

    def record(self, rid: int, created: int, month: str) -> str:
        """One record as JSON text, written directly: the page is a join of these, which is
        several times cheaper than building dicts and letting json.dumps escape the nested JSON."""
        h, g, failed, retry, url = self.facts(rid)
        typ = TYPE_TABLE[h & 1023]
        type_str = TYPE_NAMES[typ] if (h >> 10) & 63 else ODD_TYPE_STRS[(h >> 16) & 7]
        request_ms = created + 3 + ((h >> 49) & 4095)
        timeout = "3" if (g >> 60) & 3 else "5"
        if failed:
            end_ms = request_ms + (int(timeout) * 1000 if (g >> 20) & 1 else 5 + (g & 1023))
            status = FAIL_STATUS[(g >> 21) & 7]
        else:
            end_ms = request_ms + 5 + (g & 1023)
            status = "200"
        agent = self.agents[(g >> 32) % 160]
        t_millis = request_ms - 1 - ((g >> 10) & 7)
        unique_id = f"sip-{1 + (g >> 40) % 40}-{created // 1000 - ((g >> 46) & 63)}.{(g >> 52) % 1000}"
        params = self._params(typ, g, agent, unique_id, t_millis, created)
        content_type = 1
        if ((h >> 29) & 7) == 0:
            headers = "{}"
        elif (h >> 32) & 1:
            headers, content_type = HEADER_JSON, 2
        else:
            headers = HEADER_TOKEN if ((h >> 33) & 7) == 0 else HEADER_FORM
        if failed:
            result_text = FAIL_TEXT[(g >> 13) & 3]
        else:
            pick = (g >> 16) & 7
            if pick < 2:
                result_text = PLAIN_OK[(g >> 5) & 3]
            elif pick < 4:
                # receivers that echo an agent-status payload back, as in the sample
                result_text = self._status(g >> 3, agent, t_millis - 3994)
            else:
                result_text = '{"code":0,"msg":"success","data":null}' if pick < 7 else '{"errcode":0}'
        # The vendor escapes these JSON strings twice ({\"bindTel\":...} once decoded), a few
        # only once. On the wire, after our own JSON encoding, a quote becomes \\\" or \".
        quote_as = WIRE_QUOTE_ONCE if ((h >> 24) & 31) == 0 else WIRE_QUOTE_TWICE
        params = params.replace('"', quote_as)
        result_text = result_text.replace('"', quote_as)
        headers = headers.replace('"', quote_as)
        uid = unique_id if typ != 9 and ((h >> 34) & 3) == 0 else WIRE_EMPTY
        cur = WIRE_EMPTY if (h >> 62) & 3 else month
        return (
            f'{{"UniqueId":"{uid}","EndTime":"{end_ms}","ContentType":{content_type},'
            f'"Position":"{"0" if (h >> 36) & 7 else "1"}","Timeout":"{timeout}","Headers":"{headers}",'
            f'"CreateTime":"{created}","TypeStr":"{type_str}","StartTime":"{created - ((h >> 40) & 511)}",'
            f'"Params":"{params}","RequestTime":"{request_ms}",'
            f'"Method":"{"GET" if ((h >> 37) & 3) == 0 else "POST"}","StatusCode":"{status}",'
            f'"Url":"{url}","Delay":{0 if (h >> 60) & 15 else 3},"EnterpriseId":"{self.ent}",'
            f'"Result":"{"0" if failed else "1"}","Type":{typ},"ResultText":"{result_text}",'
            f'"Level":{0 if (h >> 39) & 15 else 1},"Retry":{retry},"Id":"{rid}","CurrentMonth":"{cur}"}}'
        )

    def _status(self, g: int, agent: tuple[str, str, str], t_millis: int) -> str:
        action, state = AGENT_STATES[g & 7]
        cno, bind_tel, _ = agent
        return (
            f'{{"bindTel":"{bind_tel}","stateAction":"{action}","cno":"{cno}","bindType":"1",'
            f'"enterpriseId":"{self.ent}","state":"{state}","timeInMillis":"{t_millis}",'
            f'"time":"{t_millis // 1000}","event":"status","loginStatus":"1",'
            f'"deviceStatus":"{"0" if state == "空闲" else "4"}"}}'
        )

    def _params(
        self, typ: int, g: int, agent: tuple[str, str, str], unique_id: str, t_millis: int, created: int
    ) -> str:
        if typ == 9:
            return self._status(g >> 5, agent, t_millis)
        cno, bind_tel, name = agent
        customer = _phone(g >> 8)
        head = (
            f'{{"uniqueId":"{unique_id}","mainUniqueId":"{unique_id}","customerNumber":"{customer}",'
            f'"hotline":"{HOTLINES[(g >> 3) & 3]}","cno":"{cno}","bindTel":"{bind_tel}",'
            f'"callType":"{CALL_TYPE_OF_TYPE[typ]}","enterpriseId":"{self.ent}",'
        )
        if typ in (7, 8):
            start_s = created // 1000 - 30 - (g >> 12) % 600
            talk = (g >> 22) % 400
            if (g >> 31) & 3:
                record_file = f"{self.ent}-{start_s}-{customer}-{cno}-record-{unique_id}.mp3"
                extra = (
                    f'"clientName":"{name}","startTime":"{start_s}","answerTime":"{start_s + 8}",'
                    f'"endTime":"{start_s + 8 + talk}","bridgeDuration":"{talk}",'
                    f'"totalDuration":"{8 + talk}",'
                    f'"status":"双方接听","recordFile":"{record_file}",'
                )
            else:
                extra = (
                    f'"clientName":"{name}","startTime":"{start_s}","answerTime":"",'
                    f'"endTime":"{start_s + 30}","bridgeDuration":"0","totalDuration":"30",'
                    f'"status":"客户未接","recordFile":"",'
                )
        elif typ == 10:
            extra = f'"keys":"{(g >> 12) % 10}","ivrName":"主菜单",'
        elif typ == 12:
            extra = f'"recordFile":"{self.ent}-{customer}-{cno}-record-{unique_id}.mp3","status":"1",'
        elif typ == 15:
            extra = '"text":"您好，请问有什么可以帮您","channel":"client",'
        elif typ == 17:
            extra = f'"investigation":"{1 + (g >> 12) % 5}",'
        elif typ == 1:
            extra = f'"customerArea":"{AREA_NAMES.get(customer[:3]) or CITIES[(g >> 44) & 7]}",'
        else:
            extra = ""
        return (
            f'{head}{extra}"timeInMillis":"{t_millis}","time":"{t_millis // 1000}",'
            f'"event":"{EVENT_OF_TYPE[typ]}"}}'
        )


# -- the gateway: signature, errors --------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def _request_id() -> str:
    h = uuid.uuid4().hex.upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _json(payload: dict, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type=JSON_TYPE)


def _error(err: ApiError) -> Response:
    rid = _request_id()
    return _json(
        {
            "RequestId": rid,
            "HostId": HOST_ID,
            "Code": err.code,
            "Message": err.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Dyvmsapi&requestId={rid}",
        },
        err.status,
    )


_AUTH_RE = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=([^,\s]+),SignedHeaders=([a-z0-9;\-]+),Signature=([0-9a-f]{64})$"
)
REQUIRED_SIGNED = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"}
REQUIRED_SIGNED.add("x-acs-content-sha256")


def _enc(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


class Gateway:
    """Alibaba Cloud's V3 checks, in the gateway's order: form, key, time, signature, nonce."""

    def __init__(self, settings: Settings, state: SimState) -> None:
        self.s = settings
        self.state = state
        self._nonces: set[str] = set()
        self._nonce_order: deque[str] = deque()

    def verify(self, request: Request, body: bytes) -> None:
        auth = request.headers.get("authorization", "")
        m = _AUTH_RE.match(auth.strip())
        if not m:
            raise ApiError(
                400, "IncompleteSignature", "The request signature does not conform to Aliyun standards."
            )
        key_id, signed, signature = m.groups()
        if key_id != self.s.access_key_id:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        names = signed.split(";")
        missing = (REQUIRED_SIGNED | {k for k in request.headers if k.startswith("x-acs-")}) - set(names)
        if missing:
            raise ApiError(
                400,
                "IncompleteSignature",
                f"The request signature does not conform to Aliyun standards. Unsigned headers: "
                f"{', '.join(sorted(missing))}",
            )
        date_text = request.headers.get("x-acs-date", "")
        try:
            sent = calendar.timegm(time.strptime(date_text, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise ApiError(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            ) from None
        if abs(self.state.clock.auth_now() - sent) > self.s.date_tolerance_s:
            raise ApiError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce = request.headers.get("x-acs-signature-nonce", "")
        if not nonce:
            raise ApiError(400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action.")
        content_hash = request.headers.get("x-acs-content-sha256", "")
        canonical = "\n".join(
            [
                request.method,
                quote(request.url.path or "/", safe="/~"),
                "&".join(
                    f"{k}={v}"
                    for k, v in sorted((_enc(k), _enc(v)) for k, v in request.query_params.multi_items())
                ),
                "".join(
                    f"{n}:{','.join(sorted(v.strip() for v in request.headers.getlist(n)))}\n" for n in names
                ),
                signed,
                content_hash,
            ]
        )
        to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
        expected = hmac.new(
            self.s.access_key_secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature does not match our calculation. server string to sign is:" + to_sign,
            )
        if hashlib.sha256(body).hexdigest() != content_hash:
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the request body.",
            )
        # Remember the nonce only once the signature holds, so garbage cannot burn nonces.
        if nonce in self._nonces:
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(nonce)
        self._nonce_order.append(nonce)
        while len(self._nonce_order) > self.s.nonce_memory:
            self._nonces.discard(self._nonce_order.popleft())


_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameter", message)


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise _invalid(f"Specified parameter {name} is not valid.") from None


def _local_time(params: dict[str, str], name: str, zone: ZoneInfo) -> datetime:
    raw = params.get(name)
    if not raw:
        raise ApiError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    if not _TIME_RE.match(raw):
        raise _invalid(f"Specified parameter {name} is not valid: the format is yyyy-MM-dd HH:mm:ss.")
    try:
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError:
        raise _invalid(f"Specified parameter {name} is not a valid date.") from None


def build_app(settings: Settings, state: SimState) -> Starlette:
    data = PushLogData(settings)
    gateway = Gateway(settings, state)
    zone = ZoneInfo(settings.timezone)

    async def handle(request: Request, fault: Fault | None) -> Response:
        body = await request.body()
        try:
            gateway.verify(request, body)
            action = request.headers.get("x-acs-action", "")
            if action != ACTION:
                raise ApiError(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                )
            if request.headers.get("x-acs-version", "") != VERSION:
                raise ApiError(400, "InvalidVersion", "Specified parameter Version is not valid.")
            params = dict(request.query_params)
            if body and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                    params.setdefault(k, v)
            lo, hi, start, limit, filters = _parse(params, settings, zone)
        except ApiError as err:
            return _error(err)
        if fault is not None and fault.mode == "envelope":
            return _json(
                {"RequestId": _request_id(), "Message": "触发流控", "Code": "isv.BUSINESS_LIMIT_CONTROL"}
            )
        deleted = deleted_by_day(state.deleted_ids(VENDOR))
        records = data.page(lo, hi, int(state.clock.now() * 1000), start, limit, filters, deleted)
        if fault is not None and fault.mode == "empty":
            records = []
        if fault is not None and fault.mode == "poison" and records:
            records[0] = poison(records[0], fault.variant)
        if fault is not None and fault.mode == "drift":
            # schema drift: Type arrives as a string and Position disappears
            drifted = []
            for text in records:
                rec = json.loads(text)
                rec["Type"] = str(rec["Type"])
                del rec["Position"]
                drifted.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            records = drifted
        body = (
            f'{{"AccessDeniedDetail":"无","RequestId":"{_request_id()}","Message":"OK",'
            f'"Data":{{"List":[{",".join(records)}]}},"Code":"OK"}}'
        )
        return Response(body.encode("utf-8"), media_type=JSON_TYPE)

    async def endpoint(request: Request) -> Response:
        return await serve(state, VENDOR, ENDPOINT, request, handle)

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])])


def _parse(
    params: dict[str, str], settings: Settings, zone: ZoneInfo
) -> tuple[int, int, int, int, dict | None]:
    enterprise = _int_param(params, "EnterpriseId")
    if enterprise is None:
        raise ApiError(400, "MissingEnterpriseId", "EnterpriseId is mandatory for this action.")
    if enterprise != settings.enterprise_id:
        raise ApiError(
            403, "Forbidden.NoPermission", "You are not authorized to operate on the specified enterprise."
        )
    start_time = _local_time(params, "StartTime", zone)
    end_time = _local_time(params, "EndTime", zone)
    if (start_time.year, start_time.month) != (end_time.year, end_time.month):
        raise _invalid(
            "StartTime and EndTime must be in the same calendar month (startTime 与 endTime 不允许跨月)."
        )
    if end_time < start_time:
        raise _invalid("StartTime must not be later than EndTime.")
    start = _int_param(params, "Start", 0)
    if start is None or start < 0:
        raise _invalid("Specified parameter Start is not valid: it must be >= 0.")
    limit = _int_param(params, "Limit", settings.default_limit)
    if limit is None or not 1 <= limit <= settings.max_limit:
        raise _invalid(f"Specified parameter Limit is not valid: it must be in 1..{settings.max_limit}.")
    filters: dict = {}
    typ = _int_param(params, "Type")
    if typ is not None:
        if typ not in TYPE_NAMES:
            raise _invalid("Specified parameter Type is not valid: it must be in 1..29.")
        filters["Type"] = typ
    result = _int_param(params, "Result")
    if result is not None:
        if result not in (0, 1):
            raise _invalid("Specified parameter Result is not valid: it must be 1 or 0.")
        filters["Result"] = str(result)
    if params.get("Url"):
        filters["Url"] = params["Url"]
    retry = _int_param(params, "Retry", -2)
    if retry != -2:
        filters["Retry"] = retry
    lo_ms = int(start_time.timestamp()) * 1000
    hi_ms = (int(end_time.timestamp()) + 1) * 1000  # EndTime is inclusive to its last millisecond
    return lo_ms, hi_ms, start, limit, filters or None


def env(settings: Settings, base_url: str) -> dict[str, str]:
    return {
        "PUSHLOG_BASE_URL": base_url,
        "PUSHLOG_ACCESS_KEY_ID": settings.access_key_id,
        "PUSHLOG_ACCESS_KEY_SECRET": settings.access_key_secret,
        "PUSHLOG_ENTERPRISE_ID": str(settings.enterprise_id),
        "PUSHLOG_TIMEZONE": settings.timezone,
    }
