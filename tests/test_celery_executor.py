"""The Celery executor (DAGSTER_EXECUTOR=celery) with a real ``dagster-celery`` worker process.
The broker is kombu's ``filesystem://`` transport and the result backend Celery's ``file://``
one, both in folders under the test's tmp_path: the test starts everything it needs, so it
runs on a machine with no RabbitMQ or Redis (and never talks to one that happens to listen).
A job's step runs in the worker's process tree, not in the run's own process, and lands its
rows in the warehouse."""

from __future__ import annotations

import json
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
from dagster import DagsterEventType, DagsterRunStatus, EventLogEntry

from pipelines.deploy.executors import ExecutorSettingError, celery_config
from pipelines.lib.warehouse import PROJECT_ROOT
from tests.dagster_home import dagster_home

# A guard against a hung worker, not a timing assertion.
RUN_LIMIT_S = 300


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _pid_of(events: list[EventLogEntry], event_type: DagsterEventType) -> int:
    [event] = [
        e.dagster_event for e in events if e.dagster_event and e.dagster_event.event_type == event_type
    ]
    return event.pid


def _filesystem_broker(root: Path) -> tuple[str, str, dict[str, str | bool]]:
    """A broker and result backend that are folders: the run's process and the worker read
    and write the same ones (messages in one folder, the exchange tables in another)."""
    messages, processed, control, results = (
        root / d for d in ("messages", "processed", "control", "results")
    )
    for folder in (messages, processed, control, results):
        folder.mkdir(parents=True)
    options = {
        "data_folder_in": str(messages),
        "data_folder_out": str(messages),
        # Delivered messages are kept here rather than deleted from the system's temp folder.
        "store_processed": True,
        "processed_folder": str(processed),
        # kombu's default is ./control, in whatever directory the process runs in.
        "control_folder": str(control),
    }
    return "filesystem://", results.as_uri(), options


def test_celery_executor_runs_a_step_in_a_worker_through_the_broker(
    pg_admin_url, warehouse_url, sim, tmp_path, monkeypatch
) -> None:
    broker, backend, options = _filesystem_broker(tmp_path / "broker")
    queue = f"ccw-test-{uuid.uuid4().hex[:8]}"
    with dagster_home(pg_admin_url, tmp_path / "home", monkeypatch) as (instance, _):
        env = {
            **os.environ,
            "DAGSTER_EXECUTOR": "celery",
            "CELERY_BROKER_URL": broker,
            "CELERY_BACKEND_URL": backend,
            "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
            "CELERY_QUEUE": queue,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        # The worker's settings, as pipelines/deploy/README.md writes them for a worker.
        worker_config = tmp_path / "celery.yaml"
        worker_config.write_text(
            yaml.safe_dump(
                {
                    "execution": {
                        "config": {
                            "broker": broker,
                            "backend": backend,
                            "config_source": {
                                "task_default_queue": queue,
                                "broker_transport_options": options,
                            },
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
        # The step ran in the worker's process tree, not in the process that ran the job.
        step_pid = _pid_of(events, DagsterEventType.STEP_START)
        assert step_pid in worker_pids
        assert step_pid != _pid_of(events, DagsterEventType.RUN_START)

    # The task travelled through the folders: the worker took its message off our queue.
    assert list((tmp_path / "broker" / "processed").glob(f"*.{queue}.msg"))

    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM core.dim_crm_hangup_reason").fetchone()[0] > 0


def test_transport_options_are_laid_over_the_defaults(monkeypatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.delenv("CELERY_BACKEND_URL", raising=False)
    monkeypatch.delenv("CELERY_QUEUE", raising=False)
    monkeypatch.delenv("CELERY_BROKER_TRANSPORT_OPTIONS", raising=False)
    assert "broker_transport_options" not in celery_config({"max_retries": 3})["config_source"]

    monkeypatch.setenv("CELERY_BROKER_TRANSPORT_OPTIONS", '{"data_folder_in": "/q", "max_retries": 5}')
    config = celery_config({"max_retries": 3, "interval_max": 0.5})
    assert config["config_source"] == {
        "task_default_queue": "dagster",
        "broker_transport_options": {"max_retries": 5, "interval_max": 0.5, "data_folder_in": "/q"},
    }
    assert config["broker"] == {"env": "CELERY_BROKER_URL"}

    for bad in ('["not", "an", "object"]', "{secret-ish not json"):
        monkeypatch.setenv("CELERY_BROKER_TRANSPORT_OPTIONS", bad)
        with pytest.raises(ExecutorSettingError) as err:
            celery_config()
        assert bad not in str(err.value)
