"""Alibaba Cloud signature V3 (``ACS3-HMAC-SHA256``) for RPC-style calls such as VMS
``CloudListCurlLog``.

RPC style, as the official SDK (``alibabacloud-tea-openapi``, ``Client.do_request``) sends it:
``POST /`` with every API parameter in the query string and an empty body, the action and
version in ``x-acs-action`` / ``x-acs-version``. The canonical request is::

    METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n HashedPayload

where CanonicalQuery is ``key=value`` pairs sorted by key, values percent-encoded with
``urllib.parse.quote(value, safe="~")`` (RFC 3986: space is ``%20``, ``*`` is ``%2A``, ``/``
is ``%2F``, ``~`` stays), CanonicalHeaders is ``name:value\\n`` per signed header (lowercase
names, sorted, values trimmed, repeated values sorted and joined with ``,``), and
``Signature = hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\\n" + hex(SHA-256(canonical))))``.

We sign ``host``, ``content-type`` (when present) and every ``x-acs-*`` header, not the
headers httpx or a proxy may add or rewrite (``user-agent``, ``accept-encoding``,
``content-length``); the official SDK signs whatever headers it sends, which for these
names gives the same bytes (``tests/test_pushlog_signing.py`` proves it against the SDK).
The canonical URI is the path as sent, so a base URL with a path prefix (the simulator's
``/pushlog``) is signed as the server receives it; post to ``<base>/``, not ``<base>``, since a
redirect would not be re-signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from urllib.parse import quote

import httpx

ALGORITHM = "ACS3-HMAC-SHA256"
DEFAULT_ACTION = "CloudListCurlLog"
DEFAULT_VERSION = "2017-05-25"


def percent_encode(value: str) -> str:
    """RFC 3986 encoding, as the V3 spec and the SDK apply it to query values. The spec
    encodes names too, the SDK leaves them raw: the same bytes for the API's names."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_uri(path: str) -> str:
    return quote(path or "/", safe="/~", encoding="utf-8")


def canonical_query(items: Iterable[tuple[str, str]]) -> str:
    """Sorted ``key=value`` pairs, both percent-encoded; an empty value keeps its ``=``."""
    pairs = sorted((percent_encode(k), percent_encode(v)) for k, v in items)
    return "&".join(f"{k}={v}" for k, v in pairs)


def signed_header_names(names: Iterable[str]) -> list[str]:
    """The headers we sign: host, content-type and every x-acs-* header, lowercase, sorted."""
    chosen = {
        n.lower() for n in names if n.lower() in ("host", "content-type") or n.lower().startswith("x-acs-")
    }
    return sorted(chosen)


def canonical_headers(headers: Mapping[str, list[str]], names: list[str]) -> str:
    lines = []
    for name in names:
        values = sorted(v.strip() for v in headers[name])
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def string_to_sign(canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{digest}"


def sign(secret: str, canonical_request: str) -> str:
    return hmac.new(
        secret.encode("utf-8"), string_to_sign(canonical_request).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def acs_date(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


class _Secret:
    """Holds the key so that no repr, vars() dump or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class AcsV3Auth(httpx.Auth):
    """Signs each request (every retry too: a fresh date and nonce each time).

    ``clock`` returns epoch seconds (tests share the simulator's clock so ``x-acs-date`` stays
    within the server's 15 minutes); ``nonce`` returns a fresh string per request.
    """

    requires_request_body = True

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        action: str = DEFAULT_ACTION,
        version: str = DEFAULT_VERSION,
        clock: Callable[[], float] | None = None,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("Alibaba Cloud AccessKey id and secret must both be set")
        self.access_key_id = access_key_id
        self._secret = _Secret(access_key_secret)
        self.action = action
        self.version = version
        self._clock = clock or time.time
        self._nonce = nonce or (lambda: uuid.uuid4().hex)

    def __repr__(self) -> str:
        return (
            f"AcsV3Auth(access_key_id={self.access_key_id!r}, access_key_secret='***', "
            f"action={self.action!r}, version={self.version!r})"
        )

    __str__ = __repr__

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign_request(request)
        yield request

    def sign_request(self, request: httpx.Request) -> None:
        """Set the x-acs-* headers and Authorization on ``request`` in place."""
        body = request.content
        request.headers["x-acs-action"] = self.action
        request.headers["x-acs-version"] = self.version
        request.headers["x-acs-date"] = acs_date(self._clock())
        request.headers["x-acs-signature-nonce"] = self._nonce()
        payload_hash = hashlib.sha256(body).hexdigest()
        request.headers["x-acs-content-sha256"] = payload_hash
        names = signed_header_names(request.headers.keys())
        signed_headers = ";".join(names)
        header_values = {n: request.headers.get_list(n) for n in names}
        canonical_request = "\n".join(
            [
                request.method.upper(),
                canonical_uri(request.url.path),
                canonical_query(request.url.params.multi_items()),
                canonical_headers(header_values, names),
                signed_headers,
                payload_hash,
            ]
        )
        signature = sign(self._secret.reveal(), canonical_request)
        credential = f"Credential={self.access_key_id}"
        request.headers["Authorization"] = (
            f"{ALGORITHM} {credential},SignedHeaders={signed_headers},Signature={signature}"
        )
