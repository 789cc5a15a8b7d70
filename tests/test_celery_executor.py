"""The Celery executor (DAGSTER_EXECUTOR=celery) against a real broker on this machine:
RabbitMQ on 127.0.0.1:5672, else Redis on 6379. A job's step runs in a dagster-celery
worker process, not in the run's own process, and lands its rows in the warehouse.

With neither broker listening the test fails and says so: it never passes without having
run (the project's machines, CI's included, start both brokers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import yaml
from dagster import DagsterEventType, DagsterRunStatus

from pipelines.demo.services import port_in_use
from pipelines.lib.warehouse import PROJECT_ROOT
from tests.dagster_home import dagster_home

BROKERS = [
    ("RabbitMQ", 5672, "pyamqp://guest:guest@127.0.0.1:5672//", "rpc://"),
    ("Redis", 6379, "redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
]
# A guard against a hung worker, not a timing assertion.
RUN_LIMIT_S = 300


def _broker() -> tuple[str, str, str]:
    for name, port, broker, backend in BROKERS:
        if port_in_use(port):
            return name, broker, backend
    pytest.fail(
        "neither RabbitMQ (127.0.0.1:5672) nor Redis (127.0.0.1:6379) listens: the Celery "
        "executor was NOT tested; start one of them and run this test again"
    )


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_celery_executor_runs_a_step_in_a_worker_through_the_broker(
    pg_admin_url, warehouse_url, sim, tmp_path, monkeypatch
) -> None:
    name, broker, backend = _broker()
    print(f"celery executor tested against {name} ({broker.split('@')[-1]})")
    queue = f"ccw-test-{uuid.uuid4().hex[:8]}"  # no other worker on this machine takes our tasks
    with dagster_home(pg_admin_url, tmp_path / "home", monkeypatch) as (instance, _):
        env = {
            **os.environ,
            "DAGSTER_EXECUTOR": "celery",
            "CELERY_BROKER_URL": broker,
            "CELERY_BACKEND_URL": backend,
            "CELERY_QUEUE": queue,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        worker_config = tmp_path / "celery.yaml"
        worker_config.write_text(
            yaml.safe_dump(
                {
                    "execution": {
                        "config": {
                            "broker": broker,
                            "backend": backend,
                            "config_source": {"task_default_queue": queue},
                        }
                    }
                }
            )
        )
        worker = subprocess.Popen(
            [
                _bin("dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(worker_config),
                "-q",
                queue,
                "--name",
                queue,
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            run = subprocess.run(
                [_bin("dagster"), "job", "execute", "-m", "pipelines.definitions", "-j", "crm_dimensions"],
                env=env,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=RUN_LIMIT_S,
            )
            worker_pids = {worker.pid, *(p.pid for p in psutil.Process(worker.pid).children(recursive=True))}
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        assert run.returncode == 0, run.stderr[-3000:]

        [record] = instance.get_run_records()
        assert record.dagster_run.job_name == "crm_dimensions"
        assert record.dagster_run.status == DagsterRunStatus.SUCCESS
        events = [r.event_log_entry for r in instance.get_records_for_run(record.dagster_run.run_id).records]
        messages = [e.dagster_event.message for e in events if e.dagster_event]
        assert (
            f'Submitting celery task for step "core__dim_crm_hangup_reason" to queue "{queue}".' in messages
        )
        [start] = [
            e.dagster_event
            for e in events
            if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START
        ]
        # The step ran in the worker's process tree, not in the process that ran the job.
        assert start.pid in worker_pids

    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM core.dim_crm_hangup_reason").fetchone()[0] > 0
