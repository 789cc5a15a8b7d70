"""``python -m pipelines.demo``: the pipeline on its embedded defaults, end to end.

Starts the simulator (in the background, so the Dagster UI can use it afterwards) and the
embedded PostgreSQL, materializes every source's recent partitions into a Dagster instance
in ``.dagster_home/``, prints the rows per table, and says how to open the UI on the same
warehouse. ``--stop`` stops the simulator and the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from pipelines.warehouse import PROJECT_ROOT, embedded_dir

STATE_DIR = PROJECT_ROOT / ".demo"
ENV_FILE = STATE_DIR / "env"
SIM_PID = STATE_DIR / "simulator.pid"
DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"
SIM_PORT = 8765
# How many of each source's latest partitions the demo loads (the open one included).
RECENT = {"crm": 3, "isales": 2, "pushlog": 1, "trtc": 2}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_simulator(port: int) -> None:
    if _port_open(port):
        print(f"simulator: already listening on 127.0.0.1:{port}")
        return
    STATE_DIR.mkdir(exist_ok=True)
    log = open(STATE_DIR / "simulator.log", "ab")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port), "--quiet"],
        stdout=log,
        stderr=log,
        start_new_session=True,  # keeps serving after the demo exits, for the UI
    )
    SIM_PID.write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the simulator did not start; see {STATE_DIR / 'simulator.log'}")
        time.sleep(0.1)
    print(f"simulator: started on 127.0.0.1:{port} (pid {proc.pid})")


def demo_environment(port: int) -> dict[str, str]:
    from pipelines.warehouse import embedded_url
    from simulator.app import Simulator

    env = Simulator().env(f"http://127.0.0.1:{port}")
    env["WAREHOUSE_URL"] = embedded_url()
    env["DAGSTER_HOME"] = str(DAGSTER_HOME)
    # The simulator has no rate limit of its own worth waiting for (TRTC's is enforced).
    env["CRM_RATE_PER_S"] = "200"
    return env


def write_instance_config() -> None:
    DAGSTER_HOME.mkdir(exist_ok=True)
    config = DAGSTER_HOME / "dagster.yaml"
    if not config.exists():
        config.write_text((PROJECT_ROOT / "dagster.yaml").read_text())


def materialize_recent() -> None:
    from dagster import AssetsDefinition, DagsterInstance, materialize

    from pipelines.definitions import defs

    instance = DagsterInstance.get()
    resources = defs.resources
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    by_group: dict[str, list[AssetsDefinition]] = {}
    for assets_def in defs.assets or []:
        if isinstance(assets_def, AssetsDefinition):
            for group in set(assets_def.group_names_by_key.values()):
                by_group.setdefault(group, []).append(assets_def)
    for group, assets in by_group.items():
        partitioned = [a for a in assets if a.partitions_def is not None]
        unpartitioned = [a for a in assets if a.partitions_def is None]
        if unpartitioned:
            print(
                f"{group}: snapshots {', '.join(k.to_user_string() for a in unpartitioned for k in a.keys)}"
            )
            materialize(unpartitioned, resources=resources, instance=instance, run_config=quiet)
        if partitioned:
            keys = partitioned[0].partitions_def.get_partition_keys()[-RECENT.get(group, 1) :]
            for key in keys:
                started = time.monotonic()
                materialize(
                    partitioned, partition_key=key, resources=resources, instance=instance, run_config=quiet
                )
                print(f"{group}: partition {key} loaded in {time.monotonic() - started:.1f}s")


def print_row_counts() -> None:
    import psycopg

    with psycopg.connect(os.environ["WAREHOUSE_URL"]) as conn:
        tables = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'core') AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
        print("\nrows per table:")
        for (table,) in tables:
            schema, name = table.split(".")
            from psycopg import sql

            n = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()[0]
            print(f"  {table:<40} {n:>10,}")


def stop() -> None:
    if SIM_PID.exists():
        try:
            os.killpg(int(SIM_PID.read_text()), signal.SIGTERM)
            print("simulator: stopped")
        except ProcessLookupError:
            pass
        SIM_PID.unlink()
    import pgserver

    if (embedded_dir() / "postmaster.pid").exists():
        pgserver.get_server(embedded_dir(), cleanup_mode="stop").cleanup()
        print("embedded PostgreSQL: stopped")


def main(argv: list[str] | None = None) -> None:
    # Dagster's supersession notices and pgserver's runtime-dir notice are for developers.
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=SIM_PORT, help="simulator port")
    parser.add_argument("--stop", action="store_true", help="stop the simulator and the embedded PostgreSQL")
    args = parser.parse_args(argv)
    if args.stop:
        stop()
        return
    start_simulator(args.port)
    env = demo_environment(args.port)
    os.environ.update(env)
    STATE_DIR.mkdir(exist_ok=True)
    ENV_FILE.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    write_instance_config()
    print(f"warehouse: embedded PostgreSQL in {embedded_dir()}")
    materialize_recent()
    print_row_counts()
    print(
        "\nOpen the Dagster UI on the same warehouse and simulator:\n"
        f"  . {ENV_FILE.relative_to(Path.cwd()) if ENV_FILE.is_relative_to(Path.cwd()) else ENV_FILE}"
        " && .venv/bin/dagster dev   # then http://127.0.0.1:3000\n"
        "Query the warehouse:\n"
        f'  . {ENV_FILE} && .venv/bin/python -c "import os, psycopg; '
        "print(psycopg.connect(os.environ['WAREHOUSE_URL']).execute('select count(*) from core.fact_crm_call').fetchone())\"\n"
        "Stop the background simulator and PostgreSQL: .venv/bin/python -m pipelines.demo --stop"
    )


if __name__ == "__main__":
    main()
