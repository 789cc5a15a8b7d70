"""Issue 11 for push logs, end to end (simulator over real HTTP, real PostgreSQL, Dagster):
a delivery the vendor deletes keeps its row, marked gone, and is cleared when it comes back;
a vendor that answers "no records" for a month it held marks nothing gone and the blocking
check says why; a record PostgreSQL cannot take goes to raw.rejects and the rest lands.

September 2026 is a closed month (the simulator's clock is the wall clock), so every run is
the complete, reconciling pull of the whole month.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize

from pipelines.defs.sources.pushlog import assets as pushlog_assets
from pipelines.defs.sources.pushlog.client import PushLogResource
from pipelines.lib.warehouse import WarehouseResource
from simulator.app import Simulator
from simulator.common import Fault
from simulator.server import ThreadedServer
from tests.helpers import metadata

SEPTEMBER = "2026-09-01"
TABLE = "core/fact_push_log"
VOLUME = 20  # deliveries a day: 600 in September, two pages of 500
N = 30 * VOLUME


@pytest.fixture
def server(simulator: Simulator) -> Iterator[ThreadedServer]:
    simulator.settings["pushlog"].volume = VOLUME
    srv = ThreadedServer(simulator).start()
    yield srv
    srv.stop()


def run(server: ThreadedServer, warehouse_url: str) -> ExecuteInProcessResult:
    env = server.env()
    pushlog = PushLogResource(
        base_url=env["PUSHLOG_BASE_URL"],
        access_key_id=env["PUSHLOG_ACCESS_KEY_ID"],
        access_key_secret=env["PUSHLOG_ACCESS_KEY_SECRET"],
        enterprise_id=env["PUSHLOG_ENTERPRISE_ID"],
        rate_per_s=0.0,
    )
    return materialize(
        pushlog_assets.ASSETS,
        partition_key=SEPTEMBER,
        resources={"warehouse": WarehouseResource(url=warehouse_url), "pushlog": pushlog},
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )


def check(result: ExecuteInProcessResult, name: str):  # noqa: ANN201
    (found,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found


def rows(db: psycopg.Connection) -> dict[int, object]:
    """id -> _gone_at of every row of the month in core."""
    return dict(db.execute("SELECT id, _gone_at FROM core.fact_push_log").fetchall())


def raw_ids(db: psycopg.Connection) -> set[int]:
    return {int(k.split(":")[1]) for (k,) in db.execute("SELECT DISTINCT record_key FROM raw.pushlog")}


def test_deleted_delivery_is_marked_gone_then_cleared_and_an_empty_month_marks_nothing(
    server: ThreadedServer, simulator: Simulator, warehouse_url: str, db: psycopg.Connection
) -> None:
    first = run(server, warehouse_url)
    assert first.success
    loaded = rows(db)
    assert len(loaded) == N and all(g is None for g in loaded.values())
    assert raw_ids(db) == set(loaded)

    # The vendor deletes one delivery: its row stays, marked gone at the pull that missed it.
    victim = sorted(loaded)[N // 3]
    simulator.state.deleted.add(f"pushlog:{victim}")
    second = run(server, warehouse_url)
    assert second.success
    after = rows(db)
    assert set(after) == set(loaded)
    assert [i for i, g in after.items() if g is not None] == [victim]
    # raw rewrites only what changed (issue 20): the pull's time is in raw.pull_log
    (last_fetch,) = db.execute(
        "SELECT max(fetched_at) FROM raw.pull_log WHERE raw_table = 'raw.pushlog'"
    ).fetchone()
    assert after[victim] == last_fetch
    assert victim in raw_ids(db)
    assert metadata(second, TABLE)["rows_gone core.fact_push_log"] == 1
    assert check(second, "no_mass_disappearance").passed

    # It comes back: cleared.
    simulator.state.deleted.clear()
    assert run(server, warehouse_url).success
    assert all(g is None for g in rows(db).values()) and len(rows(db)) == N

    # The vendor forgets the whole month: nothing is marked gone, nothing leaves raw, and the
    # blocking check fails (after the commit) naming the counts.
    raw_before = db.execute("SELECT count(*) FROM raw.pushlog").fetchone()[0]
    simulator.state.faults.arm("/", Fault("empty", times=-1))
    empty = run(server, warehouse_url)
    assert not empty.success
    assert len(rows(db)) == N and all(g is None for g in rows(db).values())
    assert db.execute("SELECT count(*) FROM raw.pushlog").fetchone()[0] == raw_before
    refused = check(empty, "no_mass_disappearance")
    assert not refused.passed and refused.severity.name == "ERROR"
    assert f"0 of {N}" in refused.description and "push" in refused.description.lower()


@pytest.mark.parametrize(
    ("variant", "field"), [("nul", "ResultText"), ("surrogate", "ResultText"), ("bignum", "Delay")]
)
def test_a_poisoned_delivery_goes_to_rejects_and_the_rest_of_the_month_lands(
    server: ThreadedServer,
    simulator: Simulator,
    warehouse_url: str,
    db: psycopg.Connection,
    variant: str,
    field: str,
) -> None:
    # The month's first request answers its first delivery (the lowest Id) poisoned.
    simulator.state.faults.arm("/", Fault("poison", variant=variant))
    result = run(server, warehouse_url)
    loaded = rows(db)
    assert len(loaded) == N - 1
    rejects = db.execute(
        "SELECT record_key, reason FROM raw.rejects WHERE source_table = ANY(%s) AND partition_key = %s",
        (["raw.pushlog", "core.fact_push_log"], SEPTEMBER),
    ).fetchall()
    assert len(rejects) == 1
    key, reason = rejects[0]
    victim = int(key.split(":")[1])
    assert victim not in loaded and victim < min(loaded)
    # the key is the reject's record_key, the field is named in the reason, never a value
    assert f"'{field}'" in reason and str(victim) not in reason
    assert not check(result, "no_rejects").passed
    # the next pull answers it clean: it lands, nothing is marked gone
    assert run(server, warehouse_url).success
    assert len(rows(db)) == N and all(g is None for g in rows(db).values())


def test_a_poisoned_delivery_of_a_loaded_month_is_returned_so_not_gone(
    server: ThreadedServer, simulator: Simulator, warehouse_url: str, db: psycopg.Connection
) -> None:
    assert run(server, warehouse_url).success
    simulator.state.faults.arm("/", Fault("poison", variant="nul"))
    run(server, warehouse_url)
    (key,) = db.execute("SELECT record_key FROM raw.rejects").fetchone()
    victim = int(key.split(":")[1])
    assert victim in rows(db)
    assert rows(db)[victim] is None  # the vendor returned it: not gone
