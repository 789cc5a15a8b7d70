"""The iSales C2 ``auth-v2`` signer: pinned vectors, an independent reference, the httpx auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import urllib.parse
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from pipelines.defs.sources.isales.signing import (
    ISalesAuth,
    authorization,
    canonical_request,
    format_timestamp,
    percent_encode,
)

AK = "globalaktest"  # the Java demo's sample AK
SK = "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p"  # the public ports' sample SK
TS = datetime(2024, 10, 31, 14, 6, 52, 123000, tzinfo=UTC)
PING_HEADERS = {
    "Host": "10.22.26.181:28080",
    "Content-Length": "23",
    "Content-Type": "application/json;charset=UTF-8",
}
PING_BODY = b'{"say": "Hello world!"}'
CALLLOGS_BODY = (
    '{"limit":100,"offset":0,"beginTime":"2025-11-17 00:00:00","endTime":"2025-11-23 23:59:59",'
    '"url":"","note":"中文 ~"}'
).encode()
CALLLOGS_HEADERS = {
    "host": "isales.example.com",
    "content-length": str(len(CALLLOGS_BODY)),
    "content-type": "application/json; charset=UTF-8",
}
CALLLOGS_PATH = "/isales/rest/isales/v1/openapi/campaigns/2/calllogs"
PREFIX = "auth-v2/globalaktest/2024-10-31T14:06:52.123Z/content-length;content-type;host/"


# --- an independent reference, written the way the public ports are (strings, urllib.quote) ----


def _ref_normalize(value: str) -> str:
    return urllib.parse.quote(value, safe="-._~")


def _ref_authorization(ak, sk, method, uri, query, headers, payload: str, ts: str, variant: str) -> str:
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    names = sorted(signed)
    signed_str = ";".join(names)
    kvs = sorted(f"{_ref_normalize(k)}={_ref_normalize(v)}" for k, v in (query or {}).items())
    lines = [method.upper(), uri, "&".join(kvs), signed_str]
    prefix = f"auth-v2/{ak}/{ts}/{signed_str}"
    if variant == "hex":
        lines.append("\n".join(f"{n}:{_ref_normalize(signed[n])}" for n in names))
        lines.append(_ref_normalize(payload) if payload else "")
        canonical = "\n".join(lines)
        key = hmac.new(sk.encode(), prefix.encode(), hashlib.sha256).hexdigest()
        sig = hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    else:
        canonical = "".join(line + "\n" for line in lines)
        canonical += "".join(f"{n}:{_ref_normalize(signed[n])}\n" for n in names) + "\n"
        canonical += _ref_normalize(payload)
        key_raw = hmac.new(sk.encode(), prefix.encode(), hashlib.sha256).digest()
        sig = base64.b64encode(hmac.new(key_raw, canonical.encode(), hashlib.sha256).digest()).decode()
    return f"{prefix}/{sig}"


# --- pinned vectors: a change of the scheme must change one of these literals --------------------


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("hex", PREFIX + "2c950f37982a7f5a25b633a7262cd2b05a3c2385a7699fdf579615adf283a49d"),
        ("base64", PREFIX + "2J5gldEO2RoU42qUQjwv2eRyYFaeMrY3a3lkLwBS040="),
    ],
)
def test_ping_vector(variant: str, expected: str) -> None:
    got = authorization(AK, SK, "POST", "/rest/cmsapp/v1/ping", None, PING_HEADERS, PING_BODY, TS, variant)
    assert got == expected
    ref = _ref_authorization(
        AK,
        SK,
        "POST",
        "/rest/cmsapp/v1/ping",
        None,
        PING_HEADERS,
        PING_BODY.decode(),
        format_timestamp(TS),
        variant,
    )
    assert got == ref


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("hex", PREFIX + "d235a8fe3a7411164b51ec3aa40e58a6f17a85676d6cbc4a175c01b27696f0b0"),
        ("base64", PREFIX + "x7SclrNK7AKkc/6MKtyEjUAKVThb+z0VGjkMQyjt/pg="),
    ],
)
def test_calllogs_vector_with_query_and_non_ascii(variant: str, expected: str) -> None:
    query = {"b": "x y", "a": "1/2"}
    got = authorization(
        AK,
        "sim-secret-0123456789",
        "POST",
        CALLLOGS_PATH,
        query,
        CALLLOGS_HEADERS,
        CALLLOGS_BODY,
        TS,
        variant,
    )
    assert got == expected
    ref = _ref_authorization(
        AK,
        "sim-secret-0123456789",
        "POST",
        CALLLOGS_PATH,
        query,
        CALLLOGS_HEADERS,
        CALLLOGS_BODY.decode(),
        format_timestamp(TS),
        variant,
    )
    assert got == ref


def test_canonical_request_layout() -> None:
    hex_text = canonical_request("post", "/p", None, PING_HEADERS, b'{"a": 1}', "hex")
    assert hex_text == (
        "POST\n/p\n\ncontent-length;content-type;host\n"
        "content-length:23\ncontent-type:application%2Fjson%3Bcharset%3DUTF-8\nhost:10.22.26.181%3A28080\n"
        "%7B%22a%22%3A%201%7D"
    )
    b64_text = canonical_request("POST", "/p", None, PING_HEADERS, b'{"a": 1}', "base64")
    assert b64_text == hex_text.replace("28080\n%7B", "28080\n\n%7B")
    assert not hex_text.endswith("\n")


def test_header_values_are_trimmed_and_names_case_insensitive() -> None:
    messy = {
        "HOST": "  10.22.26.181:28080 ",
        "content-LENGTH": "23",
        "Content-Type": "application/json;charset=UTF-8",
    }
    assert authorization(AK, SK, "POST", "/x", None, messy, PING_BODY, TS) == authorization(
        AK, SK, "POST", "/x", None, PING_HEADERS, PING_BODY, TS
    )


def test_randomised_against_reference() -> None:
    r = random.Random(3)
    alphabet = 'abcXYZ019 -._~/?&=+%中文"{}:,'
    for _ in range(200):
        body = "".join(r.choice(alphabet) for _ in range(r.randrange(0, 40)))
        query = {f"k{j}{r.choice('ab-_')}": "".join(r.choice(alphabet) for _ in range(5)) for j in range(3)}
        headers = {"host": "h.example:8443", "content-type": r.choice(["application/json", "a; b=c"])}
        headers["content-length"] = str(len(body.encode()))
        variant = r.choice(["hex", "base64"])
        got = authorization(AK, SK, "POST", "/a/b", query, headers, body.encode(), TS, variant)
        assert got == _ref_authorization(
            AK, SK, "POST", "/a/b", query, headers, body, format_timestamp(TS), variant
        )


def test_body_and_every_signed_part_change_the_signature() -> None:
    base = authorization(AK, SK, "POST", "/x", None, PING_HEADERS, PING_BODY, TS)
    assert authorization(AK, SK, "POST", "/x", None, PING_HEADERS, PING_BODY + b" ", TS) != base
    assert authorization(AK, SK, "POST", "/y", None, PING_HEADERS, PING_BODY, TS) != base
    assert authorization(AK, SK, "GET", "/x", None, PING_HEADERS, PING_BODY, TS) != base
    assert authorization(AK, SK, "POST", "/x", {"a": "1"}, PING_HEADERS, PING_BODY, TS) != base
    assert authorization(AK, SK + "x", "POST", "/x", None, PING_HEADERS, PING_BODY, TS) != base
    other_host = {**PING_HEADERS, "Host": "10.22.26.181"}
    assert authorization(AK, SK, "POST", "/x", None, other_host, PING_BODY, TS) != base
    later = TS + timedelta(milliseconds=1)
    assert authorization(AK, SK, "POST", "/x", None, PING_HEADERS, PING_BODY, later) != base


def test_percent_encoding_keeps_only_unreserved() -> None:
    assert percent_encode("aZ09-._~") == "aZ09-._~"
    assert percent_encode("a b/c:d;e=f+g*h") == "a%20b%2Fc%3Ad%3Be%3Df%2Bg%2Ah"
    assert percent_encode("中") == "%E4%B8%AD"
    assert percent_encode(b"\xff\x00") == "%FF%00"


def test_timestamp_format() -> None:
    assert format_timestamp(TS) == "2024-10-31T14:06:52.123Z"
    shanghai = datetime(2024, 10, 31, 22, 6, 52, 123999, tzinfo=timezone(timedelta(hours=8)))
    assert format_timestamp(shanghai) == "2024-10-31T14:06:52.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 10, 31, 14, 6, 52))


def test_errors_never_show_the_secret() -> None:
    secret = "do-not-leak-this-secret"
    with pytest.raises(ValueError) as excinfo:
        authorization(AK, secret, "POST", "/x", None, {"host": "h"}, b"", TS)
    assert "content-length" in str(excinfo.value)
    assert secret not in str(excinfo.value)
    with pytest.raises(ValueError) as excinfo:
        authorization(AK, secret, "POST", "/x", None, PING_HEADERS, b"", TS, "md5")  # type: ignore[arg-type]
    assert secret not in str(excinfo.value)
    with pytest.raises(ValueError) as excinfo:
        ISalesAuth(AK, secret, variant="sha1")  # type: ignore[arg-type]
    assert secret not in str(excinfo.value)
    auth = ISalesAuth(AK, secret)
    assert secret not in repr(auth)
    assert secret not in str(auth)
    assert AK in repr(auth)


# --- ISalesAuth on real httpx requests -----------------------------------------------------------


def _send(url: str, auth: ISalesAuth, **kwargs: object) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post(url, auth=auth, **kwargs)
    return seen[0]


def _verify(request: httpx.Request, sk: str, variant: str = "hex") -> None:
    """Re-sign what was sent on the wire with the reference and compare."""
    auth = request.headers["Authorization"]
    ts = auth.split("/")[2]
    headers = {n: request.headers[n] for n in ("content-length", "content-type", "host")}
    path = request.url.raw_path.decode().split("?")[0]
    query = dict(request.url.params)
    expected = _ref_authorization(AK, sk, "POST", path, query, headers, request.content.decode(), ts, variant)
    assert auth == expected


@pytest.mark.parametrize("variant", ["hex", "base64"])
def test_auth_signs_what_is_sent(variant: str) -> None:
    auth = ISalesAuth(AK, SK, variant=variant, clock=lambda: TS)  # type: ignore[arg-type]
    req = _send(
        "https://isales.example.com:28080/isales/rest/isales/v1/openapi/campaigns/2/calllogs?x=a%20b",
        auth,
        content=CALLLOGS_BODY,
    )
    assert req.headers["Content-Length"] == str(len(CALLLOGS_BODY))
    assert req.headers["Host"] == "isales.example.com:28080"
    assert req.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert req.headers["Authorization"].startswith(PREFIX)
    _verify(req, SK, variant)


def test_auth_host_without_default_port_and_keeps_given_content_type() -> None:
    auth = ISalesAuth(AK, SK, clock=lambda: TS)
    req = _send(
        "https://isales.example.com:443/p",
        auth,
        content=b"{}",
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    assert req.headers["Host"] == "isales.example.com"
    assert req.headers["Content-Type"] == "application/json;charset=UTF-8"
    _verify(req, SK)


def test_auth_streamed_body_gets_a_content_length() -> None:
    def chunks():
        yield b'{"limit":10,'
        yield b'"offset":0}'

    auth = ISalesAuth(AK, SK, clock=lambda: TS)
    req = _send("http://127.0.0.1:8765/isales/x", auth, content=chunks())
    assert "Transfer-Encoding" not in req.headers
    assert req.headers["Content-Length"] == str(len(b'{"limit":10,"offset":0}'))
    assert req.content == b'{"limit":10,"offset":0}'
    _verify(req, SK)


def test_auth_uses_the_clock_per_request() -> None:
    times = iter([TS, TS + timedelta(seconds=1)])
    auth = ISalesAuth(AK, SK, clock=lambda: next(times))
    first = _send("http://h/x", auth, content=b"{}").headers["Authorization"]
    second = _send("http://h/x", auth, content=b"{}").headers["Authorization"]
    assert "2024-10-31T14:06:52.123Z" in first
    assert "2024-10-31T14:06:53.123Z" in second
