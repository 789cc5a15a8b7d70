"""The run launcher of a single-host deployment (the demo, one VM): Dagster's default one,
plus the worker health check that run monitoring needs.

``DefaultRunLauncher`` cannot tell whether a run's worker is alive. The code server that
started a worker fails its run when the worker dies, but once that server is gone too (a
reboot, the OOM killer or ``kill -9`` taking the daemon's process tree) or for a run that had
none (``dagster asset materialize``), a worker killed with SIGKILL left its run STARTED
forever, and the run's pool slot with it: every later run of that vendor waited without end
(tests/test_crash_retry.py kills both ways under a real daemon). Every run worker
records its pid in the run's first engine event ("Started process for run (pid: N)", or the
executor's "parent process (pid: N)" for ``dagster asset materialize``); run monitoring asks
this launcher about each STARTED run, a run whose process is gone is failed, and the
daemon then frees its slots (``free_slots_after_run_end_seconds``) and may retry it
(``run_retries``).

The pid is only meaningful on the host that runs both the daemon and the run workers; on
Kubernetes the Helm chart's ``K8sRunLauncher`` checks its pods instead (pipelines/deploy/README.md).
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher

# A launcher's health check must answer in these types, which Dagster exports from no public
# module (its own launchers import them from here too); the deployment part is the one place
# allowed to reach into dagster._*.
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

# The worker's pid is among a run's first engine events; never scan a long run's whole log.
_EVENTS_SCANNED = 20
# psutil's create_time and the event's timestamp come from different clocks' roundings.
_CLOCK_SLACK_S = 2.0


def worker_pid(instance, run_id: str) -> tuple[int, float] | None:  # noqa: ANN001 (DagsterInstance)
    """The pid of the process that executes the run and when it said so, or None."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=_EVENTS_SCANNED
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose workers run monitoring can check (same host only)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        found = worker_pid(self._instance, run.run_id)
        if found is None:
            # Nothing to judge by (a run started by an older client): never fail it on a guess.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded")
        pid, since = found
        try:
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            # A pid reused by a newer process is not our worker.
            ours = process.create_time() <= since + _CLOCK_SLACK_S
        except psutil.NoSuchProcess:
            alive = ours = False
        if alive and ours:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker (pid {pid}) is no longer running")
