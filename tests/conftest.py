"""Fixtures: a real PostgreSQL (embedded, or TEST_WAREHOUSE_URL) with a fresh, migrated
database per test, and the simulator over real HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from pipelines.lib import warehouse
from simulator.app import Simulator
from simulator.server import ThreadedServer


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_WAREHOUSE_URL")
    if url:
        yield url
        return
    import pgserver

    # Short path: the server's unix socket lives in it.
    data = Path("/tmp") / f"ccw-test-{os.getpid()}"
    server = pgserver.get_server(data, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    """A database migrated once; each test copies it (CREATE DATABASE ... TEMPLATE)."""
    name = f"ccw_template_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    warehouse.migrate(_with_db(pg_admin_url, name))
    return name


@pytest.fixture
def warehouse_url(pg_admin_url: str, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"ccw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = _with_db(pg_admin_url, name)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(warehouse_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def simulator() -> Simulator:
    """The simulator's settings and state; change them before ``sim`` starts serving."""
    return Simulator()


@pytest.fixture
def sim(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedServer]:
    """All four vendors served over real HTTP, the environment pointing at them."""
    server = ThreadedServer(simulator).start()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield server
    finally:
        server.stop()
