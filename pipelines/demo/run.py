"""``python -m pipelines.demo``: a running deployment of the pipeline on its embedded defaults.

The first run starts, in the background, the embedded PostgreSQL (unix socket and
127.0.0.1:<pg port>; databases ``warehouse`` and ``dagster``), the simulator of the four
vendors, the Dagster webserver and the Dagster daemon (every schedule and sensor RUNNING),
then loads each source's recent partitions as backfills of its named jobs through the
daemon's queue and prints the rows per table. Everything lives under ``.demo/``.

``--stop`` stops all of it (no process, no port left); ``--start`` (or the plain command
again) brings it back on the data already loaded, without pulling again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.demo.plan import FirstLoad, first_load
from pipelines.demo.services import (
    DemoError,
    EmbeddedPostgres,
    Service,
    http_ok,
    port_in_use,
    require_free,
    venv_bin,
    wait_until,
)
from pipelines.deploy.instance import INSTANCE_CONFIG, dagster_pg_url
from pipelines.lib.warehouse import PROJECT_ROOT

STATE_DIR = Path(os.environ.get("DEMO_DIR") or PROJECT_ROOT / ".demo")
SETTINGS_FILE = STATE_DIR / "settings.json"
ENV_FILE = STATE_DIR / "env"
DAGSTER_HOME = STATE_DIR / "dagster_home"
WAREHOUSE_DIR = STATE_DIR / "warehouse"
LOG_DIR = STATE_DIR / "logs"
WAREHOUSE_DB = "warehouse"
DAGSTER_DB = "dagster"
LOCATION = "callcenter"  # workspace.yaml's code location
REPOSITORY = "__repository__"  # the one Definitions object's repository

# (flag, environment variable, default) per port. PostgreSQL's default is not 5432, which a
# system server often holds.
PORTS = {
    "sim": ("--sim-port", "DEMO_SIM_PORT", 8765),
    "ui": ("--ui-port", "DEMO_UI_PORT", 3000),
    "pg": ("--pg-port", "DEMO_PG_PORT", 55432),
}


def _services() -> dict[str, Service]:
    return {
        "simulator": Service(
            "simulator", STATE_DIR / "simulator.pid", LOG_DIR / "simulator.log", "simulator"
        ),
        "webserver": Service(
            "webserver", STATE_DIR / "webserver.pid", LOG_DIR / "webserver.log", "dagster-webserver"
        ),
        "daemon": Service("daemon", STATE_DIR / "daemon.pid", LOG_DIR / "daemon.log", "dagster-daemon"),
    }


def _postgres(ports: dict[str, int]) -> EmbeddedPostgres:
    return EmbeddedPostgres(WAREHOUSE_DIR, ports["pg"])


# -- settings and environment ------------------------------------------------------------------


def load_settings() -> dict[str, Any]:
    try:
        return json.loads(SETTINGS_FILE.read_text())
    except FileNotFoundError:
        return {}


def save_settings(settings: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    SETTINGS_FILE.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def choose_ports(args: argparse.Namespace, saved: dict[str, int]) -> dict[str, int]:
    """A flag wins, then the environment, then the ports of the last start, then the default."""
    ports = {}
    for key, (_, variable, default) in PORTS.items():
        flag = getattr(args, f"{key}_port")
        ports[key] = int(flag or os.environ.get(variable) or saved.get(key) or default)
    return ports


def demo_environment(ports: dict[str, int], first_dates: dict[str, str]) -> dict[str, str]:
    from simulator.app import Simulator

    pg = _postgres(ports)
    env = Simulator().env(f"http://127.0.0.1:{ports['sim']}")
    env.update(first_dates)
    env.update(
        {
            "WAREHOUSE_URL": pg.url(WAREHOUSE_DB),
            "WAREHOUSE_DIR": str(WAREHOUSE_DIR),
            "DAGSTER_HOME": str(DAGSTER_HOME),
            "DAGSTER_PG_URL": dagster_pg_url(pg.url(DAGSTER_DB)),
            "DAGSTER_UI_URL": f"http://127.0.0.1:{ports['ui']}",
            # libpq's variables: `psql` with no arguments opens the warehouse.
            "PGHOST": "127.0.0.1",
            "PGPORT": str(ports["pg"]),
            "PGDATABASE": WAREHOUSE_DB,
            "PGUSER": "postgres",
        }
    )
    return env


def write_env_file(env: dict[str, str]) -> None:
    lines = [f"export {k}={shlex.quote(v)}\n" for k, v in env.items()]
    # pgserver's own psql, after any psql of the system's.
    lines.append(f'export PATH="$PATH:{EmbeddedPostgres.bin_dir()}"\n')
    ENV_FILE.write_text("".join(lines))


def write_instance_config() -> None:
    """The project's dagster.yaml, refreshed on every start (it holds no state)."""
    DAGSTER_HOME.mkdir(parents=True, exist_ok=True)
    (DAGSTER_HOME / "dagster.yaml").write_text(INSTANCE_CONFIG.read_text())


# -- start and stop ----------------------------------------------------------------------------


def start_services(ports: dict[str, int], env: dict[str, str]) -> None:
    services = _services()
    pg = _postgres(ports)
    print(f"embedded PostgreSQL: {'started' if pg.start() else 'running'} on 127.0.0.1:{ports['pg']}")
    pg.ensure_database(WAREHOUSE_DB)
    pg.ensure_database(DAGSTER_DB)

    child_env = {**os.environ, **env}
    sim = services["simulator"]
    if sim.pid() is None:
        require_free(ports["sim"], "simulator", "--sim-port or DEMO_SIM_PORT")
        sim.start(
            [sys.executable, "-m", "simulator", "--port", str(ports["sim"]), "--quiet"],
            child_env,
            PROJECT_ROOT,
        )
        wait_until(lambda: port_in_use(ports["sim"]), "simulator", sim)
    print(f"simulator: http://127.0.0.1:{ports['sim']} (pid {sim.pid()})")

    workspace = str(PROJECT_ROOT / "workspace.yaml")
    daemon = services["daemon"]
    if daemon.pid() is None:
        daemon.start([venv_bin("dagster-daemon"), "run", "-w", workspace], child_env, PROJECT_ROOT)
    ui = services["webserver"]
    if ui.pid() is None:
        require_free(ports["ui"], "Dagster webserver", "--ui-port or DEMO_UI_PORT")
        ui.start(
            [venv_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(ports["ui"]), "-w", workspace],
            child_env,
            PROJECT_ROOT,
        )
    url = f"http://127.0.0.1:{ports['ui']}"
    print("Dagster webserver and daemon: starting (loading the code location)...", flush=True)
    wait_until(lambda: http_ok(f"{url}/server_info"), "Dagster webserver", ui)
    since = time.time() - 1
    wait_until(lambda: _daemon_alive(since), "Dagster daemon", daemon)
    print(f"Dagster UI: {url} (webserver pid {ui.pid()}, daemon pid {daemon.pid()})")


def _daemon_alive(since: float) -> bool:
    """The daemons the demo needs have each reported since ``since`` (older heartbeats in the
    storage may be a previous start's)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        beats = instance.get_daemon_heartbeats()
    fresh = {name for name, beat in beats.items() if beat.timestamp >= since}
    return {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= fresh


def stop(ports: dict[str, int]) -> list[str]:
    """Stop every service; returns the project's ports still taken afterwards (none if clean)."""
    for service in reversed(list(_services().values())):
        if service.stop():
            print(f"{service.name}: stopped")
    if _postgres(ports).stop():
        print("embedded PostgreSQL: stopped")
    return [f"{port} ({listener})" for port, listener in _leftover_ports(ports)]


def _leftover_ports(ports: dict[str, int]) -> list[tuple[int, str]]:
    from pipelines.demo.services import listener_of

    return [(port, listener_of(port)) for port in ports.values() if port_in_use(port)]


# -- the first load ----------------------------------------------------------------------------


def _graphql(ui_port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{ui_port}/graphql", json={"query": query, "variables": variables}, timeout=120
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise DemoError(f"the Dagster webserver refused a request: {body['errors'][0].get('message')}")
    return body["data"]


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""


def launch_initial_loads(ui_port: int, plan: FirstLoad) -> tuple[list[str], list[str]]:
    """Each source's recent partitions as a backfill of its named job, and each snapshot job
    once: queued runs the daemon starts as the vendor pools allow."""
    repository = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}
    backfill_ids, run_ids = [], []
    for load in plan.partitioned:
        params = {
            "selector": {"partitionSetName": f"{load.job}_partition_set", "repositorySelector": repository},
            "partitionNames": load.keys,
            "title": "demo: first load",
        }
        result = _graphql(ui_port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DemoError(f"backfill of {load.job} refused: {result.get('message')}")
        backfill_ids.append(result["backfillId"])
        print(
            f"{load.source}: backfill {result['backfillId']} of {load.job}, partitions {', '.join(load.keys)}"
        )
    run_ids += [launch_job(ui_port, job) for job in plan.snapshot_jobs]
    return backfill_ids, run_ids


def launch_job(ui_port: int, job: str) -> str:
    """Queue one run of an unpartitioned job; its run id."""
    repository = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}
    params = {"selector": {**repository, "jobName": job}, "runConfigData": {}}
    result = _graphql(ui_port, LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise DemoError(f"run of {job} refused: {result.get('message')}")
    print(f"{job}: run {result['run']['runId']} queued")
    return str(result["run"]["runId"])


def wait_for_runs(backfill_ids: list[str], run_ids: list[str]) -> list[str]:
    """Wait until the first load's backfills and runs are done (not the runs that schedules and
    sensors start meanwhile); returns its failed runs."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    last = ""
    with DagsterInstance.get() as instance:
        while True:
            # BulkActionStatus has no public import; its values are the names the UI shows.
            open_backfills = [b for b in backfill_ids if instance.get_backfill(b).status.value == "REQUESTED"]
            runs = [
                *instance.get_runs(RunsFilter(run_ids=run_ids)),
                *(r for b in backfill_ids for r in instance.get_runs(RunsFilter.for_backfill(b))),
            ]
            done = [r for r in runs if r.is_finished]
            failed = [r for r in done if r.status != DagsterRunStatus.SUCCESS]
            line = f"first load: {len(done) - len(failed)} runs succeeded, {len(failed)} failed, {len(runs) - len(done)} queued or running"
            if line != last:
                print(line, flush=True)
                last = line
            if not open_backfills and len(done) == len(runs):
                return [
                    f"{r.job_name} {r.tags.get('dagster/partition', '')} (run {r.run_id}, {r.status.value})"
                    for r in failed
                ]
            time.sleep(2)


def sensor_runs(sensor: str, since: datetime, timeout_s: float = 120) -> list[str]:
    """The runs a sensor started since ``since``, once it has started them (its daemon ticks
    every 30 s); none if it started none within ``timeout_s``."""
    from dagster import DagsterInstance, RunsFilter

    runs_filter = RunsFilter(tags={"dagster/sensor_name": sensor}, created_after=since)
    deadline = time.monotonic() + timeout_s
    with DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            if instance.get_runs(runs_filter, limit=1):
                time.sleep(5)  # the rest of the tick's requests
                return [r.run_id for r in instance.get_runs(runs_filter)]
            time.sleep(2)
    print(f"{sensor}: no run started within {timeout_s:.0f} s (the UI shows the sensor's ticks)")
    return []


def print_row_counts(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'core') AND table_type = 'BASE TABLE' ORDER BY 1, 2"
        ).fetchall()
        print("\nrows per table:")
        for schema, name in tables:
            n = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()
            print(f"  {schema + '.' + name:<40} {n[0]:>10,}")


def _first_load() -> FirstLoad:
    from pipelines.definitions import defs

    return first_load(defs, datetime.now(UTC))


# -- the command -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="stop every service of the demo")
    action.add_argument("--start", action="store_true", help="start the services on the data already loaded")
    for key, (flag, variable, default) in PORTS.items():
        what = {"sim": "simulator", "ui": "Dagster webserver", "pg": "PostgreSQL TCP"}[key]
        parser.add_argument(flag, dest=f"{key}_port", type=int, help=f"{what} port ({variable}; {default})")
    parser.add_argument("--port", dest="sim_port", type=int, help=argparse.SUPPRESS)  # the old flag
    return parser


def main(argv: list[str] | None = None) -> None:
    # Dagster's supersession notices and pgserver's runtime-dir notice are for developers.
    warnings.filterwarnings("ignore")
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, piped or not
    args = _parser().parse_args(argv)
    settings = load_settings()
    ports = choose_ports(args, settings.get("ports", {}))
    if args.stop:
        left = stop(ports)
        if left:
            raise DemoError(f"ports still taken after stopping: {', '.join(left)}")
        print(f"demo stopped; its data stays in {STATE_DIR} (start again with --start)")
        return
    if args.start and not settings.get("loaded"):
        raise DemoError("nothing to start yet: run `python -m pipelines.demo` first")

    plan = None if settings.get("loaded") else _first_load()
    first_dates = settings.get("start_dates") or plan.start_dates()
    env = demo_environment(ports, first_dates)
    os.environ.update(env)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    settings.update(ports=ports, start_dates=first_dates)
    save_settings(settings)
    write_env_file(env)
    write_instance_config()
    start_services(ports, env)

    if settings.get("loaded"):
        print("data already loaded: not pulling again (the schedules take it from here)")
    else:
        failed = wait_for_runs(*launch_initial_loads(ports["ui"], plan or _first_load()))
        # Then the analysts' mart: customer keys and the views' checks over what just landed,
        # and the reporting days it found, which its sensor writes.
        mart_queued = datetime.now(UTC)
        failed += wait_for_runs([], [launch_job(ports["ui"], "mart")])
        failed += wait_for_runs([], sensor_runs("mart_days", mart_queued))
        settings["loaded"] = True
        save_settings(settings)
        print_row_counts(env["WAREHOUSE_URL"])
        if failed:
            print("\nfailed runs (see the UI):\n  " + "\n  ".join(failed))
    env_file = ENV_FILE.relative_to(Path.cwd()) if ENV_FILE.is_relative_to(Path.cwd()) else ENV_FILE
    print(
        f"\nRunning: open {env['DAGSTER_UI_URL']} (schedules and sensors are on).\n"
        f"Query the warehouse:  . {env_file} && psql\n"
        f"Stop everything:      {sys.executable} -m pipelines.demo --stop   (--start brings it back)"
    )


if __name__ == "__main__":
    main()
