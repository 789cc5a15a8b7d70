"""Benchmark of the push-log pipeline (bench/README.md, "Targets").

    .venv/bin/python -m bench.pushlog --records 2000000                  # both parts
    .venv/bin/python -m bench.pushlog --records 2000000 --parts month    # the closed month only

Two parts, one simulator (volume = records / days of the month, per day):

- ``month``: a closed month in full (the final pull). Three measurements, each in its own
  spawned child: fetch-only (``PushLogClient.pages``, no database), end to end
  (``dagster.materialize`` of ``core/fact_push_log``), a bare COPY of the rows core ended up
  with. Requests: one walk of the month needs N // 500 + 1 (offset paging without a total
  ends at the first short page); a month this large is split into concurrent sub-windows by
  its first page, which costs that page plus at most one request per sub-window.
- ``refresh``: the open month. The simulator's data clock is frozen at the current minute
  (``POST /_sim/clock {"now": T, "auth_wall": true}``: signatures stay judged by the wall
  clock) and the asset's ``utc_now`` is set to the same T, as tests/test_pushlog_pipeline.py
  does; a full pull of the open month (nothing loaded yet), then, for each ``--refresh-minutes``
  step, the clock moves forward and the asset runs again (it picks the incremental pull from
  the month's high-water mark by itself). Requests and seconds of each refresh against the full pull.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import math
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import (
    cpu_cols,
    fresh_database,
    machine_busy,
    materialize_one,
    measure_copy,
    note,
    sim_clock,
    sim_stats,
    write_results,
)
from bench.crm import Meter, _in_child, _maxrss_mib, _postgres, _simulator_pid

TABLE = "core/fact_push_log"
PAGE = 500


def _resource(cfg: dict) -> Any:
    """As tests/test_pushlog_pipeline.py builds it: from the simulator's environment, no
    client-side rate limit (the simulator has none); default concurrency (8 requests at once)."""
    from pipelines.defs.sources.pushlog.client import PushLogResource

    env = cfg["env"]
    return PushLogResource(
        base_url=env["PUSHLOG_BASE_URL"],
        access_key_id=env["PUSHLOG_ACCESS_KEY_ID"],
        access_key_secret=env["PUSHLOG_ACCESS_KEY_SECRET"],
        enterprise_id=env["PUSHLOG_ENTERPRISE_ID"],
        rate_per_s=0.0,
        concurrency=cfg["concurrency"],
    )


def _window(month: str) -> tuple[datetime, datetime]:
    from pipelines.defs.sources.pushlog.partitions import pushlog_monthly

    w = pushlog_monthly.time_window_for_partition_key(month)
    return w.start, w.end


def measure_fetch(cfg: dict) -> dict[str, Any]:
    """Every page of the month through ``PushLogClient.pages`` (sub-windows walked
    concurrently, as the asset does); no database."""
    start, end = _window(cfg["month"])
    pushlog = _resource(cfg)
    rss_before = _maxrss_mib()

    async def run() -> tuple[int, int, int]:
        client = pushlog.client()
        records = 0
        async with client.http:
            async for page in client.pages(start, end, ZoneInfo(cfg["tz"])):
                records += page.records
        return records, client.http.stats.requests, client.http.stats.retries

    with Meter(cfg) as meter:
        records, requests, retries = asyncio.run(run())
    return {
        **meter.report(records),
        "requests": requests,
        "retries": retries,
        "peak_rss_mib": round(_maxrss_mib(), 1),
        "rss_after_imports_mib": round(rss_before, 1),
    }


def measure_e2e(cfg: dict) -> dict[str, Any]:
    """``materialize`` of the asset for ``cfg["month"]``; with ``cfg["now"]`` the asset's clock
    (``refresh.utc_now``) is that instant, the simulator's frozen data clock."""
    import psycopg

    from pipelines.defs.sources.pushlog import assets
    from pipelines.lib import refresh
    from pipelines.lib.warehouse import WarehouseResource

    if cfg.get("now") is not None:
        frozen = datetime.fromtimestamp(cfg["now"], UTC)
        refresh.utc_now = lambda: frozen  # what decides open/closed and the range
    with psycopg.connect(cfg["url"]) as conn:
        rows_before = conn.execute("SELECT count(*) FROM core.fact_push_log").fetchone()[0]
    rss_before = _maxrss_mib()
    meter = Meter(cfg)
    resources = {"warehouse": WarehouseResource(url=cfg["url"]), "pushlog": _resource(cfg)}
    detail = materialize_one(assets.ASSETS, cfg["month"], resources, meter)
    md = detail["metadata"][TABLE]
    out = meter.report(int(md["records_received"]))
    out.update(metadata=md, checks=detail["checks"], asset_elapsed_s=md["elapsed_s"])
    out.update(
        {k: md[k] for k in ("requests", "retries", "pages")},
        pull_kind=md["pull"],
        pulled_range=f"[{md['pulled_from']}, {md['pulled_to']})",
        rows_in_month=md["dagster/row_count"],
    )
    out["peak_rss_mib"] = round(_maxrss_mib(), 1)
    out["rss_after_imports_mib"] = round(rss_before, 1)
    with psycopg.connect(cfg["url"]) as conn:
        out["rows_core"] = conn.execute("SELECT count(*) FROM core.fact_push_log").fetchone()[0]
        out["rows_raw"] = conn.execute("SELECT count(*) FROM raw.pushlog").fetchone()[0]
        out["rejects"] = conn.execute("SELECT count(*) FROM raw.rejects").fetchone()[0]
    out["rows_new"] = out["rows_core"] - rows_before
    checks_ok = all(detail["checks"].values())
    out["verified"] = out["rows_core"] == out["rows_raw"] and out["rejects"] == 0 and checks_ok
    if cfg.get("n") is not None:
        out["verified"] = out["verified"] and out["rows_core"] == cfg["n"]
    return out


def _days(month: str) -> int:
    d = date.fromisoformat(month)
    return calendar.monthrange(d.year, d.month)[1]


def _previous_month(tz: str) -> str:
    today = datetime.now(ZoneInfo(tz)).date()
    first = today.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1).isoformat()


def run_month(args: argparse.Namespace, cfg: dict, admin_url: str) -> dict[str, Any]:
    from pipelines.defs.sources.pushlog import normalize

    month = cfg["month"] = args.month or _previous_month(cfg["tz"])
    days = _days(month)
    n = cfg["n"] = cfg["volume"] * days
    out: dict[str, Any] = {"month": month, "days": days, "records": n}
    note(f"  month {month}: fetch ...")
    out["fetch"] = _in_child(measure_fetch, cfg)
    out["requests_minimum"] = n // PAGE + 1
    if args.fetch_only:
        return out
    note(f"  month {month}: e2e ...")
    with fresh_database(admin_url, "pushlog", args.keep) as e2e_url:
        out["e2e"] = _in_child(measure_e2e, {**cfg, "url": e2e_url})
        note(f"  month {month}: copy ...")
        with fresh_database(admin_url, "pushlog", args.keep) as copy_url:
            out["copy"] = _in_child(
                measure_copy,
                {
                    **cfg,
                    "url": copy_url,
                    "source_url": e2e_url,
                    "targets": [(t.table, list(t.columns)) for t in normalize.PUSH_LOGS.targets],
                    "raw_table": normalize.PUSH_LOGS.raw_table,
                },
            )
    slower = min(out["fetch"]["rec_per_s"], out["copy"]["rec_per_s"])
    out["e2e_over_slower_half"] = round(out["e2e"]["rec_per_s"] / slower, 3)
    return out


def run_refresh(args: argparse.Namespace, cfg: dict, admin_url: str, root: str) -> dict[str, Any]:
    tz = cfg["tz"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    month = now.astimezone(ZoneInfo(tz)).date().replace(day=1).isoformat()
    t = now.timestamp()
    runs = []
    with fresh_database(admin_url, "pushlog_open", args.keep) as url:
        sim_clock(root, now=t, auth_wall=True)
        note(f"  open month {month}: full pull at {now.isoformat()} ...")
        runs.append(
            {
                "step": "full",
                "clock": now.isoformat(),
                **_in_child(measure_e2e, {**cfg, "url": url, "month": month, "now": t}),
            }
        )
        for minutes in args.refresh_minutes:
            t += minutes * 60
            sim_clock(root, now=t, auth_wall=True)
            before = sim_stats(root)
            note(f"  open month {month}: refresh after +{minutes} min ...")
            run = _in_child(measure_e2e, {**cfg, "url": url, "month": month, "now": t})
            after = sim_stats(root)
            key = "pushlog /"
            run["simulator_requests"] = after.get(key, 0) - before.get(key, 0)
            runs.append(
                {"step": f"+{minutes} min", "clock": datetime.fromtimestamp(t, UTC).isoformat(), **run}
            )
    sim_clock(root, offset=0, auth_wall=False)
    return {"month": month, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pushlog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="deliveries in the closed month")
    parser.add_argument("--month", help="closed month's partition key (default: the previous month)")
    parser.add_argument("--parts", nargs="+", choices=["month", "refresh"], default=["month", "refresh"])
    parser.add_argument(
        "--refresh-minutes", type=float, nargs="+", default=[10, 60], help="clock steps before each refresh"
    )
    parser.add_argument("--fetch-only", action="store_true", help="month part: the fetch measurement only")
    parser.add_argument("--concurrency", type=int, default=8, help="PushLogResource.concurrency (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)

    from pipelines.defs.sources.pushlog.partitions import pushlog_monthly
    from simulator.app import Simulator
    from simulator.server import free_port, subprocess_server

    tz = pushlog_monthly.timezone
    days = _days(args.month or _previous_month(tz))
    volume = math.ceil(args.records / days)
    load = machine_busy()
    note(f"pushlog: volume {volume}/day; machine {load}")
    port = free_port()
    out: dict[str, Any] = {}
    with (
        _postgres() as (admin_url, pg_pid, where),
        subprocess_server(["--volume", str(volume), "--latency-ms", "0"], port=port) as root,
    ):
        cfg = {
            "tz": tz,
            "volume": volume,
            "env": Simulator().env(root),
            "sim_pid": _simulator_pid(port),
            "pg_pid": pg_pid,
            "concurrency": args.concurrency,
        }
        if "month" in args.parts:
            out["month"] = run_month(args, dict(cfg), admin_url)
        if "refresh" in args.parts:
            out["refresh"] = run_refresh(args, dict(cfg), admin_url, root)
    print(f"Push logs {TABLE}, volume {volume:,}/day; {where}; {os.cpu_count()} CPUs")
    if "month" in out and args.fetch_only:
        f = out["month"]["fetch"]
        print(
            f"\nclosed month {out['month']['month']}, fetch only: {f['rec_per_s']:,} rec/s, {f['seconds']} s,"
        )
        print(
            f"requests {f['requests']} (minimum {out['month']['requests_minimum']}), CPU cli/sim/other {cpu_cols(f, ('client', 'simulator', 'other'))}, RSS {f['peak_rss_mib']:.0f} MiB"
        )
    elif "month" in out:
        m = out["month"]
        f, c, e = m["fetch"], m["copy"], m["e2e"]
        print(
            f"\nclosed month {m['month']} ({m['days']} days, {m['records']:,} deliveries), final full pull:"
        )
        print(
            f"{'fetch rec/s':>11} {'copy rec/s':>10} {'(jsonb)':>8} {'e2e rec/s':>9} {'e2e/min':>7}"
            f" {'requests fetch/e2e/min':>22} {'e2e s':>7} {'RSS MiB fetch/copy/e2e':>22}"
            f" {'fetch CPU cli/sim':>17} {'e2e CPU cli/sim/pg/other':>24} {'rows ok':>7}"
        )
        requests = f"{f['requests']}/{e['requests']}/{m['requests_minimum']}"
        rss = f"{f['peak_rss_mib']:.0f}/{c['peak_rss_mib']:.0f}/{e['peak_rss_mib']:.0f}"
        print(
            f"{f['rec_per_s']:>11,} {c['rec_per_s']:>10,} {c['jsonb']['rec_per_s']:>8,} {e['rec_per_s']:>9,}"
            f" {m['e2e_over_slower_half']:>7.2f} {requests:>22}"
            f" {e['seconds']:>7.1f} {rss:>22}"
            f" {cpu_cols(f, ('client', 'simulator')):>17} {cpu_cols(e):>24} {'yes' if e['verified'] else 'NO':>7}"
        )
        print(
            f"seconds: fetch {f['seconds']}, copy {c['seconds']}, e2e {e['seconds']} (asset {e['asset_elapsed_s']})"
        )
    if "refresh" in out:
        r = out["refresh"]
        full = r["runs"][0]
        print(f"\nopen month {r['month']}, data clock frozen and moved forward:")
        print(
            f"{'run':>10} {'kind':>11} {'requests':>8} {'seconds':>8} {'asset s':>7} {'received':>9}"
            f" {'rows new':>8} {'rows in month':>13} {'rec/s':>7} {'RSS MiB':>7} {'ok':>3}"
        )
        for run in r["runs"]:
            print(
                f"{run['step']:>10} {run['pull_kind']:>11} {run['requests']:>8} {run['seconds']:>8.2f}"
                f" {run['asset_elapsed_s']:>7.2f} {run['records']:>9,} {run['rows_new']:>8,} {run['rows_in_month']:>13,}"
                f" {run['rec_per_s']:>7,} {run['peak_rss_mib']:>7.0f} {'yes' if run['verified'] else 'NO':>3}"
            )
        for run in r["runs"][1:]:
            print(
                f"refresh {run['step']}: {run['requests']} requests ({run['requests'] / full['requests']:.2%} of the full"
                f" pull's {full['requests']}), {run['seconds']:.2f} s ({run['seconds'] / full['seconds']:.1%} of"
                f" {full['seconds']:.1f} s); range {run['pulled_range']}"
            )
    write_results("pushlog", {"warehouse": where, "machine_before": load, "volume": volume}, out)


if __name__ == "__main__":
    main()
