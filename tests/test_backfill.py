"""A range backfill per source, the documented way: `dagster job backfill --from --to` queues
one run per partition; the daemon's run queue starts them and each vendor's pool lets one of
its pulls run at a time, across all the runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from pipelines.defs.sources.crm.partitions import crm_daily
from pipelines.defs.sources.isales.partitions import isales_weekly
from pipelines.defs.sources.pushlog.partitions import pushlog_monthly
from pipelines.defs.sources.trtc.partitions import trtc_weekly
from pipelines.lib.warehouse import PROJECT_ROOT
from tests.dagster_home import dagster_home, stop_code_servers

# job -> (its partitions, the vendor's pool, a table its runs fill)
JOBS = {
    "crm_facts": (crm_daily, "crm", "core.fact_crm_call"),
    "isales_api_calls": (isales_weekly, "isales", "core.fact_isales_api_call"),
    "pushlog_push_log": (pushlog_monthly, "pushlog", "core.fact_push_log"),
    "trtc_calls": (trtc_weekly, "trtc", "core.fact_trtc_call"),
}
POOL_OF_STEP = {
    "core__fact_crm_call": "crm",
    "core__fact_crm_call_recording": "crm",
    "core__fact_isales_api_call": "isales",
    "core__fact_push_log": "pushlog",
    "trtc_call_records": "trtc",  # the calls-and-callees multi-asset
}
# Guards against a hang, not timing assertions.
CLI_LIMIT_S = 300
QUEUE_LIMIT_S = 900


@pytest.fixture
def small(simulator):  # noqa: ANN001, ANN201
    for name in ("crm", "isales", "pushlog", "trtc"):
        simulator.settings[name].volume = 40
    return simulator


def _range(job: str) -> list[str]:
    """The two most recent closed partitions (TRTC's vendor keeps only 7 days)."""
    return JOBS[job][0].get_partition_keys()[-3:-1]


def test_a_range_backfill_per_source_runs_one_pull_per_vendor_at_a_time(
    pg_admin_url, warehouse_url, small, sim, tmp_path, monkeypatch
) -> None:
    with dagster_home(pg_admin_url, tmp_path / "home", monkeypatch) as (instance, _):
        started = time.monotonic()
        for job in JOBS:
            keys = _range(job)
            cli = subprocess.run(
                [
                    str(Path(sys.executable).parent / "dagster"),
                    "job",
                    "backfill",
                    "-w",
                    str(PROJECT_ROOT / "workspace.yaml"),
                    "-j",
                    job,
                    "--from",
                    keys[0],
                    "--to",
                    keys[-1],
                    "--noprompt",
                ],
                env=dict(os.environ),
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=CLI_LIMIT_S,
            )
            assert cli.returncode == 0, cli.stderr[-3000:]
            assert "Launched backfill job" in cli.stdout

        print(f"4 CLI backfills: {time.monotonic() - started:.0f} s")
        runs = instance.get_runs()
        # Queued, one per partition, each tagged with its backfill: nothing runs without the daemon.
        assert {r.status for r in runs} == {DagsterRunStatus.QUEUED}
        assert all(r.tags.get("dagster/backfill") for r in runs)
        assert sorted((r.job_name, r.tags["dagster/partition"]) for r in runs) == sorted(
            (job, key) for job in JOBS for key in _range(job)
        )

        # The daemon's run queue, as `dagster-daemon run` drives it (schedules and sensors aside).
        target = ModuleTarget(
            module_name="pipelines.definitions",
            attribute=None,
            working_directory=str(PROJECT_ROOT),
            location_name="callcenter",
        )
        queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
        deadline = time.monotonic() + QUEUE_LIMIT_S
        try:
            with WorkspaceProcessContext(instance, target) as context:
                while instance.get_runs_count(RunsFilter(statuses=[*_unfinished()])):
                    if time.monotonic() > deadline:
                        pytest.fail("the backfills' runs did not finish")
                    list(queue.run_iteration(context))
                    time.sleep(1)
        finally:
            stop_code_servers()

        print(f"queue drained: {time.monotonic() - started:.0f} s")
        runs = instance.get_runs()
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}

        # Per vendor, no two pulls overlapped: each step started after the previous one ended.
        spans: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            starts: dict[str, float] = {}
            for record in instance.get_records_for_run(
                run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
            ).records:
                event = record.event_log_entry.dagster_event
                if event.event_type == DagsterEventType.STEP_START:
                    starts[event.step_key] = record.event_log_entry.timestamp
                elif event.step_key in POOL_OF_STEP:
                    spans.setdefault(POOL_OF_STEP[event.step_key], []).append(
                        (starts[event.step_key], record.event_log_entry.timestamp)
                    )
        assert set(spans) == {"crm", "isales", "pushlog", "trtc"}
        for pool, intervals in spans.items():
            for (_, end), (start, _) in pairwise(sorted(intervals)):
                assert start >= end, f"two {pool} pulls overlapped"

    with psycopg.connect(warehouse_url) as conn:
        for _, _, table in JOBS.values():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table


def _unfinished() -> list[DagsterRunStatus]:
    return [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
