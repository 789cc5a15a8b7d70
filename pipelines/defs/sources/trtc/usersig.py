"""TLSSigAPIv2 UserSig for the TRTC / IM REST API (pipelines/defs/sources/trtc/README.md, "Authentication").

A few lines instead of the official ``tls-sig-api-v2`` package, which reads the wall clock
itself and cannot be given a time; tests compare both byte for byte. The official code
serialises with ``json.dumps`` default separators and ``zlib.compress`` default level, and
the key order below is its insertion order: all three matter for byte equality.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import zlib

_TO_URL = str.maketrans({"+": "*", "/": "-", "=": "_"})
_FROM_URL = str.maketrans({"*": "+", "-": "/", "_": "="})


def gen_usersig(
    sdkappid: int, key: str, identifier: str, expire_s: int = 86400, now: int | None = None
) -> str:
    """The UserSig of ``identifier``, valid from ``now`` (default: the wall clock) for
    ``expire_s`` seconds."""
    t = int(time.time()) if now is None else int(now)
    content = f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{t}\nTLS.expire:{expire_s}\n"
    digest = hmac.new(key.encode(), content.encode(), hashlib.sha256).digest()
    doc = {
        "TLS.ver": "2.0",
        "TLS.identifier": str(identifier),
        "TLS.sdkappid": int(sdkappid),
        "TLS.expire": int(expire_s),
        "TLS.time": t,
        "TLS.sig": base64.b64encode(digest).decode(),
    }
    compressed = zlib.compress(json.dumps(doc).encode())
    return base64.b64encode(compressed).decode().translate(_TO_URL)


def decode_usersig(sig: str) -> dict:
    """The JSON document inside a UserSig (raises ValueError / zlib.error when it is not one)."""
    return json.loads(zlib.decompress(base64.b64decode(sig.translate(_FROM_URL))))


def fresh_random() -> int:
    """The per-request ``random`` query parameter: an unsigned 32-bit integer."""
    return secrets.randbelow(2**32)
