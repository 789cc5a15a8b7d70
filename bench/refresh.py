"""Benchmark of open-window refreshes (bench/README.md, "Targets: Refreshes"; issue 20).

    .venv/bin/python -m bench.refresh                       # the four sources at full size
    .venv/bin/python -m bench.refresh --quick               # a tenth of the volume: a few minutes
    .venv/bin/python -m bench.refresh --sources crm trtc --refreshes 24

A simulated day of 15-minute refreshes of each source's open window, as the schedules run them:

- ``crm``: the open day, 20k calls a day (call logs and recordings, as the ``crm_facts`` job);
- ``trtc``: the last day of the open week, 10k calls a day (70k in the week);
- ``isales``: the last day of the open week, three VDNs of 2k records a day each;
- ``pushlog``: the last day of the open month, 2k deliveries a day.

The simulator (in this process, over HTTP, no latency) makes records appear as its data clock
passes their time; the clock is frozen at each refresh's instant and the pipeline's clock
(``refresh.utc_now``, TRTC's ``plan.vendor_now``) follows it. Refresh ``k`` runs at
``day start + 7.5 min + 15 min * k``. After the last, one more refresh with the clock
unmoved (unchanged data). A week's or month's earlier days are loaded first, at the simulated
day's start (not counted: the day's refreshes start from the mark they left). Then one full pull of the same window at the last instant, into a
fresh database: the baseline. For each: requests (the materializations' metadata), records
fetched, row versions written to the source's ``raw`` and ``core`` tables (``n_tup_ins +
n_tup_upd + n_tup_del`` of ``pg_stat_user_tables``; ``raw.pull_log``, one row per pull, is
counted apart) and WAL bytes (``pg_current_wal_lsn`` before and after).

Targets: requests over the day at most 1.2 x (one full pull + one request per refresh, and per
VDN for iSales: each VDN is its own range); a
refresh of unchanged data writes 0 row versions and less than 1 MB of WAL.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from bench.common import fresh_database, note, write_results
from bench.crm import _postgres

TZ = ZoneInfo("Asia/Shanghai")
STEP = timedelta(minutes=15)
PULL_LOG = "raw.pull_log"


@dataclass(frozen=True)
class Scenario:
    name: str
    partition: str  # the open window's partition key
    day: datetime  # the simulated day (inside the window)
    volume: int  # the simulator's records per day (per VDN for iSales)
    tables: tuple[str, ...]  # the source's raw and core tables
    assets: Callable[[], list]
    resources: Callable[[dict[str, str], str], dict[str, Any]]
    # The fewest requests a refresh can cost: one per range asked (iSales: one per VDN).
    floor: int = 1


def _crm_assets() -> list:
    from pipelines.defs.sources.crm import assets

    return [assets.fact_crm_call, assets.fact_crm_call_recording]


def _trtc_assets() -> list:
    from pipelines.defs.sources.trtc import assets

    return list(assets.ASSETS)


def _isales_assets() -> list:
    from pipelines.defs.sources.isales import assets

    return [assets.fact_isales_api_call]


def _pushlog_assets() -> list:
    from pipelines.defs.sources.pushlog import assets

    return list(assets.ASSETS)


def _resources(source: str) -> Callable[[dict[str, str], str], dict[str, Any]]:
    """The source's resource from the simulator's environment, without a client-side rate
    limit (the simulator has none), like the tests."""

    def build(env: dict[str, str], url: str) -> dict[str, Any]:
        from pipelines.defs.sources.crm.client import CrmResource
        from pipelines.defs.sources.isales.client import ISalesResource
        from pipelines.defs.sources.pushlog.client import PushLogResource
        from pipelines.defs.sources.trtc.client import TrtcResource
        from pipelines.lib.warehouse import WarehouseResource

        cls = {
            "crm": CrmResource,
            "isales": ISalesResource,
            "pushlog": PushLogResource,
            "trtc": TrtcResource,
        }[source]
        prefix = f"{source.upper()}_"
        fields = {
            k[len(prefix) :].lower(): v
            for k, v in env.items()
            if k.startswith(prefix) and k[len(prefix) :].lower() in cls.model_fields
        }
        fields["rate_per_s"] = 0
        if source == "trtc":
            fields["limit_per_s"] = 0
        return {"warehouse": WarehouseResource(url=url), source: cls(**fields)}

    return build


SCENARIOS = {
    "crm": Scenario(
        "crm",
        "2026-11-20",
        datetime(2026, 11, 20, tzinfo=TZ),
        20_000,
        ("raw.crm_call", "raw.crm_call_detail", "core.fact_crm_call", "core.fact_crm_call_recording"),
        _crm_assets,
        _resources("crm"),
    ),
    "trtc": Scenario(
        "trtc",
        "2026-11-16",
        datetime(2026, 11, 22, tzinfo=TZ),  # the week's Sunday: 60k calls before it, 70k after
        10_000,
        ("raw.trtc_call", "core.fact_trtc_call", "core.fact_trtc_call_callee"),
        _trtc_assets,
        _resources("trtc"),
    ),
    "isales": Scenario(
        "isales",
        "2026-11-16",
        datetime(2026, 11, 22, tzinfo=TZ),
        2_000,
        ("raw.isales_api_call", "core.fact_isales_api_call"),
        _isales_assets,
        _resources("isales"),
        floor=3,
    ),
    "pushlog": Scenario(
        "pushlog",
        "2026-11-01",
        datetime(2026, 11, 30, tzinfo=TZ),  # the month's last day
        2_000,
        ("raw.pushlog", "core.fact_push_log"),
        _pushlog_assets,
        _resources("pushlog"),
    ),
}


class Warehouse:
    """Counters of one database: row versions per table and the WAL position."""

    def __init__(self, url: str, tables: tuple[str, ...]) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.tables = (*tables, PULL_LOG)

    def versions(self) -> dict[str, int]:
        """Once the pipeline's backends have flushed their counters (they do as their
        connections close): stable over two readings."""
        last: dict[str, int] | None = None
        for _ in range(100):
            self.conn.execute("SELECT pg_stat_clear_snapshot()")
            now = dict(
                self.conn.execute(
                    "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del "
                    "FROM pg_stat_user_tables WHERE schemaname || '.' || relname = ANY(%s)",
                    (list(self.tables),),
                ).fetchall()
            )
            if now == last:
                return now
            last = now
            time.sleep(0.15)
        raise RuntimeError("statistics did not settle")

    def wal(self) -> int:
        return int(self.conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _materialize(assets: list, partition: str, resources: dict[str, Any]) -> list[dict[str, Any]]:
    from dagster import DagsterInstance, materialize

    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets,
            partition_key=partition,
            resources=resources,
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    return [
        {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    ]


def _one(sc: Scenario, wh: Warehouse, env: dict[str, str], url: str) -> dict[str, Any]:
    """One run, measured."""
    before, wal = wh.versions(), wh.wal()
    started = time.monotonic()
    metas = _materialize(sc.assets(), sc.partition, sc.resources(env, url))
    seconds = time.monotonic() - started
    after = wh.versions()
    written = {t: after.get(t, 0) - before.get(t, 0) for t in wh.tables}
    # A multi-asset (TRTC) reports one run in each of its materializations: counted once.
    distinct = {m["elapsed_s"]: m for m in metas}.values()
    first = metas[0]
    return {
        "pull": first.get("pull", "full"),
        "pulled_from": first.get("pulled_from"),
        "requests": sum(int(m["requests"]) for m in distinct),
        "records": sum(int(m["records_received"]) for m in distinct),
        "row_versions": sum(n for t, n in written.items() if t != PULL_LOG),
        "pull_log_rows": written[PULL_LOG],
        "wal_bytes": wh.wal() - wal,
        "seconds": round(seconds, 2),
        "calls_asked": sum(int(m.get("calls_asked", 0)) for m in metas),
    }


@contextlib.contextmanager
def _clock(simulator: Any, at: list[datetime]) -> Iterator[Callable[[datetime], None]]:
    """Moves the simulator's data clock and the pipeline's together."""
    from pipelines.defs.sources.trtc import plan
    from pipelines.lib import refresh

    saved = refresh.utc_now, plan.vendor_now
    refresh.utc_now = lambda: at[0].astimezone(UTC)
    plan.vendor_now = lambda: at[0].timestamp()

    def set_(when: datetime) -> None:
        at[0] = when
        simulator.state.clock.set(now=when.timestamp(), auth_wall=True)

    try:
        yield set_
    finally:
        refresh.utc_now, plan.vendor_now = saved


def run_scenario(sc: Scenario, admin_url: str, refreshes: int, scale: float) -> dict[str, Any]:
    from simulator.app import Simulator
    from simulator.server import ThreadedServer

    simulator = Simulator()
    volume = max(1, int(sc.volume * scale))
    simulator.settings[sc.name].volume = volume
    if sc.name == "isales":
        simulator.settings["isales"].vdn_ids = (1, 2, 3)
    ticks = [sc.day + timedelta(minutes=7.5) + STEP * k for k in range(refreshes)]
    at = [sc.day]
    server = ThreadedServer(simulator).start()
    env = server.env()
    out: dict[str, Any] = {"volume_per_day": volume, "partition": sc.partition, "refreshes": []}
    try:
        with _clock(simulator, at) as set_clock:
            with fresh_database(admin_url, f"refresh_{sc.name}") as url:
                wh = Warehouse(url, sc.tables)
                if sc.day > _window_start(sc):
                    # The open window's earlier days, loaded before the simulated day (not
                    # counted: the day's refreshes start from their high-water mark).
                    set_clock(sc.day)
                    out["preload"] = _one(sc, wh, env, url)
                for k, tick in enumerate(ticks):
                    set_clock(tick)
                    run = {"k": k, "clock": tick.isoformat(), **_one(sc, wh, env, url)}
                    out["refreshes"].append(run)
                    note(
                        f"  {sc.name} {k:>3} {tick:%H:%M:%S} {run['pull']:>11} req {run['requests']:>6} "
                        f"rec {run['records']:>7} rows {run['row_versions']:>7} wal {run['wal_bytes'] / 1024:>9.1f} KiB"
                    )
                out["unchanged"] = _one(sc, wh, env, url)  # the clock unmoved: nothing new
                out["rows_in_window"] = {
                    t: wh.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                    for t in sc.tables
                }
                wh.close()
            with fresh_database(admin_url, f"full_{sc.name}") as url:
                wh = Warehouse(url, sc.tables)
                out["full"] = _one(sc, wh, env, url)
                out["full_rows_in_window"] = {
                    t: wh.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                    for t in sc.tables
                }
                wh.close()
    finally:
        server.stop()
    out["floor_per_refresh"] = sc.floor
    return _summarize(out)


def _window_start(sc: Scenario) -> datetime:
    window = sc.assets()[0].partitions_def.time_window_for_partition_key(sc.partition)
    return window.start


def _summarize(out: dict[str, Any]) -> dict[str, Any]:
    runs, full, unchanged = out["refreshes"], out["full"], out["unchanged"]
    total = {
        k: sum(r[k] for r in runs)
        for k in ("requests", "records", "row_versions", "pull_log_rows", "wal_bytes")
    }
    budget = 1.2 * (full["requests"] + out["floor_per_refresh"] * len(runs))
    out["total"] = total
    out["targets"] = {
        "requests_day": total["requests"],
        "requests_budget": round(budget),
        "requests_ok": total["requests"] <= budget,
        "unchanged_row_versions": unchanged["row_versions"],
        "unchanged_wal_kib": round(unchanged["wal_bytes"] / 1024, 1),
        "unchanged_ok": unchanged["row_versions"] == 0 and unchanged["wal_bytes"] < 2**20,
        "same_rows_as_full": out["rows_in_window"] == out["full_rows_in_window"],
    }
    return out


def _report(results: dict[str, Any]) -> None:
    print(
        f"\n{'source':<8} {'refreshes':>9} {'requests':>9} {'budget':>7} {'full':>6} {'records':>9} {'full':>8} "
        f"{'rows':>9} {'full':>8} {'WAL MiB':>8} {'full':>7} | unchanged: {'rows':>4} {'WAL KiB':>8}  ok"
    )
    for name, r in results.items():
        t, f, u, g = r["total"], r["full"], r["unchanged"], r["targets"]
        print(
            f"{name:<8} {len(r['refreshes']):>9} {t['requests']:>9,} {g['requests_budget']:>7,} {f['requests']:>6,} "
            f"{t['records']:>9,} {f['records']:>8,} {t['row_versions']:>9,} {f['row_versions']:>8,} "
            f"{t['wal_bytes'] / 2**20:>8.1f} {f['wal_bytes'] / 2**20:>7.1f} | {'':>10} {u['row_versions']:>4} "
            f"{u['wal_bytes'] / 1024:>8.1f}  {g['requests_ok'] and g['unchanged_ok'] and g['same_rows_as_full']}"
        )
    print("\nper refresh (median and max of the day's refreshes, against the one full pull):")
    for name, r in results.items():
        f = r["full"]
        parts = []
        for key, label in (("requests", "requests"), ("records", "records"), ("row_versions", "rows")):
            values = sorted(x[key] for x in r["refreshes"])
            median, top = values[len(values) // 2], values[-1]
            parts.append(f"{label} {median:,}/{top:,} of {f[key]:,}")
        wal = sorted(x["wal_bytes"] for x in r["refreshes"])
        parts.append(
            f"WAL {wal[len(wal) // 2] / 1024:,.0f}/{wal[-1] / 1024:,.0f} KiB of {f['wal_bytes'] / 1024:,.0f}"
        )
        print(f"  {name:<8} " + "; ".join(parts))
    print(
        "\nrequests/records/rows/WAL: the day's refreshes in total, and one full pull of the same window at the "
        "day's end ('full'); budget = 1.2 x (full requests + one per refresh, per VDN for iSales). rows = row versions written to "
        "the source's raw and core tables (raw.pull_log: one row per pull, apart)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--refreshes", type=int, default=96, help="15-minute refreshes (96: a day)")
    parser.add_argument("--scale", type=float, default=1.0, help="the volumes times this")
    parser.add_argument("--quick", action="store_true", help="--scale 0.1: a few minutes")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else args.scale
    results: dict[str, Any] = {}
    with _postgres() as (admin_url, _pid, pg):
        note(f"PostgreSQL: {pg}")
        for name in args.sources:
            note(f"{name}: {args.refreshes} refreshes ...")
            results[name] = run_scenario(SCENARIOS[name], admin_url, args.refreshes, scale)
    _report(results)
    write_results(
        "refresh", {"scale": scale, "refreshes": args.refreshes, "postgres": pg}, {"results": results}
    )


if __name__ == "__main__":
    main()
