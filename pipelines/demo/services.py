"""The demo's background services: the embedded PostgreSQL (on a loopback TCP port too), the
simulator, the Dagster webserver and the daemon. Each one's pid, log and data live under
the demo's state folder; a port that another program holds is an error naming it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# How long a service may take to come up on a busy 2-core machine before the demo gives up.
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


class DemoError(SystemExit):
    """A message for the user, and exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def listener_of(port: int) -> str:
    """Who listens on the port, as far as this user may know ('pid 123 (postgres)')."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        pass
    return "another program"


def require_free(port: int, what: str, option: str) -> None:
    if port_in_use(port):
        raise DemoError(
            f"port {port} for the {what} is already taken by {listener_of(port)}; "
            f"stop that program or choose another port with {option}"
        )


@dataclass
class Service:
    """A background process started in a session of its own (its children share its process
    group, so stopping the group stops the code servers and run workers it started)."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a word of its command line, to tell a reused pid from ours

    def pid(self) -> int | None:
        """The pid if our process is alive."""
        try:
            pid = int(self.pid_file.read_text())
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE and any(
                self.marker in part for part in process.cmdline()
            ):
                return pid
        except (FileNotFoundError, ValueError, psutil.Error):
            pass
        return None

    def start(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # outlives the demo command; a group of its own
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self) -> bool:
        """Stop the process, its group and any descendant that left the group; True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            family = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            for process in family:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
            _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S if sig == signal.SIGTERM else 5)
            if not alive:
                break
        self.pid_file.unlink(missing_ok=True)
        return True


def wait_until(ready, what: str, service: Service | None = None, timeout_s: float = START_TIMEOUT_S) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not ready():
        if service is not None and service.pid() is None:
            raise DemoError(f"the {what} exited while starting; see {service.log_file}")
        if time.monotonic() > deadline:
            where = f"; see {service.log_file}" if service else ""
            raise DemoError(f"the {what} did not become ready in {timeout_s:.0f} s{where}")
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL we built)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def venv_bin(name: str) -> str:
    """A console script of this interpreter's environment (dagster-webserver, dagster-daemon)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DemoError(f"{name} is not installed next to {sys.executable}")
    return str(path)


# -- the embedded PostgreSQL ------------------------------------------------------------------


class EmbeddedPostgres:
    """pgserver's PostgreSQL binaries and data folder, started with ``pg_ctl`` so it listens on
    127.0.0.1:<port> as well as its unix socket (pgserver itself starts it socket-only)."""

    def __init__(self, data: Path, port: int) -> None:
        self.data = data.resolve()
        self.port = port

    def _user(self) -> str | None:
        # As root, pgserver runs PostgreSQL as its own 'pgserver' account (initdb refuses root).
        return "pgserver" if os.geteuid() == 0 else None

    def info(self):  # noqa: ANN201 (pgserver's PostmasterInfo)
        from pgserver.utils import PostmasterInfo

        if not (self.data / "postmaster.pid").exists():
            return None
        try:
            info = PostmasterInfo.read_from_pgdata(self.data)
        except (AssertionError, ValueError):  # a pid file being written
            return None
        return info if info is not None and info.is_running() else None

    def running_port(self) -> int | None:
        info = self.info()
        return info.port if info is not None and info.hostname == "127.0.0.1" else None

    def start(self) -> bool:
        """Start it (initializing the folder the first time); False if it already ran ours."""
        from pgserver import _commands
        from pgserver.postgres_server import PostgresServer
        from pgserver.utils import find_suitable_socket_dir

        if self.running_port() == self.port:
            return False
        if self.info() is not None:
            # Ours but without the TCP port (started by an older demo or a socket-only client).
            self.stop()
        require_free(self.port, "embedded PostgreSQL", "--pg-port or DEMO_PG_PORT")
        if not (self.data / "PG_VERSION").exists():
            import pgserver

            self.data.parent.mkdir(parents=True, exist_ok=True)
            pgserver.get_server(self.data, cleanup_mode=None)  # initdb, with its permissions
            self.stop()
        socket_dir = find_suitable_socket_dir(self.data, PostgresServer.runtime_path)
        _commands.pg_ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {socket_dir}",
                "-l",
                str(self.data / "log"),
                "start",
            ],
            pgdata=self.data,
            user=self._user(),
            timeout=START_TIMEOUT_S,
        )
        return True

    def stop(self) -> bool:
        from pgserver import _commands

        if self.info() is None:
            return False
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self._user(), timeout=60)
        return True

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ensure_database(self, database: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    @staticmethod
    def bin_dir() -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return POSTGRES_BIN_PATH
