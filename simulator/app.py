"""One ASGI app serving every vendor under its own prefix, plus a control API.

Each vendor module (``simulator.crm`` and friends) provides ``Settings`` (credentials,
seed, volume, limits), ``build_app(settings, state)`` and ``env(settings, base_url)``,
the environment variables a client exports to talk to it.

Control API (tests flip faults and move the clock over real HTTP):
    POST   /_sim/faults   {"endpoint": "/v1/callLogs", "mode": "500", "times": 2, "after": 0}
    DELETE /_sim/faults
    POST   /_sim/clock    {"now": 1763600000} or {"offset": -86400} or {}; "auth_wall": true
                          judges signatures by the wall clock while the data clock moves
    GET    /_sim/stats    request counts per "vendor endpoint"
    POST   /_sim/deleted  {"ids": ["crm:123", "trtc:<callId>"]}: the vendor deletes those records
    DELETE /_sim/deleted  every record is back
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from simulator.common import Fault, SimState

# mount prefix -> module name; the prefix is part of each vendor's base URL
VENDORS: dict[str, str] = {
    "crm": "simulator.crm",
    "isales": "simulator.isales",
    "pushlog": "simulator.pushlog",
    "trtc": "simulator.trtc",
}


def vendor_module(name: str) -> ModuleType:
    return importlib.import_module(VENDORS[name])


@dataclass
class Simulator:
    """Settings of every vendor plus the shared state; ``app`` is the ASGI app."""

    state: SimState = field(default_factory=SimState)
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in VENDORS:
            self.settings.setdefault(name, vendor_module(name).Settings())

    def mount_path(self, name: str) -> str:
        return f"/{name}"

    def env(self, root_url: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in VENDORS:
            out.update(
                vendor_module(name).env(self.settings[name], root_url.rstrip("/") + self.mount_path(name))
            )
        return out

    def build(self) -> Starlette:
        routes = [
            Route("/_sim/faults", self._faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/clock", self._clock, methods=["POST"]),
            Route("/_sim/stats", self._stats, methods=["GET", "DELETE"]),
            Route("/_sim/deleted", self._deleted, methods=["GET", "POST", "DELETE"]),
        ]
        for name in VENDORS:
            routes.append(
                Mount(
                    self.mount_path(name), app=vendor_module(name).build_app(self.settings[name], self.state)
                )
            )
        return Starlette(routes=routes)

    async def _faults(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            endpoint = body.pop("endpoint")
            self.state.faults.arm(endpoint, Fault(**body))
        elif request.method == "DELETE":
            self.state.faults.clear()
        return JSONResponse(self.state.faults.describe())

    async def _clock(self, request: Request) -> Response:
        body = await request.json()
        self.state.clock.set(now=body.get("now"), offset=body.get("offset"), auth_wall=body.get("auth_wall"))
        return JSONResponse({"now": self.state.clock.now()})

    async def _stats(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.state.lock:
                self.state.requests.clear()
        with self.state.lock:
            return JSONResponse(dict(self.state.requests))

    async def _deleted(self, request: Request) -> Response:
        if request.method == "POST":
            ids = (await request.json())["ids"]
            with self.state.lock:
                self.state.deleted.update(str(i) for i in ids)
        elif request.method == "DELETE":
            with self.state.lock:
                self.state.deleted.clear()
        with self.state.lock:
            return JSONResponse(sorted(self.state.deleted))
