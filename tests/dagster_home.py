"""A Dagster home on the project's dagster.yaml, its storage in a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import pytest
import yaml
from dagster import DagsterInstance

from pipelines.deploy.instance import INSTANCE_CONFIG, dagster_pg_url


def with_db(url: str, db: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


@contextmanager
def dagster_home(
    pg_admin_url: str,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, Any] | None = None,
) -> Iterator[tuple[DagsterInstance, str]]:
    """The project's dagster.yaml (with ``overrides``) in ``home``; DAGSTER_PG_URL names a new
    database on the test server. Yields the instance and that database's URL."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_db(pg_admin_url, name)
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url(url))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    config = yaml.safe_load(INSTANCE_CONFIG.read_text())
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(_merge(config, overrides or {})))
    instance = DagsterInstance.from_config(str(home))
    try:
        yield instance, url
    finally:
        instance.dispose()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop_code_servers() -> None:
    """Stop the ``dagster api grpc`` code servers this process started (a workspace context's):
    they can outlive their parent, still polling a test database that is gone."""
    servers = [p for p in psutil.Process().children(recursive=True) if _is_code_server(p)]
    family = [c for p in servers for c in p.children(recursive=True)] + servers
    for process in family:
        process.terminate()
    _, alive = psutil.wait_procs(family, timeout=10)
    for process in alive:
        process.kill()


def _is_code_server(process: psutil.Process) -> bool:
    try:
        cmdline = process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return False  # a child that already exited (a zombie until reaped) serves nothing
    return "grpc" in cmdline and "dagster" in " ".join(cmdline)
