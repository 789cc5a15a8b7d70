"""Huawei CC-iSales request signing: the "C2" AK/SK ``auth-v2`` scheme.

The official description ("C2 监控/系统外呼/话单/知识库类接口鉴权方式") is not reachable from
here; this module follows public ports of Huawei's Java demo (sample AK ``globalaktest``, test
endpoint ``/rest/cmsapp/v1/ping``), found in the public code index:

* two ports in Python and Go (Portuguese comments, "equivalente ao SignerUtils.sha256Hex do
  Java") that mirror the demo's ``sha256Hex`` helper -> ``variant="hex"`` (the default);
* a port published as a Python and a Go file with identical structure, which uses raw HMAC bytes
  and Base64 -> ``variant="base64"``.

The scheme (both variants)::

    prefix        = "auth-v2/" + AK + "/" + timestamp + "/" + signedHeaders
    timestamp     = UTC "yyyy-MM-ddTHH:mm:ss.SSSZ"
    signedHeaders = "content-length;content-type;host"   (lower-case, sorted, ";"-joined)
    Authorization = prefix + "/" + signature

``hex``:   signingKey = hex(HMAC-SHA256(SK, prefix)), and that 64-character *string* (its UTF-8
bytes) is the HMAC key of signature = hex(HMAC-SHA256(signingKey, canonicalRequest)), where
canonicalRequest is the lines METHOD, URI, canonical query (empty line when none), signedHeaders,
the canonical headers (``name:enc(trimmed value)``, sorted by name, one per line) and enc(body),
joined by ``\\n`` with no trailing newline.

``base64``: signingKey = the raw 32 HMAC bytes, signature = Base64(HMAC-SHA256(signingKey,
canonicalRequest)); canonicalRequest ends each canonical header with ``\\n`` and adds one more
``\\n`` (a blank line) before enc(body).

``enc`` percent-encodes every byte of the UTF-8 text except ``A-Z a-z 0-9 - . _ ~``, with
upper-case hex digits (so a space is ``%20``). The body is encoded from the exact bytes sent.

Where the ports disagree, and what this module does:

* key/signature encoding and the header block's trailing newlines: the two variants above;
* percent-encoding: the hex Go port encodes a non-ASCII character as ``%`` + its code point
  (``中`` -> ``%4E2D``) and the base64 Go port uses ``url.QueryEscape`` (space -> ``+``); we
  follow the two Python ports (UTF-8 bytes, space -> ``%20``), which is also what the Java
  demo's ``URLEncoder`` + ``%20`` normalisation produces;
* query ordering: the hex ports sort the encoded ``k=v`` strings, the base64 Python port sorts
  (key, value) pairs, the base64 Go port sorts raw keys; we sort the encoded ``k=v`` strings
  (they only differ for keys that are prefixes of others; the iSales endpoints take no query);
* the ports send ``application/json;charset=UTF-8`` while the seed documents
  ``application/json; charset=UTF-8``: either is fine, because the value that is sent is the
  value that is signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote_from_bytes

import httpx

Variant = Literal["hex", "base64"]
VARIANTS: tuple[str, ...] = ("hex", "base64")
SIGNED_HEADERS: tuple[str, ...] = ("content-length", "content-type", "host")
CONTENT_TYPE = "application/json; charset=UTF-8"
AUTH_VERSION = "auth-v2"


def percent_encode(value: str | bytes) -> str:
    """Percent-encode everything but ``A-Z a-z 0-9 - . _ ~`` (UTF-8 bytes, upper-case hex)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    # quote_from_bytes always keeps exactly the RFC 3986 unreserved set; safe="" drops "/".
    return quote_from_bytes(raw, safe="")


def format_timestamp(timestamp: datetime) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC. A naive datetime is refused: it is ambiguous."""
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("iSales signing needs a timezone-aware timestamp")
    utc = timestamp.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def canonical_query(query: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> str:
    if not query:
        return ""
    items = query.items() if isinstance(query, Mapping) else query
    return "&".join(sorted(f"{percent_encode(k)}={percent_encode(v)}" for k, v in items))


def canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    headers: Mapping[str, str],
    body: bytes,
    variant: Variant = "hex",
    signed_headers: Iterable[str] = SIGNED_HEADERS,
) -> str:
    """The text that is HMAC-ed. ``headers`` may use any case; only ``signed_headers`` count."""
    lowered = {k.lower(): v for k, v in headers.items()}
    names = sorted({h.lower() for h in signed_headers})
    missing = [n for n in names if n not in lowered]
    if missing:
        raise ValueError(f"iSales signing: header(s) {', '.join(missing)} missing from the request")
    header_lines = [f"{percent_encode(n)}:{percent_encode(str(lowered[n]).strip())}" for n in names]
    lines = [method.upper(), path, canonical_query(query), ";".join(names), "\n".join(header_lines)]
    if variant == "base64":
        lines.append("")  # the third port's blank line after the header block
    lines.append(percent_encode(body))
    return "\n".join(lines)


def authorization(
    ak: str,
    sk: str,
    method: str,
    path: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    headers: Mapping[str, str],
    body: bytes,
    timestamp: datetime,
    variant: Variant = "hex",
    signed_headers: Iterable[str] = SIGNED_HEADERS,
) -> str:
    """The ``Authorization`` header value for one request.

    ``path`` is the URI path exactly as sent (base-URL prefix included, no query string);
    ``headers`` must hold every signed header with the value that is sent; ``body`` is the exact
    bytes sent. Errors never include ``sk``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown iSales signing variant {variant!r} (expected 'hex' or 'base64')")
    if not isinstance(sk, str) or not sk:
        raise ValueError("iSales secret key (SK) is empty or not a string")
    if not ak or "/" in ak:
        raise ValueError("iSales access key (AK) is empty or contains '/'")
    names = ";".join(sorted({h.lower() for h in signed_headers}))
    prefix = f"{AUTH_VERSION}/{ak}/{format_timestamp(timestamp)}/{names}"
    text = canonical_request(method, path, query, headers, body, variant, signed_headers).encode("utf-8")
    if variant == "hex":
        signing_key = hmac.new(sk.encode("utf-8"), prefix.encode("utf-8"), hashlib.sha256).hexdigest()
        signature = hmac.new(signing_key.encode("ascii"), text, hashlib.sha256).hexdigest()
    else:
        raw_key = hmac.new(sk.encode("utf-8"), prefix.encode("utf-8"), hashlib.sha256).digest()
        signature = base64.b64encode(hmac.new(raw_key, text, hashlib.sha256).digest()).decode("ascii")
    return f"{prefix}/{signature}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ISalesAuth(httpx.Auth):
    """httpx auth that signs every request with the C2 ``auth-v2`` scheme.

    Content-Length is set from the body bytes actually sent (a streamed body is read first and
    sent with a length instead of chunked), Content-Type defaults to the documented
    ``application/json; charset=UTF-8``, and Host is the value httpx sends (default ports
    omitted, so it matches what the server sees). ``clock`` returns an aware datetime (tests).
    """

    requires_request_body = True

    def __init__(
        self,
        ak: str,
        sk: str,
        variant: Variant = "hex",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown iSales signing variant {variant!r} (expected 'hex' or 'base64')")
        if not ak or "/" in ak:
            raise ValueError("iSales access key (AK) is empty or contains '/'")
        if not isinstance(sk, str) or not sk:
            raise ValueError("iSales secret key (SK) is empty or not a string")
        self.ak = ak
        self._sk = sk
        self.variant: Variant = variant
        self._clock = clock or _utc_now

    def __repr__(self) -> str:
        return f"ISalesAuth(ak={self.ak!r}, sk='***', variant={self.variant!r})"

    __str__ = __repr__

    def sign(self, request: httpx.Request) -> None:
        """Set Content-Length, Content-Type and Authorization on a request whose body is read."""
        body = request.content
        request.headers.pop("Transfer-Encoding", None)
        request.headers["Content-Length"] = str(len(body))
        if "Content-Type" not in request.headers:
            request.headers["Content-Type"] = CONTENT_TYPE
        if "Host" not in request.headers:  # httpx sets it at construction; keep its exact form
            request.headers["Host"] = request.url.netloc.decode("ascii")
        path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        request.headers["Authorization"] = authorization(
            self.ak,
            self._sk,
            request.method,
            path,
            request.url.params.multi_items(),
            {name: request.headers[name] for name in SIGNED_HEADERS},
            body,
            self._clock(),
            self.variant,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request
