"""Huawei CC-iSales open API (seeds 000 and 003): a faithful simulator.

Endpoints (documented paths; ``simulator.app`` mounts them under ``/isales``), both POST with a
JSON body and ``Content-Type: application/json; charset=UTF-8``:

- ``/rest/isales/v1/openapi/campaigns/{vdnId}/calllogs`` body ``{offset, limit, url?, beginTime,
  endTime}``: the audit log of open-API calls. ``beginTime``/``endTime`` are naive
  ``yyyy-MM-dd HH:mm:ss`` in ``Settings.timezone``, both inclusive, at most 7 days apart.
  ``result`` is the page ``[offset, offset + limit)`` of the window in ascending ``operTime``
  order; ``count`` is the window's total. A non-empty ``url`` keeps the records of that url only.
- ``/rest/isales/v1/openapi/campaigns/{vdnId}/file/queryServer`` body ``{offset, limit,
  serverIds?}``: the VDN's file servers in ``server``; ``count`` is absent unless
  ``Settings.file_server_count``.

Signing: ``Authorization: auth-v2/<AK>/<yyyy-MM-ddTHH:mm:ss.SSSZ>/<signedHeaders>/<signature>``
(the "C2" scheme seeds 000 and 003 name, as public ports of Huawei's Java demo implement it),
verified here by an independent canonicalisation; ``sign_variant`` "hex" (hex HMAC string as
key, hex signature, header lines joined by newlines) or "base64" (raw HMAC key, Base64
signature, a newline after each header line plus a blank line). A missing or
wrong signature, an unknown AK, or a timestamp more than ``max_skew_s`` off the clock answers
HTTP 401 with a JSON body. The signed headers must include ``content-length``, ``content-type``
and ``host``.

Errors are HTTP 200 envelopes ``{"returnCode", "resultCode", "resultDesc", "returnDesc"}`` with
seed 003's string codes: ``0200001`` (bad vdnId; window over 7 days; begin after end),
``02000001`` (required value missing), ``02000006`` (wrong type, unparsable time),
``02000007`` (limit outside 1..100, negative offset), ``02000008`` (body is not a JSON object),
``02000011`` (too many serverIds). ``locale: en_US`` gives English descriptions.

Data: ``volume`` call logs per day (of ``timezone``) per VDN. Record ``i`` of local day ``d``
happens at ``midnight(d) + floor(i * 86400 / volume)`` seconds and exists once the clock has
passed it; every field comes from a 64-bit mix of ``(seed, vdn, d, i)``, so a window's total
and any page are arithmetic (O(page)); only the ``url`` filter scans the window.
Quirks kept: ``request`` is JSON inside a string (about 1 % truncated, so not valid JSON),
``operTime`` is ISO 8601 with ``+00:00``, ``id`` is a 30-digit string whose first 13 digits
are the call's epoch milliseconds (as in the sample), codes are strings of 7 or 8 digits,
``port`` is a string and ``ip``/``port``/``filePath`` can be null.

The seed's sample id ``1660889911090...`` is 2022-08-19T06:18:31.090Z, while its ``operTime`` says
``14:18:31.000+00:00``: Shanghai wall time labelled UTC. ``oper_time_wall_clock=True`` reproduces
that reading (window filtering still uses the true instant); the default labels true UTC.

Faults: "envelope" answers HTTP 200 with ``0200033`` (外呼数据不存在); "drift" retypes fields:
call logs get ``operTime`` as epoch milliseconds (a number) and ``request`` as an object (when
it parses); file servers get ``port`` as a number and ``serverId`` renamed ``serverID``.
"empty" answers ``0200000`` with ``count`` 0 and an empty ``result`` (``server``): the vendor lost
the data. "poison" gives the page's first record ``\u0000`` or a lone ``\ud800`` at the start of
its free text (a call log's ``resultDesc``, a server's ``userName``) or ``1e999999`` as its number
(``httpStatus``; a server's ``port``). Records deleted vendor-side (``SimState.deleted``,
``isales:<id>`` for a call log, ``isales:<serverId>`` for a server) are no longer returned:
``count`` drops and later offsets shift, as a real vendor's would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.common import POISON_VARIANTS, Fault, SimState, rng, serve, stable_int

VENDOR = "isales"
CALLLOGS = "/rest/isales/v1/openapi/campaigns/{vdnId}/calllogs"
QUERY_SERVER = "/rest/isales/v1/openapi/campaigns/{vdnId}/file/queryServer"
DAY_S = 86_400
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_M64 = (1 << 64) - 1
_ID_TAIL_MOD = 10**17
_ID_TAIL_STEP = 61_803_398_874_989_489  # coprime to 10, so i -> tail is one-to-one within a day
_ID_TAIL_INVERSE = pow(_ID_TAIL_STEP, -1, _ID_TAIL_MOD)  # tail -> i, to find a deleted id's record
# Stands in for a poisoned value while the page is encoded; replaced in the JSON text after.
_POISON_TOKEN = "\u27e6sim-poison\u27e7"

OK = "0200000"
# seed 003's table (表6), zh as documented, en our translation
CODES: dict[str, tuple[str, str]] = {
    "0200001": ("参数异常,异常详情在resultDesc中描述。", "Parameter exception."),
    "0200033": ("外呼数据不存在。", "The outbound call data does not exist."),
    "0200034": ("子状态与业务结果不匹配。", "The sub-status does not match the business result."),
    "02000001": ("参数值为空", "The parameter value is empty."),
    "02000002": ("参数包含非法字符", "The parameter contains invalid characters."),
    "02000003": ("参数长度不能大于规定长度", "The parameter is longer than allowed."),
    "02000004": ("参数长度不能小于规定长度", "The parameter is shorter than allowed."),
    "02000005": ("参数长度需要介于规定长度之间", "The parameter length is out of range."),
    "02000006": ("参数值类型不正确", "The parameter type is incorrect."),
    "02000007": ("参数值大小不正确", "The parameter value is out of range."),
    "02000008": ("参数转换异常,请检查请求参数", "Parameter conversion failed."),
    "02000009": ("参数组合不正确,请检查请求参数", "Invalid parameter combination."),
    "02000010": ("hour和minute必须同时存在", "hour and minute must both be present."),
    "02000011": ("参数个数不能大于规定个数", "Too many parameters."),
}
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_AUTH_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_REQUIRED_SIGNED = {"content-length", "content-type", "host"}


@dataclass
class Settings:
    seed: int = 7
    volume: int = 200  # call logs per day per VDN
    ak: str = "sim-isales-ak"
    sk: str = "sim-secret-isales"
    vdn_ids: tuple[int, ...] = (1, 2)
    timezone: str = "Asia/Shanghai"
    sign_variant: str = "hex"  # "hex" (two of the demo's public ports) or "base64" (the third)
    max_skew_s: int = 900
    max_limit: int = 100
    max_window_days: int = 7
    file_servers_per_vdn: int = 5
    file_server_count: bool = False  # the documented ``count`` is absent from real answers
    removed_server_ids: set[str] = field(default_factory=set)  # mutable at runtime: servers gone
    oper_time_wall_clock: bool = False  # label Shanghai wall time "+00:00", as the sample seems to


def env(settings: Settings, base_url: str) -> dict[str, str]:
    return {
        "ISALES_BASE_URL": base_url,
        "ISALES_AK": settings.ak,
        "ISALES_SK": settings.sk,
        "ISALES_VDN_IDS": ",".join(str(v) for v in settings.vdn_ids),
        "ISALES_TIMEZONE": settings.timezone,
        "ISALES_SIGN_VARIANT": settings.sign_variant,
    }


# ---------------------------------------------------------------------------------------------
# signature verification (independent of pipelines.defs.sources.isales.signing, on purpose)

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_ENC = tuple(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256))


def _enc(raw: bytes) -> str:
    return "".join([_ENC[b] for b in raw])


def expected_signature(
    settings: Settings,
    prefix: str,
    method: str,
    path: str,
    query_string: bytes,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    """The signature the server expects for a request, per ``settings.sign_variant``."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = "&".join(sorted(_enc(k.encode()) + "=" + _enc(v.encode()) for k, v in pairs))
    header_lines = [name + ":" + _enc(headers.get(name, "").strip().encode("latin-1")) for name in signed]
    if settings.sign_variant == "base64":
        canonical = f"{method}\n{path}\n{query}\n{';'.join(signed)}\n"
        canonical += "".join(line + "\n" for line in header_lines) + "\n" + _enc(body)
        key = hmac.new(settings.sk.encode(), prefix.encode(), hashlib.sha256).digest()
        mac = hmac.new(key, canonical.encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode()
    canonical = "\n".join([method, path, query, ";".join(signed), "\n".join(header_lines), _enc(body)])
    key_hex = hmac.new(settings.sk.encode(), prefix.encode(), hashlib.sha256).hexdigest()
    return hmac.new(key_hex.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def check_authorization(settings: Settings, request: Request, body: bytes, now: float) -> str | None:
    """None when the request is signed correctly, else the reason (never a secret)."""
    auth = request.headers.get("authorization")
    if not auth:
        return "Authorization header missing"
    parts = auth.split("/", 4)  # a Base64 signature may itself contain "/"
    if len(parts) != 5 or parts[0] != "auth-v2":
        return "Authorization is not auth-v2/<ak>/<timestamp>/<signedHeaders>/<signature>"
    _, ak, stamp, signed_text, signature = parts
    if not hmac.compare_digest(ak.encode(), settings.ak.encode()):
        return "unknown access key"
    if not _AUTH_TS_RE.fullmatch(stamp):
        return "timestamp is not yyyy-MM-ddTHH:mm:ss.SSSZ"
    try:
        signed_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "timestamp is not a valid date"
    if abs(signed_at - now) > settings.max_skew_s:
        return f"timestamp {stamp} is more than {settings.max_skew_s} s away from the server clock"
    signed = signed_text.split(";")
    if signed != sorted(set(signed)) or any(n != n.lower() for n in signed):
        return "signedHeaders must be lower-case, sorted and unique"
    if not set(signed) >= _REQUIRED_SIGNED:
        return "signedHeaders must include content-length, content-type and host"
    headers = {name: request.headers.get(name, "") for name in signed}
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    prefix = f"auth-v2/{ak}/{stamp}/{signed_text}"
    want = expected_signature(
        settings,
        prefix,
        request.method.upper(),
        path,
        request.scope.get("query_string", b""),
        headers,
        signed,
        body,
    )
    if not hmac.compare_digest(want.encode(), signature.encode()):
        return "signature mismatch"
    return None


# ---------------------------------------------------------------------------------------------
# envelopes


class ISalesError(Exception):
    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def _dumps(payload: object, status_code: int = 200, poison: str | None = None) -> Response:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if poison is not None:
        # Written into the JSON text: a lone surrogate cannot even be encoded as UTF-8 by
        # Python, and a number beyond a double has no Python value to dump.
        if poison == "bignum":
            text = text.replace(f'"{_POISON_TOKEN}"', POISON_VARIANTS[poison])
        else:
            text = text.replace(_POISON_TOKEN, POISON_VARIANTS[poison])
    body = text.encode()
    return Response(body, status_code=status_code, media_type="application/json;charset=UTF-8")


def _poison(record: dict, text_field: str, number_field: str, variant: str) -> dict:
    """A copy of ``record`` marked to carry the poison (see ``_dumps``)."""
    if variant == "bignum":
        return {**record, number_field: _POISON_TOKEN}
    return {**record, text_field: _POISON_TOKEN + str(record.get(text_field) or "")}


def _sorted_within(indices: list[int] | None, lo: int, hi: int) -> list[int]:
    if not indices:
        return []
    return indices[bisect_left(indices, lo) : bisect_left(indices, hi)]


def _physical(first: int, logical: int, gone: list[int]) -> int:
    """The index of the ``logical``-th record from ``first`` when ``gone`` (sorted) are skipped."""
    i = first + logical
    for d in gone:
        if d <= i:
            i += 1
        else:
            break
    return i


def _english(request: Request) -> bool:
    return request.headers.get("locale", "zh_CN").lower().startswith("en")


def _envelope(code: str, detail: str | None, english: bool) -> Response:
    zh, en = CODES[code]
    desc = (en if english else zh) if detail is None else detail
    return _dumps({"returnCode": code, "resultCode": code, "resultDesc": desc, "returnDesc": desc})


def _unauthorized(reason: str) -> Response:
    desc = f"Unauthorized: {reason}"
    return _dumps(
        {"returnCode": "401", "resultCode": "401", "resultDesc": desc, "returnDesc": desc},
        status_code=401,
    )


def _int_param(body: dict, name: str, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ISalesError("02000001", f"{name}: 参数值为空")
        return None
    if isinstance(value, bool):
        raise ISalesError("02000006", f"{name}: 参数值类型不正确")
    if isinstance(value, int):
        return value
    # Jackson coerces numeric strings into int fields
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,10}", value.strip()):
        return int(value)
    raise ISalesError("02000006", f"{name}: 参数值类型不正确")


def _paging(body: dict, max_limit: int) -> tuple[int, int]:
    offset = _int_param(body, "offset")
    limit = _int_param(body, "limit")
    assert offset is not None and limit is not None
    if not 1 <= limit <= max_limit:
        raise ISalesError("02000007", f"limit: 参数值大小不正确,取值范围1~{max_limit}")
    if offset < 0:
        raise ISalesError("02000007", "offset: 参数值大小不正确")
    return offset, limit


def _vdn(settings: Settings, request: Request) -> int:
    text = request.path_params.get("vdnId", "")
    if not re.fullmatch(r"\d{1,4}", text) or not 1 <= int(text) <= 9999:
        raise ISalesError("0200001", f"vdnId is invalid, the value ranges from 1 to 9999: {text[:20]}")
    if int(text) not in settings.vdn_ids:
        raise ISalesError("0200001", f"vdnId {int(text)} does not exist")
    return int(text)


async def _json_body(request: Request) -> tuple[bytes, dict | None]:
    raw = await request.body()
    try:
        parsed = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    return raw, parsed if isinstance(parsed, dict) else None


# ---------------------------------------------------------------------------------------------
# call-log data

# (name, method, url after "/rest/isales/v1/openapi/campaigns/", weight); "{v}" vdn, "{c}" campaign.
# The names other than the sample's queryObsResultDetail and the two seeded endpoints are
# plausible iSales open-API operations, not taken from the seeds.
_OPS: tuple[tuple[str, str, str, int], ...] = (
    ("queryObsResultDetail", "GET", "{v}/{c}/queryObsResultDetail", 14),
    ("createCallData", "POST", "{v}/calldata/{c}", 16),
    ("queryCallDataResult", "POST", "{v}/{c}/queryCallDataResult", 8),
    ("createCampaign", "POST", "{v}", 3),
    ("startCampaign", "POST", "{v}/{c}/start", 4),
    ("pauseCampaign", "POST", "{v}/{c}/pause", 3),
    ("queryCampaignStatus", "GET", "{v}/{c}/status", 6),
    ("addBlackList", "POST", "{v}/blacklist", 3),
    ("queryCalllogs", "POST", "{v}/calllogs", 5),
    ("queryServer", "POST", "{v}/file/queryServer", 2),
)
_OP_TABLE: tuple[int, ...] = tuple(k for k, op in enumerate(_OPS) for _ in range(op[3]))
_URL_ROOT = "/rest/isales/v1/openapi/campaigns/"
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
    "平",
    "刚",
    "桂英",
    "晓东",
    "海燕",
    "建华",
    "志强",
    "婷婷",
    "子涵",
    "浩然",
)
_CAMPAIGN_NAMES = ("信用卡分期回访", "满意度调查", "贷款到期提醒", "新品推广", "会员续费提醒", "账单催缴")
_AREA_CODES = ("010", "021", "020", "0755", "028", "027", "0571", "025", "029", "0532")
_MOBILE_PREFIXES = ("138", "139", "137", "186", "185", "150", "151", "152", "177", "199", "135", "188")
_BAD_CODES = ("02000001", "02000002", "02000003", "02000006", "02000007", "02000008", "02000009")


def _mix(x: int) -> int:
    """splitmix64: a cheap, well-spread 64-bit hash for per-record values."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@lru_cache(maxsize=4096)
def _utc_date(utc_day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=utc_day)).isoformat()


def _phone(h: int) -> str:
    if h & 1:
        return f"{_MOBILE_PREFIXES[(h >> 1) % len(_MOBILE_PREFIXES)]}{(h >> 5) % 100_000_000:08d}"
    return f"{_AREA_CODES[(h >> 1) % len(_AREA_CODES)]}{(h >> 5) % 100_000_000:08d}"


def _name(h: int) -> str:
    return _SURNAMES[h % len(_SURNAMES)] + _GIVEN[(h >> 6) % len(_GIVEN)]


class _Day:
    """Per-(vdn, local day) constants, computed once per request and day."""

    __slots__ = ("d", "start", "salt", "tail_salt", "local_date", "wall_shift")

    def __init__(self, seed: int, vdn: int, d: int, start: int, wall_shift: int) -> None:
        self.d = d
        self.start = start
        self.salt = stable_int(seed, VENDOR, "calllog", vdn, d)
        self.tail_salt = self.salt % _ID_TAIL_MOD
        self.local_date = (date(1970, 1, 1) + timedelta(days=d)).isoformat()
        self.wall_shift = wall_shift


class CallLogs:
    """The call-log audit trail of every VDN, computed per page."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.tz = ZoneInfo(settings.timezone)
        self._days: dict[tuple[int, int], _Day] = {}

    def day_of(self, epoch: int) -> int:
        return datetime.fromtimestamp(epoch, self.tz).date().toordinal() - _EPOCH_ORD

    def day(self, vdn: int, d: int) -> _Day:
        key = (vdn, d)
        found = self._days.get(key)
        if found is None:
            local = date(1970, 1, 1) + timedelta(days=d)
            midnight = datetime(local.year, local.month, local.day, tzinfo=self.tz)
            shift = int(midnight.utcoffset().total_seconds()) if self.s.oper_time_wall_clock else 0
            found = _Day(self.s.seed, vdn, d, int(midnight.timestamp()), shift)
            if len(self._days) > 20_000:
                self._days.clear()
            self._days[key] = found
        return found

    def ranges(self, vdn: int, begin: int, end: int, now: int) -> list[tuple[_Day, int, int]]:
        """(day, first index, end index) of the records with begin <= t <= min(end, now)."""
        volume = self.s.volume
        hi = min(end, now)
        if volume <= 0 or hi < begin:
            return []
        out = []
        # one day early: a DST zone's long day can reach past the next local midnight
        for d in range(self.day_of(begin) - 1, self.day_of(hi) + 1):
            day = self.day(vdn, d)
            a = max(begin - day.start, 0)
            b = min(hi - day.start, DAY_S - 1)
            if a > b:
                continue
            first = -(-a * volume // DAY_S)
            stop = min(-(-(b + 1) * volume // DAY_S), volume)
            if first < stop:
                out.append((day, first, stop))
        return out

    def id_of(self, day: _Day, i: int) -> str:
        t = day.start + i * DAY_S // self.s.volume
        ms = _mix(day.salt + i) % 1000
        return f"{t * 1000 + ms:013d}{(i * _ID_TAIL_STEP + day.tail_salt) % _ID_TAIL_MOD:017d}"

    def deleted(self, ids: frozenset[str]) -> dict[tuple[int, int], list[int]]:
        """Deleted call-log ids as {(vdn, day): sorted indices}, found from the id itself (its
        epoch milliseconds give the day, its tail the index); ids that are not ours are ignored."""
        out: dict[tuple[int, int], list[int]] = {}
        volume = self.s.volume
        for text in ids:
            if len(text) != 30 or not text.isdigit() or volume <= 0:
                continue
            t, tail = int(text[:13]) // 1000, int(text[13:])
            for vdn in self.s.vdn_ids:
                # a short (DST) day's last records fall after the next local midnight
                for d in (self.day_of(t), self.day_of(t) - 1):
                    day = self.day(vdn, d)
                    i = (tail - day.tail_salt) * _ID_TAIL_INVERSE % _ID_TAIL_MOD
                    if i < volume and self.id_of(day, i) == text:
                        out.setdefault((vdn, d), []).append(i)
        for found in out.values():
            found.sort()
        return out

    def op_of(self, h: int) -> int:
        return _OP_TABLE[(h >> 10) % len(_OP_TABLE)]

    def url_of(self, vdn: int, h: int) -> str:
        return _URL_ROOT + _OPS[self.op_of(h)][2].format(v=vdn, c=400 + (h >> 17) % 60)

    def record(self, vdn: int, day: _Day, i: int, drift: bool) -> dict:
        h = _mix(day.salt + i)
        t = day.start + i * DAY_S // self.s.volume
        ms = h % 1000
        k = self.op_of(h)
        name, method, url_tail, _ = _OPS[k]
        c = 400 + (h >> 17) % 60
        url = _URL_ROOT + url_tail.format(v=vdn, c=c)
        request = self._request(k, vdn, c, day, h)
        if (h >> 40) % 100 == 0:
            request = request[: len(request) // 2]  # the log keeps a cut-off body now and then
        roll = (h >> 24) % 1000
        if roll < 25:
            status, code, desc = 500, "0200001", f"{name} failed: internal error"
        elif roll < 85:
            status = 400
            code = _BAD_CODES[(h >> 34) % len(_BAD_CODES)]
            desc = CODES[code][0]
        elif roll < 125:
            status, code = 200, ("0200033" if roll < 115 else "0200034")
            desc = CODES[code][0]
        else:
            status, code, desc = 200, OK, f"{name} success"
        shown = t + day.wall_shift
        if drift:
            oper_time: object = t * 1000 + ms
            try:
                req_value: object = json.loads(request)
            except ValueError:
                req_value = request
        else:
            s = shown % DAY_S
            oper_time = (
                f"{_utc_date(shown // DAY_S)}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000+00:00"
            )
            req_value = request
        return {
            "request": req_value,
            "httpStatus": status,
            "resultCode": code,
            "id": f"{t * 1000 + ms:013d}{(i * _ID_TAIL_STEP + day.tail_salt) % _ID_TAIL_MOD:017d}",
            "resultDesc": desc,
            "url": url,
            "operTime": oper_time,
            "type": method,
        }

    def _request(self, k: int, vdn: int, c: int, day: _Day, h: int) -> str:
        """The call's input parameters, serialised compactly like the sample."""
        g = h >> 20
        name = _OPS[k][0]
        if name == "queryObsResultDetail":
            return f'{{"defId":"{c}","vdnId":{vdn}}}'
        if name == "createCallData":
            return (
                f'{{"campaignId":"{c}","calledNo":"{_phone(g)}","customerName":"{_name(g >> 33)}",'
                f'"priority":{g % 3},"vdnId":{vdn}}}'
            )
        if name == "queryCallDataResult":
            return f'{{"campaignId":"{c}","offset":{(g % 20) * 100},"limit":100,"vdnId":{vdn}}}'
        if name == "createCampaign":
            label = _CAMPAIGN_NAMES[g % len(_CAMPAIGN_NAMES)]
            return (
                f'{{"campaignName":"{label}{c}","beginDate":"{day.local_date}",'
                f'"callerNo":"{_AREA_CODES[g % len(_AREA_CODES)]}{(g >> 8) % 100_000_000:08d}",'
                f'"maxCallTimes":{1 + g % 3},"vdnId":{vdn}}}'
            )
        if name in ("startCampaign", "pauseCampaign", "queryCampaignStatus"):
            return f'{{"campaignId":"{c}","vdnId":{vdn}}}'
        if name == "addBlackList":
            return f'{{"number":"{_phone(g)}","type":{g % 2},"vdnId":{vdn}}}'
        if name == "queryCalllogs":
            return (
                f'{{"offset":{(g % 10) * 100},"limit":100,"beginTime":"{day.local_date} 00:00:00",'
                f'"endTime":"{day.local_date} 23:59:59","url":""}}'
            )
        return f'{{"limit":10,"offset":0,"vdnId":{vdn}}}'

    def page(
        self,
        vdn: int,
        begin: int,
        end: int,
        now: int,
        offset: int,
        limit: int,
        url: str,
        drift: bool,
        deleted: dict[tuple[int, int], list[int]] | None = None,
    ) -> tuple[int, list[dict]]:
        """(window total, records [offset, offset + limit)); the ``deleted`` indices (see
        ``deleted``) are skipped, so the total drops and later offsets shift."""
        deleted = deleted or {}
        ranges = self.ranges(vdn, begin, end, now)
        if url:
            return self._filtered_page(vdn, ranges, offset, limit, url, drift, deleted)
        gone = [_sorted_within(deleted.get((vdn, day.d)), first, stop) for day, first, stop in ranges]
        total = sum(stop - first - len(g) for (_, first, stop), g in zip(ranges, gone, strict=True))
        out: list[dict] = []
        skip = offset
        for (day, first, stop), g in zip(ranges, gone, strict=True):
            n = stop - first - len(g)
            if skip >= n:
                skip -= n
                continue
            i = _physical(first, skip, g)
            skip = 0
            if not g:
                out.extend(self.record(vdn, day, j, drift) for j in range(i, min(stop, i + limit - len(out))))
            skipped = set(g)
            while g and i < stop and len(out) < limit:
                if i not in skipped:
                    out.append(self.record(vdn, day, i, drift))
                i += 1
            if len(out) >= limit:
                break
        return total, out

    def _filtered_page(
        self,
        vdn: int,
        ranges: list[tuple[_Day, int, int]],
        offset: int,
        limit: int,
        url: str,
        drift: bool,
        deleted: dict[tuple[int, int], list[int]],
    ) -> tuple[int, list[dict]]:
        # the url filter has no arithmetic shortcut: scan the window (the pipeline never uses it)
        total = 0
        out: list[dict] = []
        for day, first, stop in ranges:
            skipped = set(deleted.get((vdn, day.d), ()))
            for i in range(first, stop):
                if i in skipped or self.url_of(vdn, _mix(day.salt + i)) != url:
                    continue
                if offset <= total < offset + limit:
                    out.append(self.record(vdn, day, i, drift))
                total += 1
        return total, out


# ---------------------------------------------------------------------------------------------
# file servers

_PORTS = ("22", "22", "22", "8888", "2222", "21")
_PATHS = ("/home/sftp", "/home/sftp", "/sftp/file", "/data/isales/import", "/opt/obs/files")
_USERS = ("isales", "huawei", "zhangsan", "sftpuser", "obsadmin", "lisi")


@lru_cache(maxsize=1024)
def _server(seed: int, vdn: int, k: int) -> dict:
    r = rng(seed, VENDOR, "server", vdn, k)
    # ids start with the creation time in epoch ms, as the sample's 1646819249970... do
    created_ms = 1_646_800_000_000 + k * 4_000_000_000 + r.randrange(3_000_000_000)
    server_id = f"{created_ms:013d}{r.randrange(_ID_TAIL_MOD):017d}"
    if k % 5 == 0:  # like the sample's first server: a placeholder with no address
        return {
            "port": None,
            "ip": None,
            "filePath": None,
            "userName": str(r.randrange(1, 100)),
            "serverId": server_id,
        }
    ip = (
        f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        if r.random() < 0.6
        else f"192.168.{r.randrange(256)}.{r.randrange(1, 255)}"
    )
    return {
        "port": r.choice(_PORTS),
        "ip": ip,
        "filePath": r.choice(_PATHS),
        "userName": r.choice(_USERS),
        "serverId": server_id,
    }


def file_servers(settings: Settings, vdn: int, deleted: frozenset[str] = frozenset()) -> list[dict]:
    """The VDN's servers in creation order, without the removed (or deleted) ones."""
    servers = [_server(settings.seed, vdn, k) for k in range(settings.file_servers_per_vdn)]
    return [
        s
        for s in servers
        if s["serverId"] not in settings.removed_server_ids and s["serverId"] not in deleted
    ]


# ---------------------------------------------------------------------------------------------
# app


def _parse_time(body: dict, name: str, tz: ZoneInfo) -> int:
    value = body.get(name)
    if value is None or value == "":
        raise ISalesError("02000001", f"{name}: 参数值为空")
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise ISalesError("02000006", f"{name}: 参数值类型不正确,格式为yyyy-MM-dd HH:mm:ss")
    try:
        naive = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ISalesError("02000006", f"{name}: 参数值类型不正确,格式为yyyy-MM-dd HH:mm:ss") from None
    return int(naive.replace(tzinfo=tz).timestamp())


def build_app(settings: Settings, state: SimState) -> Starlette:
    s = settings
    if s.sign_variant not in ("hex", "base64"):
        raise ValueError(f"isales sign_variant must be 'hex' or 'base64', got {s.sign_variant!r}")
    if s.volume < 0:
        raise ValueError(f"isales volume must be >= 0, got {s.volume}")
    logs = CallLogs(s)

    async def authorize(request: Request) -> tuple[bytes, dict | None, Response | None]:
        raw, body = await _json_body(request)
        reason = check_authorization(s, request, raw, state.clock.auth_now())
        return raw, body, (_unauthorized(reason) if reason else None)

    async def calllogs(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            _, body, denied = await authorize(request)
            if denied is not None:
                return denied
            english = _english(request)
            try:
                vdn = _vdn(s, request)
                if fault is not None and fault.mode == "envelope":
                    raise ISalesError("0200033")
                if body is None:
                    raise ISalesError("02000008")
                offset, limit = _paging(body, s.max_limit)
                begin = _parse_time(body, "beginTime", logs.tz)
                end = _parse_time(body, "endTime", logs.tz)
                if begin > end:
                    raise ISalesError("0200001", "beginTime must not be later than endTime")
                if end - begin > s.max_window_days * DAY_S:
                    raise ISalesError(
                        "0200001",
                        f"结束时间和开始时间间隔不大于{s.max_window_days}天 "
                        f"(endTime - beginTime must not exceed {s.max_window_days} days)",
                    )
                url = body.get("url") or ""
                if not isinstance(url, str):
                    raise ISalesError("02000006", "url: 参数值类型不正确")
            except ISalesError as exc:
                return _envelope(exc.code, exc.detail, english)
            drift = fault is not None and fault.mode == "drift"
            deleted = logs.deleted(state.deleted_ids(VENDOR))
            total, records = logs.page(
                vdn, begin, end, int(state.clock.now()), offset, limit, url, drift, deleted
            )
            poison = None
            if fault is not None and fault.mode == "empty":
                total, records = 0, []
            if fault is not None and fault.mode == "poison" and records:
                poison = fault.variant
                records[0] = _poison(records[0], "resultDesc", "httpStatus", poison)
            return _dumps(
                {
                    "result": records,
                    "returnCode": OK,
                    "resultCode": OK,
                    "count": total,
                    "resultDesc": "queryCalllogs success",
                    "returnDesc": "queryCalllogs success",
                },
                poison=poison,
            )

        return await serve(state, VENDOR, CALLLOGS, request, handle)

    async def query_server(request: Request) -> Response:
        async def handle(request: Request, fault: Fault | None) -> Response:
            _, body, denied = await authorize(request)
            if denied is not None:
                return denied
            english = _english(request)
            try:
                vdn = _vdn(s, request)
                if fault is not None and fault.mode == "envelope":
                    raise ISalesError("0200033")
                if body is None:
                    raise ISalesError("02000008")
                offset, limit = _paging(body, s.max_limit)
                ids = body.get("serverIds")
                if ids is not None:
                    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                        raise ISalesError("02000006", "serverIds: 参数值类型不正确")
                    if len(ids) > s.max_limit:
                        raise ISalesError("02000011", f"serverIds: 参数个数不能大于{s.max_limit}")
            except ISalesError as exc:
                return _envelope(exc.code, exc.detail, english)
            servers = file_servers(s, vdn, state.deleted_ids(VENDOR))
            if fault is not None and fault.mode == "empty":
                servers = []
            if ids:
                wanted = set(ids)
                servers = [x for x in servers if x["serverId"] in wanted]
            page = servers[offset : offset + limit]
            if fault is not None and fault.mode == "drift":
                page = [
                    {
                        "port": int(x["port"]) if x["port"] is not None else None,
                        "ip": x["ip"],
                        "filePath": x["filePath"],
                        "userName": x["userName"],
                        "serverID": x["serverId"],
                    }
                    for x in page
                ]
            poison = None
            if fault is not None and fault.mode == "poison" and page:
                poison = fault.variant
                page = [_poison(page[0], "userName", "port", poison), *page[1:]]
            payload: dict[str, object] = {"returnCode": OK, "server": page}
            if s.file_server_count:
                payload["count"] = len(servers)
            payload.update(resultCode=OK, resultDesc="success", returnDesc="success")
            return _dumps(payload, poison=poison)

        return await serve(state, VENDOR, QUERY_SERVER, request, handle)

    return Starlette(
        routes=[
            Route(CALLLOGS, calllogs, methods=["POST"]),
            Route(QUERY_SERVER, query_server, methods=["POST"]),
        ]
    )
