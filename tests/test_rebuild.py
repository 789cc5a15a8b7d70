"""Rebuild from raw: every fact asset's ``from_raw`` run config re-derives its partition
from the records in raw, through the same typing, checks and soft-delete rules, sending no
request (the vendor may have forgotten them: TRTC after 7 days)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, RunConfig, materialize

from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm import normalize
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.lib.typed_select import Field, typed_select
from pipelines.lib.warehouse import WarehouseResource
from tests.helpers import checks, metadata

DAY = "2026-11-20"
NOWHERE = "http://127.0.0.1:9/nothing-listens-here"
ROWS = """SELECT id, created_at, call_id, customer_number, customer_name, agent_name, duration, result,
                 _gone_at FROM core.fact_crm_call ORDER BY id"""


def resources(base_url: str, warehouse_url: str) -> dict[str, object]:
    crm_resource = CrmResource(
        base_url=base_url, email="sim-ops@example.com", secret_key="sim-secret", max_retries=0, timeout_s=2
    )
    return {"warehouse": WarehouseResource(url=warehouse_url), "crm": crm_resource}


def rebuild(warehouse_url: str, asset=crm.fact_crm_call):  # noqa: ANN001, ANN201
    op = asset.op.name
    return materialize(
        [asset],
        partition_key=DAY,
        resources=resources(NOWHERE, warehouse_url),
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(ops={op: {"config": {"from_raw": True}}}),
    )


@pytest.fixture
def loaded(simulator, sim, warehouse_url: str, db: psycopg.Connection) -> list[tuple]:  # noqa: ANN001
    simulator.settings["crm"].volume = 250
    env = sim.env()
    res = {
        "warehouse": WarehouseResource(url=warehouse_url),
        "crm": CrmResource(
            base_url=env["CRM_BASE_URL"],
            email=env["CRM_EMAIL"],
            secret_key=env["CRM_SECRET_KEY"],
            rate_per_s=0,
        ),
    }
    materialize([crm.fact_crm_call, crm.fact_crm_call_recording], partition_key=DAY, resources=res)
    db.execute(
        "UPDATE core.fact_crm_call SET _gone_at = now() WHERE id = (SELECT min(id) FROM core.fact_crm_call)"
    )
    return db.execute(ROWS).fetchall()


def test_a_rebuild_sends_no_request_and_gives_the_same_rows(
    loaded: list[tuple], warehouse_url: str, db
) -> None:  # noqa: ANN001
    raw_before = db.execute("SELECT record_key, fetched_at, record FROM raw.crm_call ORDER BY 1").fetchall()
    result = rebuild(warehouse_url)
    assert result.success
    assert db.execute(ROWS).fetchall() == loaded  # the row marked gone stays marked
    assert (
        db.execute("SELECT record_key, fetched_at, record FROM raw.crm_call ORDER BY 1").fetchall()
        == raw_before
    )
    meta = metadata(result, "core/fact_crm_call")
    assert meta["requests"] == 0 and meta["records_received"] == 250
    assert meta["source_of_pages"].startswith("raw")
    assert checks(result)["no_rejects"] and checks(result)["no_mass_disappearance"]
    recordings = db.execute("SELECT count(*) FROM core.fact_crm_call_recording").fetchone()[0]
    assert rebuild(warehouse_url, crm.fact_crm_call_recording).success
    assert db.execute("SELECT count(*) FROM core.fact_crm_call_recording").fetchone()[0] == recordings > 0


def test_a_mapping_change_reaches_core_by_a_rebuild_alone(
    loaded: list[tuple],
    warehouse_url: str,
    db,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    # The new mapping: customer_name now read from agentName (any change of normalize.py).
    fields = tuple(
        dataclasses.replace(f, json="agentName") if f.column == "customer_name" else f
        for f in normalize.CALL_FIELDS
    )
    target = dataclasses.replace(
        normalize.CALL_LOGS.targets[0],
        select_sql=typed_select(fields, fast=False),
        fast_select_sql=None,  # jsonb_to_record reads each JSON name once: the guarded path only
    )
    monkeypatch.setattr(normalize, "CALL_LOGS", dataclasses.replace(normalize.CALL_LOGS, targets=(target,)))
    assert rebuild(warehouse_url).success
    assert db.execute(
        "SELECT count(*) FILTER (WHERE customer_name IS NOT DISTINCT FROM agent_name), count(*) FROM core.fact_crm_call"
    ).fetchone() == (250, 250)
    assert Field  # the mechanism the mapping is written in


def test_the_cli_rebuilds_a_day_with_the_vendor_unreachable(
    loaded: list[tuple],
    warehouse_url: str,
    db,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "WAREHOUSE_URL": warehouse_url,
        "CRM_BASE_URL": NOWHERE,
        "CRM_EMAIL": "sim-ops@example.com",
        "CRM_SECRET_KEY": "sim-secret",
        "CRM_START_DATE": "2026-11-01",
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "pipelines.definitions",
            "--select",
            "core/fact_crm_call",
            "--partition",
            DAY,
            "--config-json",
            '{"ops": {"core__fact_crm_call": {"config": {"from_raw": true}}}}',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    assert db.execute(ROWS).fetchall() == loaded
