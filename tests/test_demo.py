"""The demo's choices that do not need it running: ports and the error for a taken one, and
start dates whose partitions are exactly the ones the first load fills."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from datetime import datetime

import pytest

from pipelines.definitions import defs
from pipelines.demo import run as demo
from pipelines.demo.plan import RECENT_PARTITIONS, first_load, sources
from pipelines.demo.services import DemoError, require_free


def test_a_port_another_program_holds_is_an_error_naming_it_and_its_process() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(DemoError) as error:
            require_free(port, "Dagster webserver", "--ui-port or DEMO_UI_PORT")
    message = str(error.value)
    assert f"port {port} for the Dagster webserver is already taken by pid {os.getpid()}" in message
    assert "--ui-port" in message


def test_ports_come_from_the_flag_then_the_environment_then_the_last_start(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_UI_PORT", "13001")
    monkeypatch.delenv("DEMO_SIM_PORT", raising=False)
    monkeypatch.delenv("DEMO_PG_PORT", raising=False)
    args = argparse.Namespace(sim_port=None, ui_port=None, pg_port=15000)
    assert demo.choose_ports(args, {"sim": 18000, "ui": 3000}) == {"sim": 18000, "ui": 13001, "pg": 15000}
    assert demo.choose_ports(argparse.Namespace(sim_port=None, ui_port=None, pg_port=None), {}) == {
        "sim": 8765,
        "ui": 13001,
        "pg": 55432,
    }


_KEYS_AT = """
import json, sys
from datetime import datetime
from pipelines.definitions import defs
repository = defs.get_repository_def()
now = datetime.fromisoformat(sys.argv[1])
jobs = json.loads(sys.argv[2])
print(json.dumps({j: repository.get_job(j).partitions_def.get_partition_keys(current_time=now) for j in jobs}))
"""


@pytest.mark.parametrize(
    "now", ["2026-12-06T12:00:00+08:00", "2026-12-07T00:30:00+08:00", "2026-11-01T00:10:00+08:00"]
)
def test_start_dates_make_exactly_the_partitions_the_first_load_fills(now: str) -> None:
    """The plan comes from the loaded definitions; the code location loaded with the start
    dates it sets (a new process, as the daemon and webserver are) has exactly those
    partitions, for every source's partitioned job."""
    at = datetime.fromisoformat(now)
    plan = first_load(defs, at)
    assert {load.source for load in plan.partitioned} == sources(defs) == {"crm", "isales", "pushlog", "trtc"}
    assert plan.snapshot_jobs == ["crm_dimensions", "crm_ivr", "isales_file_servers"]
    env = {**os.environ, **plan.start_dates()}
    jobs = [load.job for load in plan.partitioned]
    out = subprocess.run(
        [sys.executable, "-c", _KEYS_AT, now, json.dumps(jobs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    keys = json.loads(out.stdout.strip().splitlines()[-1])
    for load in plan.partitioned:
        assert keys[load.job] == load.keys, load
        assert len(load.keys) == RECENT_PARTITIONS
        assert load.keys[-1] == at.date().isoformat() if load.job == "crm_facts" else True
