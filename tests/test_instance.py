"""dagster.yaml: an instance on it keeps its history in PostgreSQL, queues runs, limits a
pool per vendor, retries crashed runs, and run monitoring frees a dead run's slot."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus, execute_job, materialize, reconstructable
from dagster._core.launcher import WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.monitoring import (
    execute_concurrency_slots_iteration,
    execute_run_monitoring_iteration,
)
from dagster._grpc.types import ExecuteRunArgs
from dagster_shared.serdes import serialize_value

from pipelines.definitions import build_resources
from pipelines.defs.sources.crm import assets as crm
from pipelines.deploy.launcher import LocalRunLauncher
from tests import ops_jobs
from tests.dagster_home import dagster_home


def test_instance_keeps_history_in_its_own_postgres_database(
    pg_admin_url, warehouse_url, sim, tmp_path, monkeypatch
) -> None:
    home = tmp_path / "home"
    with dagster_home(pg_admin_url, home, monkeypatch) as (instance, dagster_url):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_monitoring_enabled

        result = materialize([crm.dim_crm_hangup_reason], resources=build_resources(), instance=instance)
        assert result.success

        # A second process's view: a new instance on the same home reads the history back.
        again = DagsterInstance.from_config(str(home))
        try:
            records = again.get_run_records()
            assert [r.dagster_run.run_id for r in records] == [result.run_id]
            assert records[0].dagster_run.status == DagsterRunStatus.SUCCESS
            event = again.get_latest_materialization_event(crm.HANGUP_KEY)
            assert event is not None and event.run_id == result.run_id
            # The vendor's pool was claimed under the instance's default limit of one slot.
            assert again.event_log_storage.get_concurrency_info("crm").slot_count == 1
        finally:
            again.dispose()

        # Dagster's tables live in their own database, not the warehouse's.
        with psycopg.connect(dagster_url) as conn:
            assert conn.execute("SELECT to_regclass('public.runs')").fetchone()[0] is not None
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT to_regclass('public.runs')").fetchone()[0] is None
            assert conn.execute("SELECT count(*) FROM core.dim_crm_hangup_reason").fetchone()[0] > 0


def _wait_for(predicate, what: str, limit_s: float = 60) -> None:  # noqa: ANN001
    """A guard against a hang, not a timing assertion: the test fails if ``what`` never happens."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen")
        time.sleep(0.2)


def test_run_monitoring_fails_a_killed_run_frees_its_slot_and_the_next_run_proceeds(
    pg_admin_url, tmp_path, monkeypatch
) -> None:
    # The project's settings, but the daemon's "30 s after the run ended" shortened to 1 s.
    overrides = {"run_monitoring": {"free_slots_after_run_end_seconds": 1}}
    with dagster_home(pg_admin_url, tmp_path / "home", monkeypatch, overrides) as (instance, _):
        recon = reconstructable(ops_jobs.holds_the_crm_pool)
        run = instance.create_run_for_job(
            ops_jobs.holds_the_crm_pool, job_code_origin=recon.get_python_origin()
        )
        args = ExecuteRunArgs(
            job_origin=recon.get_python_origin(), run_id=run.run_id, instance_ref=instance.get_ref()
        )
        # The run worker the launcher would start, in a process group of its own.
        worker = subprocess.Popen(
            [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
            start_new_session=True,
        )
        try:
            _wait_for(
                lambda: instance.event_log_storage.get_concurrency_info("crm").claimed_slots,
                "the run claiming the crm slot",
            )
            assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        # Killed: nothing of its own marks the run failed or gives the slot back.
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        assert len(instance.event_log_storage.get_concurrency_info("crm").claimed_slots) == 1

        # One pass of the daemon's run monitoring, as `dagster-daemon run` does it.
        logger = logging.getLogger("run_monitoring_test")
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            list(execute_run_monitoring_iteration(context, logger))
            failed = instance.get_run_by_id(run.run_id)
            assert failed.status == DagsterRunStatus.FAILURE
            _wait_for(  # the slots of a run that ended more than 1 s ago are freed
                lambda: (
                    list(execute_concurrency_slots_iteration(context, logger))
                    and not instance.event_log_storage.get_concurrency_info("crm").claimed_slots
                ),
                "freeing the dead run's slot",
            )
        # The next run of the vendor gets the slot and completes.
        with execute_job(reconstructable(ops_jobs.needs_the_crm_pool), instance=instance) as result:
            assert result.success
            assert result.output_for_node("use_crm_slot") == 1
