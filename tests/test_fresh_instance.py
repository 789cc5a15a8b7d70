"""Two first runs at once on a fresh Dagster instance (PostgreSQL storage, nothing created
yet) both work: no "more than one head present", as two first runs once broke a SQLite home."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from pipelines.deploy.instance import INSTANCE_CONFIG, dagster_pg_url
from tests.dagster_home import with_db


def test_two_first_runs_on_a_fresh_instance_both_succeed(
    pg_admin_url, warehouse_url, sim, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_CONFIG.read_text())
    env = {
        **os.environ,
        **sim.env(),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_pg_url(with_db(pg_admin_url, name)),
        "WAREHOUSE_URL": warehouse_url,
    }
    # An asset outside the vendors' pools: two runs that claim one pool's slot at the same
    # moment on a brand-new instance race inside Dagster (both insert the pool's row into
    # concurrency_limits: IntegrityError). Deployed runs never do: they start through the
    # queue, whose daemon creates each pool's row, one run at a time, before launching any.
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("asset", "materialize", "-m", "pipelines.definitions", "--select", "core/customer_identity"),
    ]
    # Both start before either has created the instance's tables.
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)
    ]
    outputs = [run.communicate(timeout=240)[0].decode(errors="replace") for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert "more than one head" not in output
    monkeypatch.setenv("DAGSTER_PG_URL", env["DAGSTER_PG_URL"])
    instance = DagsterInstance.from_config(str(home))
    try:
        statuses = [r.status for r in instance.get_runs()]
    finally:
        instance.dispose()
    assert statuses == [DagsterRunStatus.SUCCESS, DagsterRunStatus.SUCCESS]
    assert yaml.safe_load((home / "dagster.yaml").read_text())["storage"]  # PostgreSQL storage in use
