"""The push-log signer against Alibaba Cloud's own V3 implementation
(``alibabacloud_tea_openapi.utils.Utils.get_authorization``, what ``Client.do_request`` calls)."""

from __future__ import annotations

import hashlib
import itertools

import httpx
import pytest
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from pipelines.defs.sources.pushlog.signing import AcsV3Auth

AK_ID = "LTAI-test-access-key-id"
AK_SECRET = "test-secret-do-not-leak-0123456789"
NOW = 1774822134.0  # 2026-03-29T22:08:54Z
HOST = "dyvmsapi.aliyuncs.com"


def _signed(
    query: dict[str, str], nonce: str, content: bytes = b"", headers: dict | None = None
) -> httpx.Request:
    auth = AcsV3Auth(AK_ID, AK_SECRET, clock=lambda: NOW, nonce=lambda: nonce)
    request = httpx.Request("POST", f"https://{HOST}/", params=query, content=content, headers=headers)
    flow = auth.auth_flow(request)
    return next(flow)


def _official(request: httpx.Request, query: dict[str, str], payload_hex: str) -> str:
    dara = DaraRequest()
    dara.method = "POST"
    dara.pathname = "/"
    dara.query = dict(query)
    names = ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"]
    names += ["x-acs-content-sha256"] + (["content-type"] if "content-type" in request.headers else [])
    dara.headers = {n: request.headers[n] for n in names}
    return Utils.get_authorization(dara, "ACS3-HMAC-SHA256", payload_hex, AK_ID, AK_SECRET)


CASES = [
    {"EnterpriseId": "7122600", "StartTime": "2026-03-01 00:00:00", "EndTime": "2026-03-31 23:59:59"},
    {
        "EnterpriseId": "7122600",
        "StartTime": "2026-03-01 00:00:00",
        "EndTime": "2026-03-31 23:59:59",
        "Start": "500",
        "Limit": "500",
        "Type": "9",
        "Result": "1",
        "Retry": "-2",
    },
    {"EnterpriseId": "7122600", "Url": "https://www.aaa.com/index.htm?a=1&b=中文 值*~/", "Limit": "10"},
    {"EnterpriseId": "7000002", "Url": "来电推送 (webcall) *~/+%&=", "Start": "0", "Empty": ""},
]


@pytest.mark.parametrize("query", CASES)
def test_signature_matches_official_sdk(query: dict[str, str]) -> None:
    request = _signed(query, nonce="3f1c0b2a9d8e4f5aa1b2c3d4e5f60718")
    assert request.url.params.multi_items() == list(query.items())
    empty_hash = hashlib.sha256(b"").hexdigest()
    assert request.headers["x-acs-content-sha256"] == empty_hash
    assert request.headers["x-acs-date"] == "2026-03-29T22:08:54Z"
    assert request.headers["x-acs-action"] == "CloudListCurlLog"
    assert request.headers["x-acs-version"] == "2017-05-25"
    assert request.headers["Authorization"] == _official(request, query, empty_hash)
    assert request.headers["Authorization"].startswith(
        f"ACS3-HMAC-SHA256 Credential={AK_ID},SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
        "x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="
    )


def test_form_body_is_hashed_and_content_type_signed() -> None:
    body = b"EnterpriseId=7122600&Url=a%20b"
    query = {"Limit": "10"}
    request = _signed(
        query, nonce="n-1", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    payload = hashlib.sha256(body).hexdigest()
    assert request.headers["x-acs-content-sha256"] == payload
    assert "content-type" in request.headers["Authorization"]
    assert request.headers["Authorization"] == _official(request, query, payload)


def test_signature_changes_with_any_input() -> None:
    base = _signed(CASES[0], nonce="n")
    other_value = _signed({**CASES[0], "EnterpriseId": "7122601"}, nonce="n")
    other_nonce = _signed(CASES[0], nonce="m")
    sigs = {r.headers["Authorization"] for r in (base, other_value, other_nonce)}
    assert len(sigs) == 3


def test_nonce_is_fresh_per_request_and_per_retry() -> None:
    auth = AcsV3Auth(AK_ID, AK_SECRET)
    seen = []
    for _ in range(3):
        request = httpx.Request("POST", f"https://{HOST}/", params=CASES[0])
        seen.append(next(auth.auth_flow(request)).headers["x-acs-signature-nonce"])
    assert len(set(seen)) == 3
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in seen)

    calls = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-acs-signature-nonce"])
        return httpx.Response(200, json={"Code": "OK", "n": next(calls)})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.post(f"https://{HOST}/", params=CASES[0])
        client.post(f"https://{HOST}/", params=CASES[0])
    assert len(set(seen)) == 5


def test_secret_never_in_text() -> None:
    auth = AcsV3Auth(AK_ID, AK_SECRET)
    assert AK_SECRET not in repr(auth) and AK_SECRET not in str(auth)
    assert AK_SECRET not in repr(vars(auth))
    request = next(auth.auth_flow(httpx.Request("POST", f"https://{HOST}/", params=CASES[0])))
    assert AK_SECRET not in str(request.headers)
    with pytest.raises(ValueError) as err:
        AcsV3Auth(AK_ID, "")
    assert AK_SECRET not in str(err.value)
