"""A range backfill of CRM call logs the way an operator runs one: ``dagster job backfill``
queues one run per day on an instance on the project's dagster.yaml (storage in PostgreSQL),
the daemon's run queue starts them as the ``crm`` pool allows (one pull at a time), and each
run is a separate worker process, as in production.

    .venv/bin/python -m bench.backfill --days 90 --volume 2000

Prints wall time (queue drained), records landed, records/s, the vendor requests (the
simulator's count) and runs/min. Schedules and sensors do not run here (only the queue).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg

from bench.common import sim_stats
from bench.crm import _postgres, _with_db, fresh_database


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--volume", type=int, default=2000, help="CRM calls per day")
    parser.add_argument("--start", default="2026-09-01", help="first day of the range")
    args = parser.parse_args(argv)

    from simulator.server import free_port, subprocess_server

    first = date.fromisoformat(args.start)
    last = first + timedelta(days=args.days - 1)
    port = free_port()
    with (
        _postgres() as (admin_url, _, pg_desc),
        fresh_database(admin_url, "backfill") as warehouse_url,
        subprocess_server(["--volume", str(args.volume), "--latency-ms", "0"], port=port) as root,
        tempfile.TemporaryDirectory() as home,
    ):
        from pipelines.deploy.instance import INSTANCE_CONFIG, dagster_pg_url
        from pipelines.lib.warehouse import PROJECT_ROOT
        from simulator.app import Simulator

        dagster_db = f"dagster_bench_{os.getpid()}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dagster_db}"')
        env = {
            **Simulator().env(root),
            "WAREHOUSE_URL": warehouse_url,
            "DAGSTER_HOME": home,
            "DAGSTER_PG_URL": dagster_pg_url(_with_db(admin_url, dagster_db)),
            "CRM_START_DATE": args.start,
            "CRM_RATE_PER_S": "200",  # the simulator has no rate limit of its own
        }
        os.environ.update(env)
        Path(home, "dagster.yaml").write_text(INSTANCE_CONFIG.read_text())
        print(f"warehouse: {pg_desc}; simulator {root}, {args.volume} calls/day", file=sys.stderr)

        command = [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "backfill",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-j",
            "crm_facts",
            "--from",
            first.isoformat(),
            "--to",
            last.isoformat(),
            "--noprompt",
        ]
        print("$ " + " ".join(command[1:]), file=sys.stderr)
        started = time.monotonic()
        subprocess.run(command, check=True, env=dict(os.environ), cwd=PROJECT_ROOT, capture_output=True)
        queued_s = time.monotonic() - started
        before = sim_stats(root)
        runs, wall = _drain_queue(PROJECT_ROOT)
        after = sim_stats(root)

        with psycopg.connect(warehouse_url) as conn:
            calls = conn.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0]
            recordings = conn.execute("SELECT count(*) FROM core.fact_crm_call_recording").fetchone()[0]
        requests = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("crm "))
        total = wall + queued_s
        print(
            f"{args.days} days x {args.volume} calls/day: {runs['SUCCESS']} runs succeeded, "
            f"{runs.get('FAILURE', 0)} failed\n"
            f"wall {total:.0f} s (queueing the backfill {queued_s:.0f} s, runs {wall:.0f} s), "
            f"{total / args.days:.1f} s per day\n"
            f"records: {calls:,} calls + {recordings:,} recordings = {calls + recordings:,}, "
            f"{(calls + recordings) / total:,.0f} records/s\n"
            f"vendor requests: {requests:,} ({requests / args.days:.1f} per day)"
        )
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dagster_db}" WITH (FORCE)')


def _drain_queue(project_root: Path) -> tuple[dict[str, int], float]:
    """Run the daemon's queue until no run is left; the runs by status and the wall time."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    unfinished = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    ]
    started = time.monotonic()
    with (
        DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget([str(project_root / "workspace.yaml")])) as ctx,
    ):
        queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
        last = None
        while (left := instance.get_runs_count(RunsFilter(statuses=unfinished))) > 0:
            if left != last:
                print(f"  {left} runs left ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
                last = left
            list(queue.run_iteration(ctx))
            time.sleep(1)
        wall = time.monotonic() - started
        _stop_code_servers()
        counts: dict[str, int] = {}
        for run in instance.get_runs():
            counts[run.status.value] = counts.get(run.status.value, 0) + 1
    counts.setdefault("SUCCESS", 0)
    return counts, wall


def _stop_code_servers() -> None:
    """The workspace's code server can outlive this process; stop it with its workers."""
    import psutil

    servers = [p for p in psutil.Process().children(recursive=True) if "grpc" in p.cmdline()]
    family = [c for p in servers for c in p.children(recursive=True)] + servers
    for process in family:
        process.terminate()
    psutil.wait_procs(family, timeout=10)


if __name__ == "__main__":
    main()
