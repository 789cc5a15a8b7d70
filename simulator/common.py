"""What every vendor simulator shares: fault injection, a settable clock, request
counters and deterministic randomness.

The simulator is an independent reading of the vendors' documents: nothing here (or in
any vendor module) imports ``pipelines`` or ``models``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

# Modes every endpoint understands: an HTTP status, a stall ("timeout"), half the body
# ("truncated"), the connection dropped mid-answer ("reset": headers and a few bytes, then the
# server closes it; the client sees httpx.RemoteProtocolError), a proxy's HTML error page
# with status 200 ("html"). The vendor module itself answers the others:
# "envelope" (the vendor's HTTP-200 error answer), "drift" (a renamed or retyped field),
# "empty" (the vendor's own answer for a window without records: it lost or forgot them) and
# "poison" (one record of the page carries a value that is valid JSON but that PostgreSQL's
# jsonb refuses or cannot store; ``Fault.variant`` says which, see POISON_VARIANTS).
GENERIC_MODES = {"500", "502", "503", "429", "timeout", "truncated", "reset", "html"}
VENDOR_MODES = {"envelope", "drift", "empty", "poison"}
# "nul": a \u0000 inside a string; "surrogate": a lone \ud800 inside a string; "bignum": a
# number beyond what PostgreSQL's numeric can hold (1e999999).
POISON_VARIANTS = {"nul": "\\u0000", "surrogate": "\\ud800", "bignum": "1e999999"}


@dataclass
class Fault:
    """A fault armed on one endpoint: skip ``after`` requests, then fault ``times`` of them
    (``times=-1``: every request from then on)."""

    mode: str
    times: int = 1
    after: int = 0
    retry_after: float = 1.0  # seconds, for mode "429"
    delay: float = 30.0  # seconds the server stalls, for mode "timeout"
    variant: str = "nul"  # for mode "poison": a key of POISON_VARIANTS

    def __post_init__(self) -> None:
        if self.mode not in GENERIC_MODES | VENDOR_MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}")
        if self.mode == "poison" and self.variant not in POISON_VARIANTS:
            raise ValueError(f"unknown poison variant {self.variant!r}")


class FaultBoard:
    """Faults armed per endpoint path (the documented path, e.g. ``/v1/callLogs``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._seen: Counter[str] = Counter()

    def arm(self, endpoint: str, fault: Fault) -> None:
        with self._lock:
            self._faults[endpoint] = fault
            self._seen[endpoint] = 0

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()

    def take(self, endpoint: str) -> Fault | None:
        """The fault to apply to this request, if any (consumes one use)."""
        with self._lock:
            fault = self._faults.get(endpoint)
            if fault is None:
                return None
            self._seen[endpoint] += 1
            if self._seen[endpoint] <= fault.after:
                return None
            if fault.times == 0:
                return None
            if fault.times > 0:
                fault.times -= 1
            return fault

    def describe(self) -> dict[str, dict]:
        with self._lock:
            return {k: asdict(v) for k, v in self._faults.items()}


class Clock:
    """The simulator's notion of now (epoch seconds). Tests move it to make new data
    appear (push logs) or old data expire (TRTC)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None
        # When set, signatures are checked against the wall clock while the data clock is
        # moved: a pipeline test can make data appear or expire without forging old
        # signatures.
        self.auth_wall = False

    def now(self) -> float:
        return self._frozen if self._frozen is not None else time.time() + self._offset

    def auth_now(self) -> float:
        """The time signature freshness is judged against."""
        return time.time() if self.auth_wall else self.now()

    def set(
        self, now: float | None = None, offset: float | None = None, auth_wall: bool | None = None
    ) -> None:
        if now is not None:
            self._frozen = float(now)
        else:
            self._frozen = None
            self._offset = float(offset or 0.0)
        if auth_wall is not None:
            self.auth_wall = auth_wall


@dataclass
class SimState:
    """Shared by all vendor apps of one simulator instance."""

    faults: FaultBoard = field(default_factory=FaultBoard)
    clock: Clock = field(default_factory=Clock)
    requests: Counter = field(default_factory=Counter)  # "vendor endpoint" -> count
    latency_s: float = 0.0
    # Records the vendor has deleted, by "<vendor>:<the record's own id>" (CRM ``id``, iSales
    # ``id``, push logs ``Id``, TRTC ``callId``): no longer returned, and totals and offsets
    # shift as a real vendor's would.
    deleted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, vendor: str, endpoint: str) -> None:
        with self.lock:
            self.requests[f"{vendor} {endpoint}"] += 1

    def deleted_ids(self, vendor: str) -> frozenset[str]:
        """The ids of ``vendor``'s records that it no longer returns."""
        prefix = f"{vendor}:"
        with self.lock:
            return frozenset(k[len(prefix) :] for k in self.deleted if k.startswith(prefix))


def rng(seed: int, *parts: object) -> random.Random:
    """A Random seeded from the seed and any identifying parts (day, page, record)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def stable_int(seed: int, *parts: object, bits: int = 63) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


Handler = Callable[[Request, Fault | None], Awaitable[Response]]


class ConnectionDropped(Exception):
    """Raised inside the app after the answer started: uvicorn closes the connection."""


class DroppedResponse(Response):
    """An answer that stops after its headers and a few bytes, the connection closed under it
    (a reset by a proxy or a crashed server): the declared length is never reached."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"code": 200, "da', "more_body": True})
        raise ConnectionDropped("simulated connection reset")


HTML_ERROR_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


async def serve(state: SimState, vendor: str, endpoint: str, request: Request, handler: Handler) -> Response:
    """Run one request through latency, the generic faults and the vendor handler.

    The handler receives the armed fault (or None) so it can answer the vendor-specific
    modes ("envelope", "drift") itself; generic modes never reach it.
    """
    state.count(vendor, endpoint)
    if state.latency_s:
        await asyncio.sleep(state.latency_s)
    fault = state.faults.take(endpoint)
    if fault is not None:
        if fault.mode in {"500", "502", "503"}:
            return Response(f"simulated {fault.mode}", status_code=int(fault.mode))
        if fault.mode == "429":
            return Response(
                "too many requests",
                status_code=429,
                headers={"Retry-After": f"{fault.retry_after:g}"},
            )
        if fault.mode == "timeout":
            await asyncio.sleep(fault.delay)
        if fault.mode == "reset":
            return DroppedResponse()
        if fault.mode == "html":
            return Response(HTML_ERROR_PAGE, status_code=200, media_type="text/html")
    response = await handler(request, fault if fault and fault.mode in VENDOR_MODES else None)
    if fault is not None and fault.mode == "truncated":
        body = bytes(response.body)
        return Response(body[: max(1, len(body) // 2)], media_type="application/json")
    return response


def json_response(payload: object, status_code: int = 200) -> Response:
    return JSONResponse(payload, status_code=status_code)
