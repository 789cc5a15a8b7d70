"""A run whose worker is killed fails, gives its pool slot back and is launched again, once,
under a real ``dagster-daemon run`` on the project's dagster.yaml (issue 18, item 5).

Two crashes, each ending with the retry's success:

- ``worker``: the run's own process is killed with SIGKILL. The code server that started it
  sees its child die and fails the run, unless run monitoring (the launcher's pid check) looks
  first: either way the run fails.
- ``host``: the daemon, its code server and the run's worker are killed together (a reboot,
  the OOM killer taking the lot), then a new daemon starts. Nothing is left that saw the worker
  die: only run monitoring, asking ``pipelines.deploy.launcher.LocalRunLauncher`` about the
  worker's pid, can fail the run.

The job (``tests/ops_jobs.py``) holds the crm pool's one slot while it waits for a file: the first
run waits until it is killed; the file is written once the slot is free, so the retry succeeds.
The daemon's intervals are shortened (run monitoring, freeing slots, the run queue, the retry
consumer); every wait is a guard against a hang, not a timing assertion.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

from pipelines.deploy.launcher import worker_pid
from tests.dagster_home import dagster_home

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULE, LOCATION_NAME = "tests.ops_jobs", "ops_jobs"
PARENT_RUN_ID = "dagster/parent_run_id"
FAILURE_CURSOR = f"EVENT_LOG_CONSUMER_CURSOR-{DagsterEventType.RUN_FAILURE.value}"  # the retry daemon's
OVERRIDES = {
    "run_coordinator": {"config": {"dequeue_interval_seconds": 1}},
    "run_monitoring": {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1},
}


class Daemons:
    """``dagster-daemon run`` processes on the test instance, each killed whole at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.started = logs, []
        self.workspace = logs / "workspace.yaml"
        location = {"module_name": MODULE, "working_directory": str(ROOT), "location_name": LOCATION_NAME}
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": location}]}))

    def start(self, env: dict[str, str]) -> psutil.Process:
        log = self.logs / f"daemon-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return psutil.Process(process.pid)

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:]
            for log in sorted(self.logs.glob("daemon-*.log"))
        )

    def close(self) -> None:
        for process in self.started:
            # poll() reaps a daemon killed before: its pid is never signalled again (reused?).
            if process.poll() is None:
                kill_tree(process.pid)
            process.wait(timeout=30)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it at once, as a reboot would."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=30)


def wait_for(condition: Callable[[], object], what: str, daemons: Daemons, limit_s: float = 240) -> object:
    """Poll ``condition`` until it is truthy; fails (with the daemons' logs) if it never is, or
    at once if the daemon last started has exited."""
    deadline = time.monotonic() + limit_s
    while not (value := condition()):
        if daemons.started[-1].poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}\n{daemons.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{daemons.tail()}")
        time.sleep(0.2)
    return value


def crm_slot_holders(instance: DagsterInstance) -> set[str]:
    return {slot.run_id for slot in instance.event_log_storage.get_concurrency_info("crm").claimed_slots}


def run_status(instance: DagsterInstance, run_id: str) -> DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def retries_of(instance: DagsterInstance, run_id: str) -> list[DagsterRun]:
    return [run for run in instance.get_runs() if run.tags.get(PARENT_RUN_ID) == run_id]


def failure_message(instance: DagsterInstance, run_id: str) -> str:
    events = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return " ".join(event.message for event in events)


def submit(instance: DagsterInstance, path: Path) -> str:
    """Queue a run of ``waits_for_a_file`` as ``dagster job launch`` does (the daemon launches
    it), from this process: a CLI would add two more Python processes to the test's time."""
    config = {"ops": {"wait_for_file": {"config": {"path": str(path)}}}}
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=MODULE, working_directory=str(ROOT)
    )
    origin = InProcessCodeLocationOrigin(target, location_name=LOCATION_NAME)
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        workspace = context.create_request_context()
        location = workspace.get_code_location(LOCATION_NAME)
        repository = location.get_repository(SINGLETON_REPOSITORY_NAME)
        remote_job = repository.get_full_job("waits_for_a_file")
        plan = location.get_execution_plan(
            remote_job, config, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        run = instance.create_run(
            job_name=remote_job.name,
            run_id=None,
            run_config=config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=remote_job.tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        instance.submit_run(run.run_id, workspace)
    assert run_status(instance, run.run_id) == DagsterRunStatus.QUEUED
    return run.run_id


@pytest.mark.parametrize("crash", ["worker", "host"])
def test_a_killed_run_fails_frees_its_slot_and_its_one_retry_succeeds(
    crash: str,
    pg_admin_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemons = Daemons(tmp_path)
    with (
        dagster_home(pg_admin_url, tmp_path / "home", monkeypatch, OVERRIDES) as (instance, _),
        contextlib.closing(daemons),  # killed before their database is dropped
    ):
        # The retry consumer's interval has no dagster.yaml setting, only this variable.
        env = {**os.environ, "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1"}
        daemon = daemons.start(env)
        release = tmp_path / "release"
        run_id = submit(instance, release)

        # The daemon launched it and its step waits for the file, holding the crm slot.
        wait_for(lambda: run_id in crm_slot_holders(instance), "the run to take the crm slot", daemons)
        assert run_status(instance, run_id) == DagsterRunStatus.STARTED
        pid, _ = worker_pid(instance, run_id) or pytest.fail("no worker pid recorded")
        worker = psutil.Process(pid)
        # The run's own process, started under the daemon's code server (not the daemon).
        assert worker in daemon.children(recursive=True)

        if crash == "worker":
            worker.send_signal(signal.SIGKILL)
        else:
            # The retry consumer has saved its place in the event log, so the next daemon goes on
            # from there (one with no saved place starts at the log's end: it would miss a
            # failure reported before its first look).
            wait_for(
                lambda: instance.daemon_cursor_storage.get_cursor_values({FAILURE_CURSOR}),
                "the retry consumer's cursor",
                daemons,
            )
            kill_tree(daemon.pid)
            assert not worker.is_running()
            # Nothing that saw it die is left: the run still looks alive, its slot taken.
            assert run_status(instance, run_id) == DagsterRunStatus.STARTED
            assert run_id in crm_slot_holders(instance)
            daemons.start(env)  # the host is back

        wait_for(lambda: run_status(instance, run_id) == DagsterRunStatus.FAILURE, "the run to fail", daemons)
        if crash == "host":
            # Failed by run monitoring on the launcher's word (pipelines/deploy/launcher.py).
            assert f"the run worker (pid {pid}) is no longer running" in failure_message(instance, run_id)
        wait_for(
            lambda: run_id not in crm_slot_holders(instance), "the dead run's crm slot to be freed", daemons
        )

        release.touch()  # the retry, once launched, finds its file
        retry = wait_for(lambda: retries_of(instance, run_id), "the run to be retried", daemons)[0]
        wait_for(
            lambda: (
                run_status(instance, retry.run_id) in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
            ),
            "the retry to end",
            daemons,
        )
        assert run_status(instance, retry.run_id) == DagsterRunStatus.SUCCESS, daemons.tail()
        assert retry.tags["dagster/retry_number"] == "1"  # launched by the retry daemon, not by hand
        assert [r.run_id for r in instance.get_runs()] == [retry.run_id, run_id]  # retried once
        assert crm_slot_holders(instance) == set()
