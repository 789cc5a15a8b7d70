"""Crashes and races (issue 15, item 3), against a real PostgreSQL and the simulator over HTTP.

- a step worker killed with SIGKILL after it has written a batch leaves every raw and core table
  exactly as it was (the partition is one transaction), and a re-run completes;
- two runs of one partition at once queue on the partition's advisory lock and end with exactly
  the vendor's rows; runs of two partitions of one source do not wait for each other;
- a migration started while a load is in flight on the table it alters waits for the load's
  commit (it holds its own advisory lock, the load holds the partition's: no deadlock), then
  applies; the load's rows all land.

Loads are held mid-way deterministically: the simulator stalls a page (the crash) or the loader's
``finish`` waits on an event (the races, the migration); each wait is observed in ``pg_locks``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

import simulator.crm as crm_sim
from pipelines.defs.sources.crm import normalize as crm
from pipelines.lib import warehouse
from pipelines.lib.loading import PartitionLoad
from simulator.app import Simulator
from simulator.common import Fault
from tests.helpers import checks, metadata
from tests.test_fault_matrix import SOURCES, Source, run, warehouse_checksum
from tests.test_fault_matrix import served as served  # the fixture

CRM = next(s for s in SOURCES if s.name == "crm")
SHANGHAI = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[1]
VICTIM = "ccw-crash-victim"  # the killed worker's application_name


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> object:
    """Poll ``condition`` until it is truthy; a deadlock or a missed state fails here."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return value


def crm_rows(db: psycopg.Connection) -> tuple[int, int, int, int]:
    """core rows, live core rows, raw records, rejects."""
    return db.execute(
        "SELECT (SELECT count(*) FROM core.fact_crm_call), "
        "(SELECT count(*) FROM core.fact_crm_call WHERE _gone_at IS NULL), "
        "(SELECT count(*) FROM raw.crm_call), (SELECT count(*) FROM raw.rejects)"
    ).fetchone()


# ---------------------------------------------------------------------------------------- crash


@pytest.mark.parametrize("source", [CRM], ids=["crm"])
def test_a_worker_killed_mid_load_leaves_the_warehouse_as_it_was_and_a_rerun_completes(
    source: Source,
    served: Simulator,
    db: psycopg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    served.settings["crm"].volume = 1_500  # 15 pages: the first batch (1,000 records) lands first
    monkeypatch.setenv("CRM_TIMEOUT_S", "120")
    assert run(source).success  # the partition holds a clean load
    before = warehouse_checksum(db)
    loaded_at = db.execute("SELECT max(fetched_at) FROM raw.crm_call").fetchone()[0]

    # The 13th page stalls, long after the first batch was written: the worker sits in its
    # open transaction, holding written rows, when it is killed.
    served.state.faults.arm(source.fault_endpoint, Fault("timeout", times=1, after=12, delay=90))
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from dagster import DagsterInstance, materialize
            from pipelines.definitions import build_resources
            from pipelines.defs.sources.crm import assets
            materialize([assets.fact_crm_call], partition_key={source.partition!r},
                        resources=build_resources(), instance=DagsterInstance.ephemeral())
            """
        )
    )
    worker = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PGAPPNAME": VICTIM},
        start_new_session=True,  # its own process group, killed whole
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def mid_load() -> bool:
            assert worker.poll() is None, "the worker ended before it could be killed"
            if served.state.requests["crm /v1/callLogs"] < 13:  # not yet at the stalled page
                return False
            # Its first batch (1,000 records) written and the statement done: either held in
            # its open transaction (rows locked) or, were batches committed, visible.
            row = db.execute(
                "SELECT count(DISTINCT l.relation) FROM pg_stat_activity a "
                "JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.mode = 'RowExclusiveLock' "
                "WHERE a.application_name = %s AND a.state = 'idle in transaction' "
                "AND l.relation IN ('raw.crm_call'::regclass, 'core.fact_crm_call'::regclass)",
                (VICTIM,),
            ).fetchone()
            visible = db.execute(
                "SELECT count(*) FROM raw.crm_call WHERE fetched_at > %s", (loaded_at,)
            ).fetchone()
            return row[0] == 2 or visible[0] > 0

        wait_for(mid_load, "the worker to write its first batch")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        # The stalled request need not finish before the simulator stops.
        request.getfixturevalue("sim")._server.force_exit = True

    # PostgreSQL sees the client gone and rolls its transaction back.
    wait_for(
        lambda: (
            not db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (VICTIM,)
            ).fetchone()[0]
        ),
        "the killed worker's backend to end",
    )
    assert warehouse_checksum(db) == before

    served.state.faults.clear()
    result = run(source)
    assert metadata(result, source.asset_key)["rows_landed"] == 1_500
    assert crm_rows(db) == (1_500, 1_500, 1_500, 0)
    # the re-run pulled (raw.pull_log), and rewrote nothing unchanged (issue 20)
    assert db.execute("SELECT max(fetched_at) FROM raw.pull_log").fetchone()[0] > loaded_at
    assert db.execute("SELECT max(fetched_at) FROM raw.crm_call").fetchone()[0] == loaded_at


# ---------------------------------------------------------------------------------------- races


@pytest.fixture
def held(
    monkeypatch: pytest.MonkeyPatch, warehouse_url: str
) -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """(inside, release, keys): the first ``PartitionLoad.finish`` of a partition in ``keys``
    sets ``inside`` and waits for ``release``, its transaction and partition lock held."""
    inside, release, keys = threading.Event(), threading.Event(), []
    finish = PartitionLoad.finish
    taken: set[str] = set()

    async def held_finish(self: PartitionLoad, *args: object, **kwargs: object) -> object:
        if self.partition_key in keys and self.partition_key not in taken:
            taken.add(self.partition_key)
            inside.set()
            await asyncio.to_thread(release.wait, 120)
        return await finish(self, *args, **kwargs)

    monkeypatch.setattr(PartitionLoad, "finish", held_finish)
    # The runs on threads find the schema checked: CPython 3.11's ast.parse (which reads the
    # migrations' heads) is not safe on several threads at once.
    warehouse.migrate(warehouse_url)
    yield inside, release, keys
    release.set()


class Runner(threading.Thread):
    """A run of ``source`` (for ``partition``) on a thread, as a second worker would."""

    def __init__(self, source: Source, partition: str) -> None:
        super().__init__(daemon=True)
        self.source = dataclasses.replace(source, partition=partition)
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = run(self.source, ok=False)
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            self.error = error

    def finished(self) -> object:
        self.join(timeout=180)
        assert not self.is_alive(), "the run did not end: a deadlock?"
        assert self.error is None, self.error
        assert self.result.success
        return self.result


def waiting_on_advisory_lock(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()[0]


@pytest.mark.parametrize("source", [CRM], ids=["crm"])
def test_two_runs_of_one_partition_at_once_queue_and_end_with_exactly_the_vendors_rows(
    source: Source, served: Simulator, db: psycopg.Connection, held: tuple
) -> None:
    inside, release, keys = held
    keys.append(source.partition)
    first = Runner(source, source.partition)
    first.start()
    wait_for(inside.is_set, "the first run to write its rows")
    second = Runner(source, source.partition)
    second.start()
    # The second waits for the first's partition lock, not for its rows one by one.
    wait_for(lambda: waiting_on_advisory_lock(db), "the second run to queue on the partition lock")
    assert first.is_alive() and second.is_alive()
    release.set()
    results = [first.finished(), second.finished()]
    for result in results:
        assert checks(result)["no_duplicate_keys"] and checks(result)["no_rejects"]
        assert checks(result)["no_mass_disappearance"]
    assert crm_rows(db) == (250, 250, 250, 0)
    # The second ran after the first had committed: it found every record unchanged and
    # rewrote none (issue 20), so every record is still the first run's.
    assert db.execute("SELECT count(DISTINCT fetched_at) FROM raw.crm_call").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM raw.pull_log").fetchone()[0] == 2
    assert metadata(results[1], source.asset_key)["rows_landed"] == 250


@pytest.mark.parametrize("source", [CRM], ids=["crm"])
def test_runs_of_two_partitions_of_one_source_do_not_wait_for_each_other(
    source: Source, served: Simulator, db: psycopg.Connection, held: tuple
) -> None:
    inside, release, keys = held
    keys.append("2026-11-20")
    first = Runner(source, "2026-11-20")
    first.start()
    wait_for(inside.is_set, "the first run to write its rows")
    other = Runner(source, "2026-11-21")
    other.start()
    other.finished()  # while the first still holds its partition's lock and transaction
    assert first.is_alive() and not release.is_set()
    assert crm_rows(db) == (250, 250, 250, 0)  # the other day's rows, committed
    release.set()
    first.finished()
    assert crm_rows(db) == (500, 500, 500, 0)


# ------------------------------------------------------------------------------------ migration


def _downgrade(url: str, target: str) -> None:
    """``alembic downgrade`` as the owner of the tables (migration 0011 gives them to
    ``loader``; 0012's downgrade creates sequences owned by them, which must share that owner)."""
    engine = create_engine(warehouse.sqlalchemy_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("GRANT ALL ON public.alembic_version TO loader")
            conn.exec_driver_sql("SET LOCAL ROLE loader")
            cfg = Config()
            cfg.set_main_option("script_location", str(warehouse.MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, target)
    finally:
        engine.dispose()


def _page(day: date, n: int) -> bytes:
    epoch_day = (day - date(1970, 1, 1)).days
    settings = crm_sim.Settings(volume=n)
    return json.dumps(
        {"data": {"list": [crm_sim.make_call(settings, epoch_day, i) for i in range(n)]}}
    ).encode()


def test_a_migration_during_a_load_waits_for_its_commit_and_neither_is_corrupted(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    # A warehouse one revision behind: 0012 alters core.fact_crm_call, the table being loaded.
    _downgrade(warehouse_url, "0011")
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0011"
    day = date(2026, 11, 20)
    window = (datetime(2026, 11, 20, tzinfo=SHANGHAI), datetime(2026, 11, 21, tzinfo=SHANGHAI))
    inside, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def load() -> None:
        async with (
            await psycopg.AsyncConnection.connect(warehouse_url) as conn,
            PartitionLoad(
                conn,
                crm.CALL_LOGS,
                partition_key="2026-11-20",
                window=window,
                fetched_at=datetime.now(SHANGHAI),
                params={"tz": "Asia/Shanghai"},
            ) as pl,
        ):
            await pl.add(_page(day, 300), 300)
            await pl.flush()  # rows written, the transaction open
            inside.set()
            await asyncio.to_thread(release.wait, 120)
            await pl.finish(complete=True)

    def guarded(target: Callable[[], object]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 (reported by the test)
                failures.append(error)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread

    loader = guarded(lambda: asyncio.run(load()))
    wait_for(inside.is_set, "the load to write its rows")
    migration = guarded(lambda: warehouse.migrate(warehouse_url))
    # The migration holds its advisory lock and waits for the table the load holds.
    wait_for(
        lambda: db.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'core.fact_crm_call'::regclass"
        ).fetchone()[0],
        "the migration to wait for the loaded table",
    )
    advisory = db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()[0]
    assert advisory == 2  # the migration's and the partition's: distinct keys, both held
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0011"
    release.set()
    for thread in (loader, migration):
        thread.join(timeout=120)
        assert not thread.is_alive(), "a deadlock"
    assert not failures, failures
    (head,) = warehouse._script_heads()
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head
    default = db.execute(
        "SELECT column_default FROM information_schema.columns "
        "WHERE table_schema = 'core' AND table_name = 'fact_crm_call' AND column_name = 'id'"
    ).fetchone()[0]
    assert default is None  # 0012 applied
    assert crm_rows(db) == (300, 300, 300, 0)  # the load's rows all landed
