"""Benchmark of the iSales call-log pipeline (bench/README.md, "Targets").

    .venv/bin/python -m bench.isales --per-vdn 100000

One closed Monday-to-Monday week, two VDNs (the simulator's default), N records per VDN-week
(simulator volume = N / 7 per day per VDN). Three measurements, each in its own spawned
child: fetch-only (``ISalesClient.call_log_pages``, every VDN, no database), end to end
(``dagster.materialize`` of ``core/fact_isales_api_call``), and a bare COPY of the rows core
ended up with. Requests per VDN must be ceil(N / 100), the minimum at limit 100.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import (
    cpu_cols,
    fresh_database,
    machine_busy,
    materialize_one,
    measure_copy,
    note,
    write_results,
)
from bench.crm import Meter, _in_child, _maxrss_mib, _postgres, _simulator_pid

TABLE = "core/fact_isales_api_call"


def _resource(cfg: dict) -> Any:
    """Built as tests/test_isales_pipeline.py does (from the simulator's environment, no
    client-side rate limit: the simulator has none)."""
    from pipelines.defs.sources.isales.client import ISalesResource

    env = cfg["env"]
    return ISalesResource(
        base_url=env["ISALES_BASE_URL"],
        ak=env["ISALES_AK"],
        sk=env["ISALES_SK"],
        vdn_ids=cfg["vdn_ids"],
        timezone=env["ISALES_TIMEZONE"],
        sign_variant=env["ISALES_SIGN_VARIANT"],
        rate_per_s=0,
        concurrency=cfg["concurrency"],
    )


def _window(week: str) -> tuple[datetime, datetime]:
    from pipelines.defs.sources.isales.partitions import isales_weekly

    w = isales_weekly.time_window_for_partition_key(week)
    return w.start, w.end


def measure_fetch(cfg: dict) -> dict[str, Any]:
    """Every page of every VDN through ``call_log_pages`` (VDN after VDN, as the asset does)."""
    from pipelines.defs.sources.isales.client import VdnPull

    start, end = _window(cfg["week"])
    isales = _resource(cfg)
    rss_before = _maxrss_mib()

    async def run() -> dict[int, dict[str, Any]]:
        client = isales.client()
        out = {}
        async with client.http:
            for vdn in isales.vdn_list():
                pull = VdnPull(vdn)
                before = client.http.stats.requests
                async for _page in client.call_log_pages(vdn, start, end, pull):
                    pass
                out[vdn] = {
                    "records": pull.records,
                    "pages": pull.pages,
                    "requests": client.http.stats.requests - before,
                    "api_count": pull.api_count,
                }
            out["retries"] = client.http.stats.retries  # type: ignore[index]
        return out

    with Meter(cfg) as meter:
        per_vdn = asyncio.run(run())
    retries = per_vdn.pop("retries")
    records = sum(v["records"] for v in per_vdn.values())
    return {
        **meter.report(records),
        "per_vdn": per_vdn,
        "requests": sum(v["requests"] for v in per_vdn.values()),
        "retries": retries,
        "peak_rss_mib": round(_maxrss_mib(), 1),
        "rss_after_imports_mib": round(rss_before, 1),
    }


def measure_e2e(cfg: dict) -> dict[str, Any]:
    import psycopg

    from pipelines.defs.sources.isales.assets import fact_isales_api_call
    from pipelines.lib.warehouse import WarehouseResource

    rss_before = _maxrss_mib()
    meter = Meter(cfg)
    resources = {"warehouse": WarehouseResource(url=cfg["url"]), "isales": _resource(cfg)}
    detail = materialize_one([fact_isales_api_call], cfg["week"], resources, meter)
    md = detail["metadata"][TABLE]
    out = meter.report(int(md["records_received"]))
    out.update(metadata=md, checks=detail["checks"], asset_elapsed_s=md["elapsed_s"])
    out["per_vdn"] = {
        v: {"rows": md[f"vdn_{v}_rows"], "requests": md[f"vdn_{v}_requests"], "pages": md[f"vdn_{v}_pages"]}
        for v in cfg["vdns"]
    }
    out["peak_rss_mib"] = round(_maxrss_mib(), 1)
    out["rss_after_imports_mib"] = round(rss_before, 1)
    with psycopg.connect(cfg["url"]) as conn:
        core = conn.execute("SELECT count(*) FROM core.fact_isales_api_call").fetchone()[0]
        raw = conn.execute("SELECT count(*) FROM raw.isales_api_call").fetchone()[0]
        rejects = conn.execute("SELECT count(*) FROM raw.rejects").fetchone()[0]
    out.update(rows_core=core, rows_raw=raw, rejects=rejects)
    out["verified"] = core == raw == cfg["n"] and rejects == 0 and all(detail["checks"].values())
    return out


def _last_closed_week(tz: str) -> str:
    today = datetime.now(ZoneInfo(tz)).date()
    monday = today - timedelta(days=today.weekday())
    return (monday - timedelta(days=7)).isoformat()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.isales", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--per-vdn", type=int, default=100_000, help="records per VDN-week (rounded to 7 x volume)"
    )
    parser.add_argument("--week", help="partition key, a Monday (default: the last closed week)")
    parser.add_argument("--vdns", default="1,2", help="ISALES_VDN_IDS (the simulator serves 1 and 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="ISalesResource.concurrency (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)

    from pipelines.defs.sources.isales.partitions import isales_weekly
    from simulator.app import Simulator
    from simulator.server import free_port, subprocess_server

    tz = isales_weekly.timezone
    week = args.week or _last_closed_week(tz)
    volume = math.ceil(args.per_vdn / 7)
    vdns = [int(v) for v in args.vdns.split(",")]
    start, end = _window(week)
    days = round((end - start).total_seconds() / 86400)
    n_vdn = volume * days
    n = n_vdn * len(vdns)
    load = machine_busy()
    note(f"isales: week {week}, volume {volume}/day/VDN -> {n_vdn} per VDN, {n} in all; machine {load}")
    port = free_port()
    results: dict[str, Any] = {}
    with (
        _postgres() as (admin_url, pg_pid, where),
        subprocess_server(["--volume", str(volume), "--latency-ms", "0"], port=port) as root,
    ):
        cfg = {
            "n": n,
            "week": week,
            "tz": tz,
            "vdn_ids": args.vdns,
            "vdns": vdns,
            "env": Simulator().env(root),
            "sim_pid": _simulator_pid(port),
            "pg_pid": pg_pid,
            "concurrency": args.concurrency,
        }
        note("  fetch ...")
        results["fetch"] = _in_child(measure_fetch, cfg)
        note("  e2e ...")
        with fresh_database(admin_url, "isales", args.keep) as e2e_url:
            results["e2e"] = _in_child(measure_e2e, {**cfg, "url": e2e_url})
            note("  copy ...")
            with fresh_database(admin_url, "isales", args.keep) as copy_url:
                from pipelines.defs.sources.isales import normalize

                results["copy"] = _in_child(
                    measure_copy,
                    {
                        **cfg,
                        "url": copy_url,
                        "source_url": e2e_url,
                        "targets": [(t.table, list(t.columns)) for t in normalize.API_CALLS.targets],
                        "raw_table": normalize.API_CALLS.raw_table,
                    },
                )
    f, c, e = results["fetch"], results["copy"], results["e2e"]
    minimum = math.ceil(n_vdn / 100)
    req_fetch = {v: f["per_vdn"][v]["requests"] for v in vdns}
    req_e2e = {v: e["per_vdn"][v]["requests"] for v in vdns}
    ratio = e["rec_per_s"] / min(f["rec_per_s"], c["rec_per_s"])
    print(
        f"iSales {TABLE}, week {week}, {len(vdns)} VDNs x {n_vdn:,} records ({n:,}); {where}; {os.cpu_count()} CPUs"
    )
    print(
        f"{'fetch rec/s':>11} {'copy rec/s':>10} {'(jsonb)':>8} {'e2e rec/s':>9} {'e2e/min':>7}"
        f" {'req/VDN fetch':>13} {'e2e':>11} {'min':>5} {'RSS MiB fetch/copy/e2e':>22}"
        f" {'fetch CPU cli/sim':>17} {'e2e CPU cli/sim/pg/other':>24} {'rows ok':>7}"
    )
    print(
        f"{f['rec_per_s']:>11,} {c['rec_per_s']:>10,} {c['jsonb']['rec_per_s']:>8,} {e['rec_per_s']:>9,}"
        f" {ratio:>7.2f} {'/'.join(map(str, req_fetch.values())):>13} {'/'.join(map(str, req_e2e.values())):>11}"
        f" {minimum:>5} {f['peak_rss_mib']:>8.0f}/{c['peak_rss_mib']:.0f}/{e['peak_rss_mib']:.0f}"
        f" {cpu_cols(f, ('client', 'simulator')):>17} {cpu_cols(e):>24} {'yes' if e['verified'] else 'NO':>7}"
    )
    minimal = all(r == minimum for r in (*req_fetch.values(), *req_e2e.values()))
    print(
        f"requests minimal (ceil(n/100) per VDN): {'yes' if minimal else 'NO'}; seconds fetch {f['seconds']}, "
        f"copy {c['seconds']}, e2e {e['seconds']} (asset {e['asset_elapsed_s']})"
    )
    write_results(
        "isales",
        {"warehouse": where, "machine_before": load, "week": week, "volume": volume, "vdns": vdns},
        {
            "records_per_vdn": n_vdn,
            "records": n,
            "requests_minimum_per_vdn": minimum,
            "requests_minimal": minimal,
            "e2e_over_slower_half": round(ratio, 3),
            **results,
        },
    )


if __name__ == "__main__":
    main()
