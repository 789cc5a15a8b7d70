"""The soak (issue 15, item 4): all four sources over many partitions against the simulator,
with seeded random transient faults, vendor-side deletions and late records, then a
reconciliation of every fact table against the simulator's own truth.

Per source and partition, in a seeded random order: a transient fault within the retry budget
(or none) is armed, the partition is loaded; sometimes it is first loaded while still open
(the simulator's clock early in the period) and re-loaded once the clock has moved on, so
late records appear (incrementally, from the high-water mark, while the window is still
open); sometimes the vendor deletes a few of its records (well under the 20 %
mass-disappearance share) and the partition is re-loaded with a full pull (run config
``full``), which marks them gone.

The truth is what the simulator serves at the end, walked without faults by a fresh client
into a second, empty warehouse. Reconciled per fact table: the live keys (``_gone_at IS
NULL``) are exactly the served ones, the gone keys exactly the deleted ones, no key twice,
and raw holds every key ever loaded.

    python -m tests.soak --seed 1 --partitions 20 --volume 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from dagster import DagsterInstance, materialize

from pipelines.definitions import build_resources
from pipelines.defs.sources.trtc import plan as trtc_plan
from pipelines.lib import refresh
from simulator.app import Simulator
from simulator.common import Fault
from simulator.server import ThreadedServer
from tests.test_fault_matrix import MAX_RETRIES, RECOVERED, SHANGHAI, SOURCES, Source

# A timeout costs the server's stall per fault (seconds): left to the fault matrix.
FAULTS = {name: fault for name, fault in RECOVERED.items() if name != "timeout"}
DELETE_SHARE = 0.05  # of a partition's rows, at most: far under the 20 % refusal


@dataclass(frozen=True)
class Table:
    """How a source's fact table, raw table and deletions name one record."""

    core: str
    key: str  # a text expression of the core key, equal to raw.record_key
    raw: str
    vendor_id: str  # the expression the simulator's deleted set names a record by


TABLES = {
    "crm": Table("core.fact_crm_call", "id::text", "raw.crm_call", "id::text"),
    "isales": Table("core.fact_isales_api_call", "vdn_id || ':' || id", "raw.isales_api_call", "id"),
    "pushlog": Table("core.fact_push_log", "enterprise_id || ':' || id", "raw.pushlog", "id::text"),
    "trtc": Table("core.fact_trtc_call", "sdk_app_id || ':' || call_id", "raw.trtc_call", "call_id"),
}


def _at(day: date, hours: float) -> float:
    """Epoch seconds ``hours`` after the start of ``day`` in Shanghai."""
    return (datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(hours=hours)).timestamp()


def partitions(source: Source, n: int) -> list[date]:
    """The source's latest ``n`` partitions up to its plan's last; fewer when the definition
    (``<SOURCE>_START_DATE``, 2026-09-01 by default) holds fewer."""
    keys = source.assets[0].partitions_def.get_partition_keys()
    last = PLANS[source.name].last.isoformat()
    return [date.fromisoformat(k) for k in keys if k <= last][-n:]


@dataclass(frozen=True)
class Plan:
    """A source's partitions, and for each the simulator's clock early (open) and final (closed)."""

    last: date  # the latest partition the soak loads; it walks back from it
    early: Callable[[date], float]
    final: Callable[[date], float]
    volume: Callable[[int], int]  # records a partition -> the simulator's volume setting


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


PLANS = {
    "crm": Plan(
        date(2026, 11, 20),
        lambda d: _at(d, 14),
        lambda d: _at(d, 36),
        lambda v: max(1, v),
    ),
    "isales": Plan(
        date(2026, 11, 16),
        lambda d: _at(d, 3 * 24 + 12),
        lambda d: _at(d, 11 * 24 + 20),
        lambda v: max(1, v // 7),
    ),
    "pushlog": Plan(
        date(2026, 11, 1),
        lambda d: _at(d, 15 * 24),
        lambda d: _at(_next_month(d), 9 * 24),
        lambda v: max(1, v // 30),
    ),
    "trtc": Plan(
        date(2026, 11, 16),
        lambda d: _at(d, 3 * 24),
        lambda d: _at(d, 6 * 24 + 12),
        lambda v: max(1, v // 7),
    ),
}


@dataclass
class Report:
    seed: int
    partitions_per_source: int
    volume: int
    loads: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    faults_fired: int = 0  # armed faults the pulls met (one on a later page of a one-page pull never fires)
    retries: int = 0
    deletions: int = 0
    late_reloads: int = 0
    late_records: int = 0  # records a late reload found that the partition's earlier load had not
    failures: list[str] = field(default_factory=list)
    # per fact table: rows, live, gone, served (truth), and what did not reconcile
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and all(not t["mismatches"] for t in self.tables.values())


class _Env:
    """The soak's process-wide settings (variables, the sources' clocks), restored at the end."""

    def __init__(self) -> None:
        self.mp = pytest.MonkeyPatch()

    def close(self) -> None:
        self.mp.undo()


def _load(source: Source, partition: date, full: bool = False) -> tuple[bool, dict, str]:
    # ``full``: the whole window even while it is open (an incremental refresh never marks
    # anything gone; the closing pull, or this, does).
    config = {"ops": {a.op.name: {"config": {"full": True}} for a in source.assets}} if full else None
    result = materialize(
        source.assets,
        partition_key=partition.isoformat(),
        resources=build_resources(),
        run_config=config,
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )
    meta: dict = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == source.asset_key:
            meta = {k: v.value for k, v in mat.metadata.items()}
    errors = (getattr(e.event_specific_data, "error", None) for e in result.all_events)
    text = "; ".join(e.message.strip() for e in errors if e is not None)
    return result.success, meta, text


def _keys(db: psycopg.Connection, table: Table, where: str = "TRUE") -> list[str]:
    # The expressions are this module's constants, never input.
    return [k for (k,) in db.execute(f"SELECT {table.key} FROM {table.core} WHERE {where}")]  # noqa: S608


def _partition_keys(db: psycopg.Connection, table: Table, partition: date) -> int:
    # raw's partition_key may carry a part after the partition (iSales: "<week>/vdn-<id>")
    query = f"SELECT count(DISTINCT record_key) FROM {table.raw} WHERE split_part(partition_key, '/', 1) = %s"  # noqa: S608
    return db.execute(query, (partition.isoformat(),)).fetchone()[0]


def soak(
    seed: int,
    partitions_per_source: int,
    volume: int,
    soak_url: str,
    truth_url: str,
    fault_share: float = 0.5,
    delete_share: float = 0.3,
    late_share: float = 0.3,
) -> Report:
    """Run the soak into ``soak_url`` and the truth into ``truth_url`` (both migrated, empty)."""
    started = time.monotonic()
    rnd = random.Random(seed)
    report = Report(seed, partitions_per_source, volume)
    simulator = Simulator()
    env = _Env()
    server = None
    try:
        for source in SOURCES:
            source.setup(simulator, env.mp)  # page sizes, the clocks the sources read
            for name, value in {
                "MAX_RETRIES": str(MAX_RETRIES),
                "BACKOFF_BASE_S": "0.01",
                "RATE_PER_S": "0",
            }.items():
                env.mp.setenv(f"{source.name.upper()}_{name}", value)
            for name, value in source.env.items():
                env.mp.setenv(name, value)
            simulator.settings[source.name].volume = PLANS[source.name].volume(volume)
        server = ThreadedServer(simulator).start()  # it reads the settings when it starts
        for key, value in server.env().items():
            env.mp.setenv(key, value)
        env.mp.setattr(refresh, "utc_now", lambda: datetime.fromtimestamp(simulator.state.clock.now(), UTC))
        env.mp.setattr(trtc_plan, "vendor_now", lambda: simulator.state.clock.now())

        def clock(at: float) -> None:
            simulator.state.clock.set(now=at, auth_wall=True)  # signatures: the wall clock

        def load(
            source: Source,
            partition: date,
            what: str,
            armed: Fault | None = None,
            armed_name: str = "",
            full: bool = False,
        ) -> None:
            ok, meta, error = _load(source, partition, full)
            report.loads += 1
            report.retries += int(meta.get("retries", 0) or 0)
            if not ok:
                report.failures.append(f"{source.name} {partition} {what}: {error[:1000]}")
            if armed is not None and armed.times < FAULTS[armed_name].times:  # the board counts it down
                report.faults_fired += 1
            simulator.state.faults.clear()  # an unspent fault (a one-page answer) ends here

        env.mp.setenv("WAREHOUSE_URL", soak_url)
        steps = [(s, p) for s in SOURCES for p in partitions(s, partitions_per_source)]
        rnd.shuffle(steps)
        deleted: dict[str, set[str]] = {s.name: set() for s in SOURCES}
        with psycopg.connect(soak_url, autocommit=True) as db:
            for source, partition in steps:
                plan, table = PLANS[source.name], TABLES[source.name]
                late = rnd.random() < late_share
                clock(plan.early(partition) if late else plan.final(partition))
                fault, name = None, ""
                if rnd.random() < fault_share:
                    name = rnd.choice(sorted(FAULTS))
                    report.faults[name] = report.faults.get(name, 0) + 1
                    # on the first request or on a later page (mid-pagination)
                    fault = Fault(**{**vars(FAULTS[name]), "after": rnd.choice([0, 1])})
                    simulator.state.faults.arm(source.fault_endpoint, fault)
                load(source, partition, "first load", fault, name)
                if late:
                    before = _partition_keys(db, table, partition)
                    clock(plan.final(partition))
                    report.late_reloads += 1
                    load(source, partition, "late reload")
                    report.late_records += _partition_keys(db, table, partition) - before
                if rnd.random() < delete_share:
                    live = db.execute(
                        f"SELECT {table.key}, {table.vendor_id} FROM {table.core} "  # noqa: S608
                        f"WHERE _gone_at IS NULL AND {table.key} IN "
                        f"(SELECT record_key FROM {table.raw} WHERE split_part(partition_key, '/', 1) = %s)",
                        (partition.isoformat(),),
                    ).fetchall()
                    n = min(3, int(len(live) * DELETE_SHARE))
                    if n:
                        victims = rnd.sample(sorted(live), n)
                        simulator.state.deleted.update(f"{source.name}:{v}" for _, v in victims)
                        deleted[source.name].update(k for k, _ in victims)
                        report.deletions += n
                        # TRTC's week is still open at its final clock (the vendor forgets
                        # after 7 days): its deletions show in a full pull of the window.
                        load(source, partition, "reload after deletions", full=True)

        # The truth: every partition walked again, no faults, at its final clock.
        env.mp.setenv("WAREHOUSE_URL", truth_url)
        for source in SOURCES:
            for partition in partitions(source, partitions_per_source):
                clock(PLANS[source.name].final(partition))
                ok, _, error = _load(source, partition)
                if not ok:
                    report.failures.append(f"{source.name} {partition} truth: {error[:1000]}")

        with psycopg.connect(soak_url) as db, psycopg.connect(truth_url) as truth:
            for source in SOURCES:
                table = TABLES[source.name]
                rows = _keys(db, table)
                live = set(_keys(db, table, "_gone_at IS NULL"))
                gone = set(_keys(db, table, "_gone_at IS NOT NULL"))
                served = set(_keys(truth, table))
                raw = {k for (k,) in db.execute(f"SELECT DISTINCT record_key FROM {table.raw}")}  # noqa: S608
                mismatches = {
                    "duplicated": len(rows) - len(set(rows)),
                    "lost (served, not live)": len(served - live),
                    "live, not served": len(live - served),
                    "deleted, not marked gone": len(deleted[source.name] - gone),
                    "gone, not deleted": len(gone - deleted[source.name]),
                    "deleted, still served": len(deleted[source.name] & served),
                    "in core, not in raw": len(set(rows) - raw),
                }
                report.tables[table.core] = {
                    "rows": len(rows),
                    "live": len(live),
                    "gone": len(gone),
                    "served": len(served),
                    "mismatches": {k: v for k, v in mismatches.items() if v},
                }
    finally:
        if server is not None:
            server.stop()
        env.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


@contextmanager
def _databases() -> Iterator[tuple[str, str]]:
    """Two fresh, migrated databases on an embedded PostgreSQL (or TEST_WAREHOUSE_URL's server)."""
    from urllib.parse import urlsplit, urlunsplit

    import pgserver

    from pipelines.lib import warehouse

    own = None
    admin = os.environ.get("TEST_WAREHOUSE_URL")
    if not admin:
        own = pgserver.get_server(f"/tmp/ccw-soak-{os.getpid()}", cleanup_mode="delete")
        admin = own.get_uri()
    names = [f"ccw_soak_{os.getpid()}", f"ccw_truth_{os.getpid()}"]
    urls = [urlunsplit(urlsplit(admin)._replace(path=f"/{n}")) for n in names]
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
        for url in urls:
            warehouse.migrate(url)
        yield urls[0], urls[1]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if own is not None:
            own.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=20, help="partitions per source")
    parser.add_argument("--volume", type=int, default=2000, help="records per partition, about")
    args = parser.parse_args()
    with _databases() as (soak_url, truth_url):
        report = soak(args.seed, args.partitions, args.volume, soak_url, truth_url)
    print(json.dumps({**vars(report), "ok": report.ok}, indent=2, default=str))
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
