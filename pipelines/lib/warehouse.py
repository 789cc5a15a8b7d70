"""The warehouse: where it is (WAREHOUSE_URL or an embedded PostgreSQL), and its schema,
brought to the migrations' head before anything loads."""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy import create_engine, text

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = PROJECT_ROOT / "sql" / "migrations"
# An arbitrary constant shared by every process: the key of the advisory lock that
# serializes migrations when several runs start at once.
MIGRATION_LOCK_KEY = 7_201_611_020

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class WarehouseConfigError(RuntimeError):
    pass


def embedded_dir() -> Path:
    return Path(os.environ.get("WAREHOUSE_DIR") or PROJECT_ROOT / ".warehouse")


def embedded_url(data_dir: Path | None = None) -> str:
    """Start (or join) the embedded PostgreSQL of the ``pgserver`` wheel and return its URL.

    The server outlives this process (cleanup_mode=None) so the Dagster UI, later runs and
    ``psql`` all see the same warehouse. The demo runs its own in ``.demo/warehouse`` and stops it
    with ``python -m pipelines.demo --stop``; stop any other with ``pg_ctl -D <its directory> stop``.
    """
    import pgserver

    path = data_dir or embedded_dir()
    path.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(path, cleanup_mode=None).get_uri()


def resolve_url(url: str | None = None) -> str:
    url = url or os.environ.get("WAREHOUSE_URL") or None
    if url is None:
        return embedded_url()
    if urlsplit(url).scheme not in {"postgresql", "postgres"}:
        raise WarehouseConfigError(
            "WAREHOUSE_URL must look like postgresql://user:password@host:port/database "
            f"(got a URL with scheme {urlsplit(url).scheme!r})"
        )
    return url


def redact(url: str) -> str:
    """The URL without its password, for logs, metadata and errors: the userinfo's password
    (however it is percent-encoded) and a ``password`` query parameter (libpq takes one there
    too) become ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, password = userinfo.partition(":")
        if password:
            netloc = f"{user}{colon}***@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else (f"{k}={v}" if sep else k)
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secrets_of(url: str) -> list[str]:
    """The password of ``url`` as written and as decoded (what an error text might quote)."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    if "@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]:
        found.append(parts.netloc.rsplit("@", 1)[0].split(":", 1)[1])
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password" and value:
            found.append(value)
    return sorted({f for f in found if f}, key=len, reverse=True)


class WarehouseUnavailable(WarehouseConfigError):
    """The warehouse cannot be reached, refuses the login, or has no such database."""


def unavailable(url: str, error: Exception, variable: str | None = "WAREHOUSE_URL") -> WarehouseUnavailable:
    """The error to raise for a failed connection: it names where the URL comes from and shows
    it with the password masked; PostgreSQL's own reason is kept, any password scrubbed from it."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = " ".join(line.strip() for line in reason if line.strip()) or type(error).__name__
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    where = f"{variable}={redact(url)}" if variable else f"the embedded warehouse ({redact(url)})"
    return WarehouseUnavailable(f"cannot connect to the warehouse at {where}: {text}")


def connect(url: str, variable: str | None = "WAREHOUSE_URL", **kwargs: Any) -> psycopg.Connection:
    """``psycopg.connect`` whose failure names ``variable`` with the password masked (and
    carries no chained exception that could quote the URL)."""
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as error:
        raise unavailable(url, error, variable) from None


async def aconnect(
    url: str, variable: str | None = "WAREHOUSE_URL", **kwargs: Any
) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.OperationalError as error:
        raise unavailable(url, error, variable) from None


def sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}"


# ``revision: str = "0011"``, ``down_revision: str | None = None`` or ``= ("0003", "0004")``:
# the only shapes the version files use (Alembic's template writes them so).
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@functools.cache
def _script_heads() -> frozenset[str] | None:
    """The migrations' heads, read from the version files' ``revision`` and
    ``down_revision`` lines without importing them; None if a file is not understood.

    Read with a regular expression, once per process: CPython 3.11's ``ast.parse`` keeps its
    recursion counter in global state, and two threads parsing at once (this and, say, a
    traceback's caret anchors in another thread) fail with "AST constructor recursion depth
    mismatch"."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        values = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revision, down = values.get("revision", ""), values.get("down_revision", "")
        named = _QUOTED.findall(revision)
        if len(named) != 1 or not down:
            return None
        revisions.add(named[0])
        if down != "None":
            down_names = _QUOTED.findall(down)
            if not down_names:
                return None
            parents.update(down_names)
    return frozenset(revisions - parents) or None


def _at_heads(url: str, heads: frozenset[str] | None, variable: str | None) -> bool:
    # Also the first connection of a process: a warehouse that cannot be reached fails here,
    # with the error that names the variable.
    with connect(url, variable) as conn:
        if heads is None:
            return False
        if conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,):
            return False
        versions = {row[0] for row in conn.execute("SELECT version_num FROM public.alembic_version")}
    return versions == heads


def migrate(url: str, variable: str | None = "WAREHOUSE_URL") -> None:
    """Bring the warehouse to the migrations' head; idempotent and safe when several
    processes start at once (they queue on an advisory lock, then find nothing to do)."""
    with _migrate_lock:
        if url in _migrated:
            return
        # Every run's process asks this once. Alembic's own no-op upgrade costs ~0.4 s (it
        # imports every migration), so a warehouse already at the heads is told by one query.
        heads = _script_heads()
        if _at_heads(url, heads, variable):
            _migrated.add(url)
            return
        from alembic import command
        from alembic.config import Config

        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                # "heads": each source's migrations branch from the shared base, so several
                # sources can add tables independently.
                command.upgrade(cfg, "heads")
        finally:
            engine.dispose()
        _migrated.add(url)


class WarehouseResource(ConfigurableResource):
    """The PostgreSQL warehouse. ``url`` unset means the embedded server in ``.warehouse/``."""

    url: str | None = Field(
        default=None,
        description="PostgreSQL URL (WAREHOUSE_URL); unset: embedded PostgreSQL in .warehouse/",
    )

    _resolved: str | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls) -> WarehouseResource:
        """The resource as the environment sets it: ``WAREHOUSE_URL`` through ``EnvVar`` (never
        its value in the UI), or the embedded warehouse when it is unset."""
        return cls(url=EnvVar("WAREHOUSE_URL") if os.environ.get("WAREHOUSE_URL") else None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Once per run's process, before anything loads: the schema at the migrations' heads.
        self._resolved = resolve_url(self.url)
        migrate(self._resolved, self._variable)

    @property
    def _variable(self) -> str | None:
        return "WAREHOUSE_URL" if self.url else None  # None: the embedded warehouse

    def dsn(self) -> str:
        if self._resolved is None:  # used outside a run (a schedule, a script): set up now
            self._resolved = resolve_url(self.url)
            migrate(self._resolved, self._variable)
        return self._resolved

    def display_url(self) -> str:
        return redact(self.dsn())

    def connect(self) -> psycopg.Connection:
        return connect(self.dsn(), self._variable)

    async def aconnect(self) -> psycopg.AsyncConnection:
        return await aconnect(self.dsn(), self._variable)
