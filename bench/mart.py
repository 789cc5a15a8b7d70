"""The mart at scale (issue 21): the hourly mart job and the README's ten queries with `core`
holding 1M calls, then 10M (CRM and TRTC).

A base of two weeks (about 10k calls, 4k customers, some of them in both sources, push logs
and iSales API calls) is written into `core` in SQL, ending now. History grows by copies of
the base's calls, each shifted two weeks further into the past with customers of its own, so
the last two weeks hold exactly the same rows at every size. At each size:

1. the new customers are keyed (`core/customer_key`, a full first pass) and the mart rebuilt
   by migration 0015 (downgrade to the views, upgrade: the tables filled from them);
2. one warm-up run of the `mart` job, then a simulated hour of loads: the open CRM days, the
   TRTC week, the push-log month and the iSales week loaded again, 20 new calls, 5 late
   records a month back and 5 soft deletes; then the hourly work is timed as Dagster runs it:
   the `mart` job's assets, then one `mart_days` run per stretch of touched days (what the
   `mart_days` sensor asks for);
3. each README query, best of three.

    .venv/bin/python -m bench.mart --sizes 1000000 10000000   # ~15 min on 2 cores
    .venv/bin/python -m bench.mart --sizes 200000 --keep      # quick; keep the database
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DAYS = 14  # the base's span; copy k lies k * BASE_DAYS days earlier
CUSTOMERS = 4000  # the base's customers; copy k's are offset by k * CUSTOMERS
CRM_CALLS, TRTC_CALLS, PUSHES, API_CALLS = 8000, 2000, 20000, 4000
STRIDE = 10_000_000  # id offset between copies (CRM ids), beyond the base's

BASE = [
    "SELECT setseed(0.21)",
    "INSERT INTO core.dim_crm_hangup_reason (id, name, _loaded_at) SELECT i, "
    "(ARRAY['关机', '空号', '停机', '忙线', '无人接听', '拒接', '呼叫限制', '网络忙'])[1 + i %% 8] || i, "
    "%(now)s FROM generate_series(1, 24) i",
    # CRM: a skewed customer pool (some call often), 30 agents, every code mapped
    "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, agent_name, duration, "
    "ringing_duration, result, call_type, drop_side, hangup_cause_id, _loaded_at) "
    "SELECT i, %(now)s - random() * interval '14 days', 'crm-' || i, "
    "(13800000000 + floor(random() ^ 2 * %(customers)s))::text, 'agent ' || (1 + i %% 30), "
    "CASE WHEN r IN (1, 5) THEN (20 + random() * 600)::int ELSE 0 END, (random() * 40)::int, r, "
    "1 + i %% 3, 1 + i %% 2, CASE WHEN r = 2 THEN 1 + i %% 24 END, %(now)s "
    "FROM (SELECT i, 1 + (random() * 4.99)::int AS r FROM generate_series(1, %(crm)s) i) s",
    # TRTC: half the callers app users, half phone numbers of the CRM's pool (both sources)
    "INSERT INTO core.fact_trtc_call (sdk_app_id, call_id, started_at, accepted_at, ended_at, caller, "
    "call_type, call_result, _loaded_at) "
    "SELECT 1400000001, 'trtc-' || i, t, CASE WHEN r IN ('normal_end', 'interrupt') THEN t + interval '5 s' END, "
    "t + (10 + random() * 300) * interval '1 s', "
    "CASE WHEN i %% 2 = 0 THEN 'u_' || c ELSE (13800000000 + c)::text END, 'single', r, %(now)s "
    "FROM (SELECT i, %(now)s - random() * interval '14 days' AS t, floor(random() ^ 2 * %(customers)s) AS c, "
    "(ARRAY['normal_end', 'normal_end', 'interrupt', 'not_answer', 'reject', 'cancel', 'call_busy'])"
    "[1 + (random() * 6.99)::int] AS r FROM generate_series(1, %(trtc)s) i) s",
    "INSERT INTO core.fact_push_log (enterprise_id, id, create_time, latency_ms, type, result, status_code, "
    "retry, _loaded_at) SELECT 7000001, i, %(now)s - random() * interval '14 days', (random() * 900)::int, "
    "1 + i %% 29, CASE WHEN random() < 0.97 THEN 1 ELSE 0 END, 200, (random() * 1.2)::int, %(now)s "
    "FROM generate_series(1, %(pushes)s) i",
    "INSERT INTO core.fact_isales_api_call (vdn_id, id, oper_time, url, result_code, _loaded_at) "
    "SELECT 1 + i %% 3, 'api-' || i, %(now)s - random() * interval '14 days', "
    "(ARRAY['/rest/isales/v1/openapi/campaigns/' || (1 + i %% 3) || '/tasks/' || i, "
    "'/rest/isales/v1/openapi/campaigns/' || (1 + i %% 3) || '/calldata/query'])[1 + i %% 2], "
    "CASE WHEN random() < 0.95 THEN '0200000' ELSE '02000001' END, %(now)s "
    "FROM generate_series(1, %(api)s) i",
]
# Copies lo..hi of the base's calls, copy k k * BASE_DAYS days earlier with customers of its own.
GROW = [
    "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, agent_name, duration, "
    "ringing_duration, result, call_type, drop_side, hangup_cause_id, _loaded_at) "
    "SELECT b.id + k::bigint * %(stride)s, b.created_at - k * %(span)s, b.call_id || '-' || k, "
    "(b.customer_number::bigint + k * %(customers)s)::text, b.agent_name, b.duration, b.ringing_duration, "
    "b.result, b.call_type, b.drop_side, b.hangup_cause_id, b._loaded_at - k * %(span)s "
    "FROM core.fact_crm_call b CROSS JOIN generate_series(%(lo)s::int, %(hi)s::int) k WHERE b.id <= %(crm)s",
    "INSERT INTO core.fact_trtc_call (sdk_app_id, call_id, started_at, accepted_at, ended_at, caller, "
    "call_type, call_result, _loaded_at) "
    "SELECT b.sdk_app_id, b.call_id || '-' || k, b.started_at - k * %(span)s, b.accepted_at - k * %(span)s, "
    "b.ended_at - k * %(span)s, CASE WHEN b.caller LIKE 'u\\_%%' THEN 'u_' || (substr(b.caller, 3)::bigint "
    "+ k * %(customers)s) ELSE (b.caller::bigint + k * %(customers)s)::text END, b.call_type, b.call_result, "
    "b._loaded_at - k * %(span)s "
    "FROM core.fact_trtc_call b CROSS JOIN generate_series(%(lo)s::int, %(hi)s::int) k WHERE b.call_id ~ '^trtc-[0-9]+$'",
]
# An hour of loads, as the loaders write them: open partitions pulled again (_loaded_at moves),
# new calls, late records of a month ago, soft deletes.
HOUR = [
    "UPDATE core.fact_crm_call SET _loaded_at = %(now)s WHERE created_at >= %(now)s - interval '2 days'",
    "UPDATE core.fact_trtc_call SET _loaded_at = %(now)s WHERE started_at >= %(now)s - interval '7 days'",
    "UPDATE core.fact_push_log SET _loaded_at = %(now)s WHERE create_time >= date_trunc('month', %(now)s)",
    "UPDATE core.fact_isales_api_call SET _loaded_at = %(now)s WHERE oper_time >= %(now)s - interval '7 days'",
    "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, agent_name, duration, "
    "ringing_duration, result, call_type, _loaded_at) SELECT 9000000000000 + i + %(hour)s * 100, "
    "%(now)s - i * interval '1 minute', 'new-' || %(hour)s || '-' || i, (13990000000 + %(hour)s * 100 + i)::text, "
    "'agent 1', 60, 5, 5, 1, %(now)s FROM generate_series(1, 20) i",
    "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, agent_name, duration, "
    "ringing_duration, result, call_type, _loaded_at) SELECT 9100000000000 + i + %(hour)s * 100, "
    "%(now)s - interval '30 days' - i * interval '1 day', 'late-' || %(hour)s || '-' || i, "
    "'13800000001', 'agent 2', 30, 5, 5, 1, %(now)s FROM generate_series(1, 5) i",
    "UPDATE core.fact_crm_call SET _gone_at = %(now)s WHERE id IN "
    "(SELECT id FROM core.fact_crm_call WHERE created_at >= %(now)s - interval '1 day' AND _gone_at IS NULL "
    "ORDER BY id LIMIT 5)",
]


def _readme_queries() -> list[tuple[str, str]]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Ten example queries") :]
    return [(n, block) for block, n in re.findall(r"```sql\n(-- (\d+)\. .*?)```", section, flags=re.S)]


def _execute(url: str, statements: list[str], params: dict[str, Any]) -> float:
    import psycopg

    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")  # the setup, not what is measured
        for statement in statements:
            conn.execute(statement, params)
    return time.monotonic() - started


def _calls(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM core.fact_crm_call) + (SELECT count(*) FROM core.fact_trtc_call)"
        ).fetchone()[0]


def _state(url: str, rows: list | None = None) -> list:
    """core.mart_state but the facts' watermark: read it, or write ``rows`` back."""
    import psycopg

    with psycopg.connect(url) as conn:
        if rows is None:
            return conn.execute(
                "SELECT name, value FROM core.mart_state WHERE name <> 'facts_seen'"
            ).fetchall()
        for name, value in rows:
            conn.execute("INSERT INTO core.mart_state VALUES (%s, %s, now())", (name, value))
    return rows


def _vacuum(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _alembic(url: str, action: str, target: str) -> float:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from pipelines.lib import warehouse

    started = time.monotonic()
    engine = create_engine(warehouse.sqlalchemy_url(url))
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(warehouse.MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)
    engine.dispose()
    return time.monotonic() - started


def _run(assets: list, resources: dict, tags: dict | None = None) -> tuple[float, dict[str, dict]]:
    from dagster import DagsterInstance, materialize

    started = time.monotonic()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = materialize(
        assets, resources=resources, instance=DagsterInstance.ephemeral(), tags=tags, run_config=quiet
    )
    meta = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    return time.monotonic() - started, meta


def hourly(url: str, resources: dict) -> dict[str, Any]:
    """The mart job's assets, then the mart_days runs the sensor would ask for."""
    from pipelines.defs.mart import assets, days, tables
    from pipelines.defs.mart.jobs import RANGE_END, RANGE_START

    mart_s, meta = _run([assets.customer_identity, assets.customer_key, assets.mart_views], resources)
    touched = meta["mart/calls"]["days_touched"]
    ranges = days.day_ranges(touched, assets.reporting_daily.get_partition_keys())
    days_s = 0.0
    for first, last in ranges:
        seconds, _ = _run([tables.mart_tables], resources, {RANGE_START: first, RANGE_END: last})
        days_s += seconds
    return {
        "total_s": round(mart_s + days_s, 2),
        "mart_job_s": round(mart_s, 2),
        "customer_key_s": meta["core/customer_key"]["elapsed_s"],
        "keyed_now": meta["core/customer_key"]["keyed_now"],
        "mart_days_runs_s": round(days_s, 2),
        "days_touched": len(touched),
        "runs": len(ranges),
    }


def queries(url: str, today: date) -> dict[str, float]:
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for number, query in _readme_queries():
            best = float("inf")
            for _ in range(3):
                started = time.monotonic()
                conn.execute(query.replace("current_date", f"DATE '{today}'")).fetchall()
                best = min(best, time.monotonic() - started)
            out[number] = round(best, 4)
    return out


def measure_size(url: str, size: int, copies_done: int, resources: dict, now: datetime) -> tuple[dict, int]:
    base = CRM_CALLS + TRTC_CALLS
    copies = max(0, -(-(size - base) // base))
    span = timedelta(days=BASE_DAYS)
    params = {"stride": STRIDE, "span": span, "customers": CUSTOMERS, "crm": CRM_CALLS}
    grow_s = 0.0
    for lo in range(copies_done + 1, copies + 1, 50):  # 50 copies a transaction
        grow_s += _execute(url, GROW, {**params, "lo": lo, "hi": min(lo + 49, copies)})
    _vacuum(url)
    from pipelines.defs.mart import assets

    # The copies were loaded "in the past": key them all, as their loads would have.
    _execute(url, ["DELETE FROM core.mart_state WHERE name = 'customer_key_id'"], {})
    key_s, _ = _run([assets.customer_identity, assets.customer_key], resources)
    # The rebuild drops core.mart_state with the tables: the key's fingerprint and watermark are
    # put back, as a deployment that migrates keeps them (else the next run rekeys everyone).
    kept = _state(url)
    rebuild_s = _alembic(url, "downgrade", "0013") + _alembic(url, "upgrade", "head")
    _state(url, kept)
    _vacuum(url)
    hourly(url, resources)  # warm-up: views applied, watermarks after the rebuild
    from bench.common import machine_busy

    busy = machine_busy()
    runs = []
    for hour in range(2):
        _execute(url, HOUR, {"now": datetime.now(UTC), "hour": hour + copies * 10})
        runs.append(hourly(url, resources))
    result = {
        "calls": _calls(url),
        "copies": copies,
        "history_days": (copies + 1) * BASE_DAYS,
        "grow_s": round(grow_s, 1),
        "key_all_s": round(key_s, 1),
        "rebuild_by_migration_s": round(rebuild_s, 1),
        "hourly": min(runs, key=lambda r: r["total_s"]),
        "hourly_runs": runs,
        "queries_s": queries(url, now.date()),
        "machine_before_hourly": busy,
    }
    return result, copies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="calls in core")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    copies = max(0, -(-(max(args.sizes) - CRM_CALLS - TRTC_CALLS) // (CRM_CALLS + TRTC_CALLS)))
    # Every reporting day of the history is a partition of the tables kept by day.
    os.environ["MART_START_DATE"] = (now - timedelta(days=(copies + 2) * BASE_DAYS)).date().isoformat()
    os.environ.setdefault("PII_HASH_KEY", "bench-pii-hash-key")

    from bench.common import machine_busy, note, write_results
    from bench.crm import _postgres, fresh_database
    from pipelines.defs.mart import pii
    from pipelines.lib.warehouse import WarehouseResource

    with _postgres() as (admin_url, _, described), fresh_database(admin_url, "mart", keep=args.keep) as url:
        note(f"PostgreSQL: {described}; database {url.rsplit('/', 1)[-1]}")
        resources = {
            "warehouse": WarehouseResource(url=url),
            "customers": pii.CustomersResource(hash_key=os.environ["PII_HASH_KEY"]),
        }
        params = {"now": now, "customers": CUSTOMERS, "crm": CRM_CALLS, "trtc": TRTC_CALLS}
        _execute(url, BASE, {**params, "pushes": PUSHES, "api": API_CALLS})
        results, done = {}, 0
        busy = machine_busy()
        for size in sorted(args.sizes):
            note(f"size {size:,}: growing core, keying, rebuilding, then the hourly job and the queries")
            results[size], done = measure_size(url, size, done, resources, now)
            note(json.dumps(results[size], indent=1))
    path = write_results("mart", {"sizes": args.sizes, "machine": busy}, results)
    _print(results)
    note(f"results: {path}")


def _print(results: dict[int, dict]) -> None:
    sizes = sorted(results)
    print(f"{'':34}" + "".join(f"{s:>14,}" for s in sizes) + ("   ratio" if len(sizes) > 1 else ""))

    def line(label: str, values: list[float]) -> None:
        ratio = f"{values[-1] / values[0]:8.2f}" if len(values) > 1 and values[0] else ""
        print(f"{label:34}" + "".join(f"{v:14.3f}" for v in values) + ratio)

    line("calls in core (M)", [results[s]["calls"] / 1e6 for s in sizes])
    for key in ("total_s", "mart_job_s", "customer_key_s", "mart_days_runs_s", "days_touched", "runs"):
        line(f"hourly {key}", [float(results[s]["hourly"][key]) for s in sizes])
    for key in ("grow_s", "key_all_s", "rebuild_by_migration_s"):
        line(f"setup {key}", [float(results[s][key]) for s in sizes])
    for number in results[sizes[0]]["queries_s"]:
        line(f"README query {number} s", [results[s]["queries_s"][number] for s in sizes])


if __name__ == "__main__":
    main()
