"""Run the simulator over real HTTP: in a background thread (tests, demo) or in a
separate process (benchmarks, so it does not share the client's interpreter)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from simulator.app import Simulator


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadedServer:
    """``ssl_certfile`` and ``ssl_keyfile`` (PEM): serve HTTPS with that certificate."""

    def __init__(
        self,
        sim: Simulator,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.sim = sim
        self.host = host
        self.port = port or free_port(host)
        self.scheme = "https" if ssl_certfile else "http"
        config = uvicorn.Config(
            sim.build(),
            host=host,
            port=self.port,
            log_level="warning",
            access_log=False,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return self.sim.env(self.url)

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"simulator did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextmanager
def running(sim: Simulator | None = None, port: int = 0) -> Iterator[ThreadedServer]:
    server = ThreadedServer(sim or Simulator(), port=port).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def subprocess_server(args: list[str] | None = None, port: int = 0) -> Iterator[str]:
    """Start ``python -m simulator`` in its own process; yields its root URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port), "--quiet", *(args or [])],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("simulator process did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
