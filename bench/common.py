"""What the iSales, push-log and TRTC benchmarks share beyond ``bench.crm``'s helpers.

``bench.crm`` provides the measuring machinery (``Meter``, ``_in_child``, ``_postgres``,
``_simulator_pid``, ``_maxrss_mib``, ``_code_version``); this module adds what those three need
in a more general form: a fresh database named for any source, the simulator's control API,
a generic bare-COPY measurement (the rows ``core`` ended up with, read back from the e2e
database), ``dagster.materialize`` of one asset with its metadata and checks, a machine-load
probe and the results file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.crm import RESULTS_DIR, Meter, _code_version, _maxrss_mib
from bench.crm import fresh_database as fresh_database  # noqa: F401 (the benches import it from here)

# ------------------------------------------------------------------------------------------
# databases and the simulator (parent side)


def sim_clock(root: str, **body: Any) -> float:
    """POST /_sim/clock (``now=`` freezes, ``offset=`` shifts, ``auth_wall=True`` keeps
    signatures judged by the wall clock); returns the simulator's now."""
    reply = httpx.post(f"{root}/_sim/clock", json=body, timeout=10)
    reply.raise_for_status()
    return float(reply.json()["now"])


def sim_stats(root: str) -> dict[str, int]:
    """GET /_sim/stats: request counts per "vendor endpoint" (and e.g. "trtc rate_limited")."""
    reply = httpx.get(f"{root}/_sim/stats", timeout=10)
    reply.raise_for_status()
    return reply.json()


def machine_busy(seconds: float = 2.0) -> dict[str, Any]:
    """How busy the machine is before a run, and which other benchmark processes are alive."""
    pct = psutil.cpu_percent(interval=seconds)
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    others = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] not in mine and any(k in cmd for k in ("-m bench", "pytest", "bench-pg")):
            others.append(f"{p.info['pid']}: {cmd[:100]}")
    return {"cpu_pct_machine": pct, "other_bench_processes": others}


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# in the children


def materialize_one(
    assets: Sequence[Any],
    partition_key: str,
    resources: dict[str, Any],
    meter: Meter,
    run_config: dict | None = None,
) -> dict[str, Any]:
    """``dagster.materialize`` on an ephemeral instance, timed by ``meter``; the metadata of
    every materialization (by asset key) and the check outcomes."""
    from dagster import DagsterInstance, materialize

    config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})}
    with DagsterInstance.ephemeral() as instance, meter:
        result = materialize(
            list(assets),
            partition_key=partition_key,
            resources=resources,
            instance=instance,
            run_config=config,
        )
    metadata = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return {"metadata": metadata, "checks": checks}


def measure_copy(cfg: dict) -> dict[str, Any]:
    """A bare COPY of the rows ``core`` ended up with. They are read back (untimed) from the
    e2e run's database (``cfg["source_url"]``) as COPY text, one chunk per ~100 rows, then
    copied into plain tables of the same column types (no key, no index) in this
    measurement's fresh database. Also, "(jsonb)": the raw records, one jsonb value each, into
    ``(rec jsonb)`` (PostgreSQL parses the JSON: the cost ``raw`` pays).

    ``cfg["targets"]``: [(core table, columns)]; ``cfg["raw_table"]``; ``cfg["n"]`` records
    (the rate is records/s, whatever the number of rows per record)."""
    import psycopg

    def read(sql: str) -> list[bytes]:
        chunks: list[bytes] = []
        buf: list[bytes] = []
        with psycopg.connect(cfg["source_url"]) as src, src.cursor().copy(sql) as copy:
            for row in copy:  # raw COPY data blocks
                buf.append(bytes(row))
                if len(buf) >= 64:
                    chunks.append(b"".join(buf))
                    buf.clear()
        if buf:
            chunks.append(b"".join(buf))
        return chunks

    typed = [
        (table, cols, read(f"COPY (SELECT {', '.join(cols)} FROM {table}) TO STDOUT"))
        for table, cols in cfg["targets"]
    ]
    as_json = read(f"COPY (SELECT record FROM {cfg['raw_table']}) TO STDOUT")
    out: dict[str, Any] = {}
    with psycopg.connect(cfg["url"], autocommit=True) as admin, psycopg.connect(cfg["url"]) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (cfg.get("tz", "UTC"),))
        names = []
        for i, (table, cols, _) in enumerate(typed):
            name = f"public.bench_copy_typed_{i}"
            conn.execute(f"CREATE TABLE {name} AS SELECT {', '.join(cols)} FROM {table} WITH NO DATA")
            names.append(name)
        conn.execute("CREATE TABLE public.bench_copy_jsonb (rec jsonb)")
        conn.commit()
        admin.execute("CHECKPOINT")
        with Meter(cfg) as meter:
            for name, (_, _, chunks) in zip(names, typed, strict=True):
                with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
                    for chunk in chunks:
                        copy.write(chunk)
            conn.commit()
        out = meter.report(cfg["n"])
        out["mib"] = round(sum(len(c) for _, _, cs in typed for c in cs) / 2**20, 1)
        out["rows"] = {
            table: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            for name, (table, _, _) in zip(names, typed, strict=True)
        }
        admin.execute("CHECKPOINT")
        with Meter(cfg) as meter:
            with conn.cursor().copy("COPY public.bench_copy_jsonb FROM STDIN") as copy:
                for chunk in as_json:
                    copy.write(chunk)
            conn.commit()
        out["jsonb"] = meter.report(cfg["n"])
        out["jsonb"]["mib"] = round(sum(len(c) for c in as_json) / 2**20, 1)
        conn.execute(f"DROP TABLE {', '.join(names)}, public.bench_copy_jsonb")
        conn.commit()
        admin.execute("CHECKPOINT")
    out["peak_rss_mib"] = round(_maxrss_mib(), 1)
    return out


# ------------------------------------------------------------------------------------------
# results


def write_results(source: str, meta: dict[str, Any], payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{source}-{stamp}.json"
    body = {"when": stamp, "code": _code_version(), "cpus": os.cpu_count(), "argv": sys.argv[1:], **meta}
    path.write_text(json.dumps({**body, **payload}, indent=2, default=str))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\nwritten {shown}")
    return path


def cpu_cols(m: dict[str, Any], keys: Sequence[str] = ("client", "simulator", "postgres", "other")) -> str:
    return "/".join(f"{m.get(f'cpu_pct_{k}') or 0:.0f}" for k in keys) + "%"
