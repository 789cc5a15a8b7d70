"""Issue 11 for iSales call logs, end to end (simulator over real HTTP, real PostgreSQL,
Dagster): a call log the vendor deletes keeps its row, marked gone, and is cleared when it
comes back; a vendor that answers "no records" marks nothing gone and the blocking check says
why; a record PostgreSQL cannot take goes to raw.rejects and the rest lands. Every VDN is
judged by its own pull only: one VDN's answer never marks another VDN's rows gone.

The week of 2026-11-09 is closed (the simulator's clock is the wall clock).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize

from pipelines.defs.sources.isales import assets
from pipelines.defs.sources.isales.client import ISalesResource
from pipelines.lib.warehouse import WarehouseResource
from simulator import isales as sim_isales
from simulator.app import Simulator
from simulator.common import Fault
from simulator.server import ThreadedServer
from tests.helpers import metadata

WEEK = "2026-11-09"
TABLE = "core/fact_isales_api_call"
PER_VDN = 7 * 10  # 10 call logs a day per VDN: one page per VDN


@pytest.fixture
def simulator() -> Simulator:
    sim = Simulator()
    sim.settings["isales"].volume = 10
    sim.settings["isales"].vdn_ids = (1, 2)
    return sim


def run(warehouse_url: str) -> ExecuteInProcessResult:
    env = os.environ  # the sim fixture exported the ISALES_* variables
    isales = ISalesResource(
        base_url=env["ISALES_BASE_URL"],
        ak=env["ISALES_AK"],
        sk=env["ISALES_SK"],
        vdn_ids=env["ISALES_VDN_IDS"],
        timezone=env["ISALES_TIMEZONE"],
        sign_variant=env["ISALES_SIGN_VARIANT"],
        rate_per_s=0,
        max_retries=1,
    )
    return materialize(
        [assets.fact_isales_api_call],
        partition_key=WEEK,
        resources={"warehouse": WarehouseResource(url=warehouse_url), "isales": isales},
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )


def check(result: ExecuteInProcessResult, name: str) -> Any:
    (found,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def rows(db: psycopg.Connection) -> dict[tuple[int, str], Any]:
    """(vdn_id, id) -> _gone_at of every row in core."""
    return {(v, i): g for v, i, g in db.execute("SELECT vdn_id, id, _gone_at FROM core.fact_isales_api_call")}


def gone(db: psycopg.Connection) -> list[tuple[int, str]]:
    return sorted(k for k, g in rows(db).items() if g is not None)


def raw_keys(db: psycopg.Connection) -> set[str]:
    return {k for (k,) in db.execute("SELECT DISTINCT record_key FROM raw.isales_api_call")}


def test_deleted_call_log_is_marked_gone_in_its_vdn_only_then_cleared(
    simulator: Simulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    assert run(warehouse_url).success
    loaded = rows(db)
    assert len(loaded) == 2 * PER_VDN and gone(db) == []
    victim = sorted(i for v, i in loaded if v == 1)[PER_VDN // 2]

    simulator.state.deleted.add(f"isales:{victim}")
    second = run(warehouse_url)
    assert second.success
    assert set(rows(db)) == set(loaded)
    assert gone(db) == [(1, victim)]  # VDN 2's complete pull marked none of VDN 1's rows
    # raw rewrites only what changed (issue 20): the pull's time is in raw.pull_log
    (last_fetch,) = db.execute(
        "SELECT max(fetched_at) FROM raw.pull_log WHERE raw_table = 'raw.isales_api_call'"
    ).fetchone()
    assert rows(db)[(1, victim)] == last_fetch
    assert f"1:{victim}" in raw_keys(db)
    assert metadata(second, TABLE)["rows_gone core.fact_isales_api_call"] == 1

    simulator.state.deleted.clear()
    assert run(warehouse_url).success
    assert gone(db) == [] and len(rows(db)) == 2 * PER_VDN


def test_an_empty_answer_marks_nothing_gone_and_the_check_names_the_counts(
    simulator: Simulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    assert run(warehouse_url).success
    raw_before = db.execute("SELECT count(*) FROM raw.isales_api_call").fetchone()[0]

    # VDN 1 (pulled first, one page) forgets its week; VDN 2 answers in full.
    simulator.state.faults.arm(sim_isales.CALLLOGS, Fault("empty", times=1))
    one = run(warehouse_url)
    assert not one.success
    assert len(rows(db)) == 2 * PER_VDN and gone(db) == []
    refused = check(one, "no_mass_disappearance")
    assert not refused.passed and refused.severity.name == "ERROR"
    assert f"0 of {PER_VDN}" in refused.description

    # Every VDN forgets it.
    simulator.state.faults.arm(sim_isales.CALLLOGS, Fault("empty", times=-1))
    both = run(warehouse_url)
    assert not both.success
    assert len(rows(db)) == 2 * PER_VDN and gone(db) == []
    assert db.execute("SELECT count(*) FROM raw.isales_api_call").fetchone()[0] == raw_before
    refused = check(both, "no_mass_disappearance")
    assert not refused.passed and refused.severity.name == "ERROR"
    assert f"0 of {PER_VDN}" in refused.description


@pytest.mark.parametrize(
    ("variant", "field"), [("nul", "resultDesc"), ("surrogate", "resultDesc"), ("bignum", "httpStatus")]
)
def test_a_poisoned_call_log_goes_to_rejects_and_the_rest_lands(
    simulator: Simulator,
    sim: ThreadedServer,
    warehouse_url: str,
    db: psycopg.Connection,
    variant: str,
    field: str,
) -> None:
    # VDN 1's only page answers its first (oldest) call log poisoned.
    simulator.state.faults.arm(sim_isales.CALLLOGS, Fault("poison", variant=variant))
    result = run(warehouse_url)
    loaded = rows(db)
    assert len(loaded) == 2 * PER_VDN - 1
    rejects = db.execute(
        "SELECT record_key, reason FROM raw.rejects WHERE source_table = ANY(%s)",
        (["raw.isales_api_call", "core.fact_isales_api_call"],),
    ).fetchall()
    assert len(rejects) == 1
    key, reason = rejects[0]
    vdn, victim = key.split(":")
    assert vdn == "1" and (1, victim) not in loaded
    # the key is the reject's record_key, the field is named in the reason, never a value
    assert f"'{field}'" in reason and victim not in reason
    assert not check(result, "no_rejects").passed
    assert run(warehouse_url).success
    assert len(rows(db)) == 2 * PER_VDN and gone(db) == []
