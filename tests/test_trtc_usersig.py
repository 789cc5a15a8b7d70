"""Our UserSig generator against Tencent's official ``tls-sig-api-v2`` package, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
from types import SimpleNamespace

import pytest
import TLSSigAPIv2

from pipelines.defs.sources.trtc.usersig import decode_usersig, fresh_random, gen_usersig

KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"


def official(
    monkeypatch: pytest.MonkeyPatch, sdkappid: int, key: str, identifier: str, expire: int, now: int
) -> str:
    # the official code reads time.time() itself: pin its clock to ours
    monkeypatch.setattr(TLSSigAPIv2, "time", SimpleNamespace(time=lambda: now + 0.75))
    return TLSSigAPIv2.TLSSigAPIv2(sdkappid, key).gen_sig(identifier, expire)


@pytest.mark.parametrize(
    ("sdkappid", "key", "identifier", "expire", "now"),
    [
        (1400000000, KEY, "administrator", 86400, 1_763_600_000),
        (88888888, "sim-trtc-secret-key", "admin", 180 * 86400, 1_618_705_638),
        (1400000001, "k", "用户_01", 5, 1),
    ],
)
def test_matches_official_package(monkeypatch, sdkappid, key, identifier, expire, now):
    ours = gen_usersig(sdkappid, key, identifier, expire_s=expire, now=now)
    assert ours == official(monkeypatch, sdkappid, key, identifier, expire, now)


def test_decode_roundtrip_and_signature():
    sig = gen_usersig(1400000001, "secret", "administrator", expire_s=600, now=1_700_000_000)
    assert set(sig) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-_")
    doc = decode_usersig(sig)
    assert list(doc) == ["TLS.ver", "TLS.identifier", "TLS.sdkappid", "TLS.expire", "TLS.time", "TLS.sig"]
    assert doc["TLS.ver"] == "2.0"
    assert (doc["TLS.identifier"], doc["TLS.sdkappid"]) == ("administrator", 1400000001)
    assert (doc["TLS.time"], doc["TLS.expire"]) == (1_700_000_000, 600)
    content = "TLS.identifier:administrator\nTLS.sdkappid:1400000001\nTLS.time:1700000000\nTLS.expire:600\n"
    mac = hmac.new(b"secret", content.encode(), hashlib.sha256).digest()
    assert doc["TLS.sig"] == base64.b64encode(mac).decode()


def test_default_time_is_wall_clock(monkeypatch):
    import pipelines.defs.sources.trtc.usersig as mod

    monkeypatch.setattr(mod, "time", SimpleNamespace(time=lambda: 1_234_567_890.9))
    assert decode_usersig(gen_usersig(1, "k", "a"))["TLS.time"] == 1_234_567_890


def test_other_key_other_sig():
    a = gen_usersig(1400000001, "k1", "administrator", now=1_700_000_000)
    b = gen_usersig(1400000001, "k2", "administrator", now=1_700_000_000)
    assert decode_usersig(a)["TLS.sig"] != decode_usersig(b)["TLS.sig"]


def test_fresh_random_is_uint32_and_varies():
    values = {fresh_random() for _ in range(200)}
    assert all(0 <= v < 2**32 for v in values)
    assert len(values) > 190
