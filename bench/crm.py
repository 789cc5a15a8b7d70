"""Benchmark of the CRM call-log pipeline (bench/README.md, "Targets").

    .venv/bin/python -m bench.crm --sizes 200000 1000000

For each size N: a simulator in its own process serving N calls per day, a fresh migrated
database, then four measurements, each in its own spawned child process (so its peak RSS is
its own): fetch-only (sequential, and at the pipeline's concurrency), copy-only, end to end
(``dagster.materialize`` of ``core/fact_crm_call``).
See bench/README.md for what every number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import signal
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EMAIL = "sim@example.com"  # simulator.crm.Settings defaults
SECRET_KEY = "sim-crm-secret"

# core.fact_crm_call's columns and the JSON field each comes from (normalize._CALL_FIELDS).
TYPED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("created_at", "createTime"),
    ("call_id", "callId"),
    ("conversation_id", "conversationId"),
    ("customer_number", "customerNumber"),
    ("customer_name", "customerName"),
    ("province", "province"),
    ("city", "city"),
    ("agent_name", "agentName"),
    ("duration", "duration"),
    ("ringing_duration", "ringingDuration"),
    ("result", "result"),
    ("sp_number", "spNumber"),
    ("call_type", "callType"),
    ("seat_type", "seatType"),
    ("drop_side", "dropSide"),
    ("hangup_cause_id", "hangupCauseId"),
    ("business_id", "businessId"),
    ("business_log_type", "businessLogType"),
)


# ------------------------------------------------------------------------------------------
# measuring helpers (used in the children)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int | None, with_children: bool = False) -> float | None:
    """CPU seconds of a process; with its live children and its reaped ones (a postmaster
    reaps its backends, so their time lands in its children_* fields)."""
    if pid is None:
        return None
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        total = t.user + t.system
        if with_children:
            total += t.children_user + t.children_system
            for child in p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total
    except psutil.Error:
        return None


class Meter:
    """Wall time and CPU of this process, the simulator and the PostgreSQL server."""

    def __init__(self, cfg: dict) -> None:
        self.sim_pid = cfg.get("sim_pid")
        self.pg_pid = cfg.get("pg_pid")

    def _sample(self) -> tuple[float | None, ...]:
        t = psutil.cpu_times()  # the whole machine: other workloads show as "other"
        busy = t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        return (_own_cpu(), _proc_cpu(self.sim_pid), _proc_cpu(self.pg_pid, True), busy)

    def __enter__(self) -> Meter:
        self.cpu0 = self._sample()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.cpu1 = self._sample()
        # A backend that just closed is counted by its postmaster only once reaped.
        time.sleep(0.3)
        pg = _proc_cpu(self.pg_pid, True)
        if pg is not None and self.cpu1[2] is not None:
            self.cpu1 = (*self.cpu1[:2], max(pg, self.cpu1[2]), self.cpu1[3])

    def report(self, records: int) -> dict[str, Any]:
        def pct(i: int) -> float | None:
            a, b = self.cpu0[i], self.cpu1[i]
            return None if a is None or b is None else round(100 * (b - a) / self.elapsed, 1)

        ours = sum(p or 0.0 for p in (pct(0), pct(1), pct(2)))
        machine = pct(3) or 0.0
        return {
            "records": records,
            "seconds": round(self.elapsed, 3),
            "rec_per_s": round(records / self.elapsed),
            "cpu_pct_client": pct(0),
            "cpu_pct_simulator": pct(1),
            "cpu_pct_postgres": pct(2),
            "cpu_pct_machine": machine,
            "cpu_pct_other": round(max(0.0, machine - ours), 1),
        }


def _crm_resource(cfg: dict) -> Any:
    from pipelines.defs.sources.crm.client import CrmResource

    return CrmResource(
        base_url=cfg["base_url"],
        email=EMAIL,
        secret_key=SECRET_KEY,
        rate_per_s=0,  # no client-side limit: the simulator has none
        **({"concurrency": cfg["concurrency"]} if cfg["concurrency"] else {}),
    )


def _window(day: str) -> tuple[datetime, datetime]:
    from pipelines.defs.sources.crm.partitions import crm_daily

    w = crm_daily.time_window_for_partition_key(day)
    return w.start, w.end


# ------------------------------------------------------------------------------------------
# a. fetch only


def measure_fetch(cfg: dict) -> dict[str, Any]:
    """Walk every page of the day with CrmClient.call_log_pages (JSON decoded by the
    client, as always); no database. At the resource's own concurrency, as the pipeline
    fetches."""
    start, end = _window(cfg["day"])
    crm = _crm_resource(cfg)
    rss_before = _maxrss_mib()

    async def run() -> tuple[int, int]:
        client = crm.client()
        records = pages = 0
        async with client.http:
            async for page in client.call_log_pages(start, end):
                records += page.records
                pages += 1
        return records, pages

    with Meter(cfg) as meter:
        records, pages = asyncio.run(run())
    return {
        **meter.report(records),
        "pages": pages,
        "peak_rss_mib": round(_maxrss_mib(), 1),
        "rss_after_imports_mib": round(rss_before, 1),
    }


def measure_fetch_sequential(cfg: dict) -> dict[str, Any]:
    """The plain sequential fetch of the issue's reference figure: the same client and
    decoding, one request at a time."""
    return measure_fetch({**cfg, "concurrency": 1})


# ------------------------------------------------------------------------------------------
# b. copy only


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    s = value if isinstance(value, str) else str(value)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def measure_copy(cfg: dict) -> dict[str, Any]:
    """A bare COPY of the day's N records, rendered in memory beforehand (untimed) from the
    page bodies fetched: (1) the typed columns of core.fact_crm_call into a plain table of
    the same column types (no key, no index), (2) each record as one jsonb value."""
    import psycopg

    start, end = _window(cfg["day"])
    crm = _crm_resource(cfg)

    async def collect() -> tuple[int, list[bytes], list[bytes]]:
        """COPY text of every page, one chunk per page (the page texts are dropped)."""
        n = 0
        typed: list[bytes] = []
        as_json: list[bytes] = []
        client = crm.client()
        async with client.http:
            async for page in client.call_log_pages(start, end):
                records = json.loads(page.body)["data"]["list"]
                n += len(records)
                typed.append(
                    "".join(
                        "\t".join(_copy_text(rec.get(key)) for _, key in TYPED_COLUMNS) + "\n"
                        for rec in records
                    ).encode()
                )
                as_json.append(
                    "".join(
                        _copy_text(json.dumps(rec, ensure_ascii=False)) + "\n" for rec in records
                    ).encode()
                )
        return n, typed, as_json

    n, typed_chunks, json_chunks = asyncio.run(collect())
    out: dict[str, Any] = {}
    with psycopg.connect(cfg["url"], autocommit=True) as admin, psycopg.connect(cfg["url"]) as conn:
        # Naive createTime read in the CRM zone, as core.try_local_timestamp does.
        conn.execute("SELECT set_config('TimeZone', %s, false)", (cfg["tz"],))
        cols = ", ".join(col for col, _ in TYPED_COLUMNS)
        conn.execute(
            f"CREATE TABLE public.bench_copy_typed AS SELECT {cols} FROM core.fact_crm_call WITH NO DATA"
        )
        conn.execute("CREATE TABLE public.bench_copy_jsonb (rec jsonb)")
        conn.commit()
        for name, table, chunks in (
            ("typed", "public.bench_copy_typed", typed_chunks),
            ("jsonb", "public.bench_copy_jsonb", json_chunks),
        ):
            admin.execute("CHECKPOINT")
            with Meter(cfg) as meter:
                with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                    for chunk in chunks:
                        copy.write(chunk)
                conn.commit()
            out[name] = meter.report(n)
            out[name]["mib"] = round(sum(len(c) for c in chunks) / 2**20, 1)
        got = conn.execute("SELECT count(*) FROM public.bench_copy_typed").fetchone()[0]
        assert got == n, f"copied {got} of {n} rows"
        conn.execute("DROP TABLE public.bench_copy_typed, public.bench_copy_jsonb")
        conn.commit()
        admin.execute("CHECKPOINT")
    return {**out["typed"], "jsonb": out["jsonb"], "peak_rss_mib": round(_maxrss_mib(), 1)}


# ------------------------------------------------------------------------------------------
# c. end to end


class _SqlTimer:
    """Times every statement the loader sends (monkeypatched psycopg cursors, --profile)."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}
        # The pump's consumer: time in PartitionLoad.flush (PostgreSQL works, fetching goes on
        # in the background) and time between two ``add`` calls (waiting for the next page).
        self.pump = {"flush_s": 0.0, "flushes": 0, "waiting_for_pages_s": 0.0}
        self._last_add: float | None = None

    def add(self, label: str, seconds: float) -> None:
        entry = self.totals.setdefault(label, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    def install(self) -> None:
        import psycopg

        timer = self
        execute = psycopg.AsyncCursor.execute

        def label(query: Any, cur: Any) -> str:
            text = query if isinstance(query, str) else query.as_string(cur.connection)
            return " ".join(text.split())[:70]

        async def timed_execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await execute(self, query, params, **kw)
            finally:
                timer.add(label(query, self), time.perf_counter() - t0)

        psycopg.AsyncCursor.execute = timed_execute  # type: ignore[method-assign]

        from pipelines.lib.loading import PartitionLoad

        add, flush = PartitionLoad.add, PartitionLoad.flush

        async def timed_add(self: Any, body: bytes, records: int) -> None:
            t0 = time.perf_counter()
            if timer._last_add is not None:
                timer.pump["waiting_for_pages_s"] += t0 - timer._last_add
            try:
                await add(self, body, records)
            finally:
                timer._last_add = time.perf_counter()

        async def timed_flush(self: Any) -> None:
            t0 = time.perf_counter()
            try:
                await flush(self)
            finally:
                timer.pump["flush_s"] += time.perf_counter() - t0
                timer.pump["flushes"] += 1

        PartitionLoad.add = timed_add  # type: ignore[method-assign]
        PartitionLoad.flush = timed_flush  # type: ignore[method-assign]

    def report(self) -> list[dict[str, Any]]:
        rows = sorted(self.totals.items(), key=lambda kv: -kv[1][1])
        return [{"sql": k, "calls": int(v[0]), "seconds": round(v[1], 3)} for k, v in rows]


class _Explain:
    """--explain: run the statements of one batch of the loader (the ``batch``-th flush) as
    ``EXPLAIN (ANALYZE, BUFFERS)``, which executes them too, and keep the plans. Only that
    batch's ``rows_upserted`` metadata is then off; the rows land as usual."""

    def __init__(self, batch: int = 3) -> None:
        self.batch = batch
        self.seen = 0
        self.plans: list[dict[str, Any]] = []

    def install(self) -> None:
        import psycopg
        from psycopg import sql

        execute = psycopg.AsyncCursor.execute
        explain = self

        async def explained(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            text = query if isinstance(query, str) else query.as_string(self.connection)
            if text.startswith("WITH _stage_records"):
                explain.seen += 1
            if explain.seen != explain.batch or not text.startswith(("INSERT", "WITH")):
                return await execute(self, query, params, **kw)
            prefix = "EXPLAIN (ANALYZE, BUFFERS) "
            wrapped = prefix + query if isinstance(query, str) else sql.SQL(prefix) + query
            t0 = time.perf_counter()
            await execute(self, wrapped, params, **kw)
            plan = "\n".join(row[0] for row in await self.fetchall())
            explain.plans.append(
                {"sql": " ".join(text.split())[:70], "seconds": time.perf_counter() - t0, "plan": plan}
            )
            return self

        psycopg.AsyncCursor.execute = explained  # type: ignore[method-assign]


def _e2e_dagster(cfg: dict, meter: Meter) -> dict[str, Any]:
    """``dagster.materialize`` of the asset, in process, on an ephemeral instance."""
    from dagster import DagsterInstance, materialize

    from pipelines.defs.sources.crm.assets import fact_crm_call
    from pipelines.lib.warehouse import WarehouseResource

    with DagsterInstance.ephemeral() as instance, meter:
        result = materialize(
            [fact_crm_call],
            partition_key=cfg["day"],
            resources={"warehouse": WarehouseResource(url=cfg["url"]), "crm": _crm_resource(cfg)},
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    (event,) = result.get_asset_materialization_events()
    md = {k: v.value for k, v in event.materialization.metadata.items()}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return {"asset_elapsed_s": md["elapsed_s"], "metadata": md, "checks": checks}


def _e2e_direct(cfg: dict, meter: Meter) -> dict[str, Any]:
    """The asset body without Dagster: call_log_pages -> pump -> PartitionLoad."""
    from pipelines.defs.sources.crm import normalize
    from pipelines.lib.loading import PartitionLoad, pump
    from pipelines.lib.warehouse import WarehouseResource

    start, end = _window(cfg["day"])
    crm = _crm_resource(cfg)
    warehouse = WarehouseResource(url=cfg["url"])
    reported: dict[str, int | None] = {"total": None}

    async def run() -> Any:
        client = crm.client()
        async with client.http, await warehouse.aconnect() as conn:

            async def pages():  # noqa: ANN202
                async for page in client.call_log_pages(start, end):
                    if reported["total"] is None:
                        reported["total"] = page.total
                    yield page

            async with PartitionLoad(
                conn,
                normalize.CALL_LOGS,
                partition_key=cfg["day"],
                window=(start, end),
                fetched_at=datetime.now(UTC),
                params={"tz": cfg["tz"]},
            ) as load:
                await pump(pages(), load)
                complete = reported["total"] is not None and load.result.records_received >= reported["total"]
                await load.finish(complete=complete)
            return load.result

    with meter:
        result = asyncio.run(run())
    return {"metadata": result.as_metadata()}


def measure_e2e(cfg: dict) -> dict[str, Any]:
    import psycopg

    # Imported before the clock starts, as a code location has them loaded.
    import pipelines.defs.sources.crm.assets  # noqa: F401

    rss_before = _maxrss_mib()
    timer = profiler = explain = None
    if cfg["explain"]:
        explain = _Explain()
        explain.install()
    if cfg["profile"]:
        timer = _SqlTimer()
        timer.install()
        profiler = cProfile.Profile()
        profiler.enable()
    meter = Meter(cfg)
    detail = (_e2e_dagster if cfg["mode"] == "dagster" else _e2e_direct)(cfg, meter)
    if profiler is not None:
        profiler.disable()
    out = meter.report(cfg["n"])
    out.update(detail)
    out["peak_rss_mib"] = round(_maxrss_mib(), 1)
    out["rss_after_imports_mib"] = round(rss_before, 1)
    start, end = _window(cfg["day"])
    with psycopg.connect(cfg["url"]) as conn:
        core = conn.execute(
            "SELECT count(*) FROM core.fact_crm_call WHERE created_at >= %s AND created_at < %s", (start, end)
        ).fetchone()[0]
        raw = conn.execute(
            "SELECT count(*) FROM raw.crm_call WHERE partition_key = %s", (cfg["day"],)
        ).fetchone()[0]
        rejects = conn.execute("SELECT count(*) FROM raw.rejects").fetchone()[0]
    out.update(
        rows_core=core, rows_raw=raw, rejects=rejects, verified=core == raw == cfg["n"] and rejects == 0
    )
    if explain is not None:
        out["plans"] = explain.plans
    if timer is not None and profiler is not None:
        out["sql"] = timer.report()
        out["pump"] = {k: round(v, 3) for k, v in timer.pump.items()}
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(30)
        out["profile_tottime"] = buf.getvalue()
    return out


# ------------------------------------------------------------------------------------------
# the driver


def _child_main(fn: Any, cfg: dict, conn: Any) -> None:
    try:
        conn.send(("ok", fn(cfg)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


def _in_child(fn: Any, cfg: dict) -> dict[str, Any]:
    """Run ``fn(cfg)`` in a fresh spawned process, so its peak RSS is its own; the child is
    stopped if this process is interrupted."""
    ctx = get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(fn, cfg, sender), name=f"bench-{fn.__name__}")
    proc.start()
    sender.close()
    try:
        status, value = receiver.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"{fn.__name__}: the child died (exit code {proc.exitcode})") from None
    except BaseException:  # interrupted: stop the child too
        proc.terminate()
        proc.join()
        raise
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed in its child:\n{value}")
    return value


def _with_db(url: str, db: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@contextlib.contextmanager
def _postgres() -> Iterator[tuple[str, int | None, str]]:
    """(admin URL, postmaster pid or None, description)."""
    url = os.environ.get("BENCH_WAREHOUSE_URL")
    if url:
        yield url, None, "BENCH_WAREHOUSE_URL"
        return
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # printed by pgserver's import
    import pgserver

    data = Path(f"/tmp/bench-pg-{os.getpid()}")  # short: the unix socket lives in it
    server = pgserver.get_server(data, cleanup_mode="delete")
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        version = server.psql("SHOW server_version;").split("\n")[2].strip()
        yield server.get_uri(), pid, f"embedded pgserver {version} in {data}"
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(admin_url: str, label: str, keep: bool = False) -> Iterator[str]:
    """A new database ``bench_<label>_<random>``, migrated; dropped afterwards unless ``keep``.
    Every benchmark's measurements get one each."""
    import psycopg

    from pipelines.lib.warehouse import migrate

    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(admin_url, name)
    migrate(url)
    try:
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _simulator_pid(port: int) -> int | None:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if "simulator" in cmd and str(port) in cmd:
                return child.pid
    return None


def _default_day(tz: str) -> str:
    from zoneinfo import ZoneInfo

    return (datetime.now(ZoneInfo(tz)).date() - timedelta(days=2)).isoformat()


MEASUREMENTS = (
    ("fetch1", measure_fetch_sequential),
    ("fetch4", measure_fetch),
    ("copy", measure_copy),
    ("e2e", measure_e2e),
)


def run_size(n: int, args: argparse.Namespace, admin_url: str, pg_pid: int | None) -> dict[str, Any]:
    """One simulator for size ``n``; each measurement in its own child and its own fresh
    migrated database; with --repeat, the rounds interleave and the best rate is kept."""
    from pipelines.defs.sources.crm.partitions import crm_daily
    from simulator.server import free_port, subprocess_server

    tz = crm_daily.timezone
    day = args.day or _default_day(tz)
    port = free_port()
    sim_args = ["--volume", str(n), "--latency-ms", "0"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in MEASUREMENTS}
    with subprocess_server(sim_args, port=port) as root:
        cfg = {
            "n": n,
            "day": day,
            "tz": tz,
            "base_url": f"{root}/crm",
            "sim_pid": _simulator_pid(port),
            "pg_pid": pg_pid,
            "concurrency": args.concurrency,
            "mode": args.e2e,
            "profile": args.profile,
            "explain": args.explain,
        }
        for round_ in range(args.repeat):
            for name, fn in MEASUREMENTS:
                print(f"  N={n}: {name} (round {round_ + 1}) ...", file=sys.stderr, flush=True)
                with fresh_database(admin_url, f"crm_{n}", args.keep) as url:
                    out = _in_child(fn, {**cfg, "url": url})
                assert out["records"] == n, f"{name}: {out['records']} records, expected {n}"
                runs[name].append(out)
    row: dict[str, Any] = {"size": n, "day": day}
    for name, results in runs.items():
        best = max(results, key=lambda r: r["rec_per_s"])
        row[name] = {
            **best,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "rounds_rec_per_s": [r["rec_per_s"] for r in results],
        }
    row["e2e"]["verified"] = all(r["verified"] for r in runs["e2e"])
    # The target's ratio: end to end over the slower half, the fetch half being the plain
    # sequential fetch the issue's reference figure names ("e2e/min"). The same over the
    # pipeline's own concurrent fetch ("e2e/min4") is the stricter reading: with the
    # simulator on the same two cores, that fetch has both cores to itself while end to
    # end shares them with PostgreSQL.
    for key, fetch in (("", "fetch1"), ("_concurrent", "fetch4")):
        slower = min(row[fetch]["rec_per_s"], row["copy"]["rec_per_s"])
        row[f"e2e_over_slower_half{key}"] = round(row["e2e"]["rec_per_s"] / slower, 3)
        # The same ratio within each round (its measurements ran back to back): on a
        # shared machine whose speed drifts, the best-of ratio can pair a fast moment's
        # fetch with a slow moment's e2e, or the reverse.
        row[f"e2e_over_slower_half{key}_by_round"] = [
            round(e["rec_per_s"] / min(f["rec_per_s"], c["rec_per_s"]), 3)
            for f, c, e in zip(runs[fetch], runs["copy"], runs["e2e"], strict=True)
        ]
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'size':>9} {'fetch1 rec/s':>12} {'fetch4':>7} {'copy rec/s':>10} {'(jsonb)':>8} {'e2e rec/s':>9}"
        f" {'e2e/min':>7} {'e2e/min4':>8} {'RSS MiB fetch':>13} {'copy':>5} {'e2e':>4}  {'fetch4 CPU cli/sim':>18}"
        f" {'e2e CPU cli/sim/pg/other':>24} {'rows ok':>7}"
    )
    lines = [head]
    for r in rows:
        f1, f, c, e = r["fetch1"], r["fetch4"], r["copy"], r["e2e"]
        fcpu = f"{f['cpu_pct_client']:.0f}/{f['cpu_pct_simulator']:.0f}%"
        ecpu = "/".join(
            f"{e[k] or 0:.0f}"
            for k in ("cpu_pct_client", "cpu_pct_simulator", "cpu_pct_postgres", "cpu_pct_other")
        )
        lines.append(
            f"{r['size']:>9} {f1['rec_per_s']:>12,} {f['rec_per_s']:>7,} {c['rec_per_s']:>10,}"
            f" {c['jsonb']['rec_per_s']:>8,} {e['rec_per_s']:>9,}"
            f" {r['e2e_over_slower_half']:>7.2f} {r['e2e_over_slower_half_concurrent']:>8.2f}"
            f" {max(f1['peak_rss_mib'], f['peak_rss_mib']):>13.0f} {c['peak_rss_mib']:>5.0f}"
            f" {e['peak_rss_mib']:>4.0f}  {fcpu:>18} {ecpu + '%':>24} {'yes' if e['verified'] else 'NO':>7}"
        )
    for r in rows:
        for key, label in (("", "e2e/min "), ("_concurrent", "e2e/min4")):
            by_round = " ".join(f"{x:.2f}" for x in r[f"e2e_over_slower_half{key}_by_round"])
            lines.append(f"{r['size']:>9}: {label} within each round: {by_round}")
    return "\n".join(lines)


def _code_version() -> dict[str, Any]:
    """The commit measured, and the files under pipelines/ sql/ simulator/ that differ from it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            # --no-optional-locks: a status must not rewrite the index others are using.
            return subprocess.run(
                ["git", "--no-optional-locks", *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "pipelines", "sql", "simulator")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": dirty.splitlines()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000], help="calls per day")
    parser.add_argument("--day", help="partition key (default: two days ago in CRM_TIMEZONE)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="CrmResource.concurrency (default: its own default)"
    )
    parser.add_argument(
        "--e2e",
        choices=["dagster", "direct"],
        default="dagster",
        help="materialize the asset, or drive the loader",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile + per-statement SQL times in the e2e child"
    )
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE the loader's statements (auto_explain)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds per size; the best rate of each is kept"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases (useful with BENCH_WAREHOUSE_URL)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the simulator and the embedded server stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    code = _code_version()
    rows = []
    with _postgres() as (admin_url, pg_pid, where):
        print(
            f"warehouse: {where}; e2e via {args.e2e}; {os.cpu_count()} CPUs; code {code['commit']}"
            f"{' + uncommitted changes' if code['uncommitted'] else ''}",
            file=sys.stderr,
        )
        for n in args.sizes:
            rows.append(run_size(n, args, admin_url, pg_pid))
    print(_table(rows))
    if args.profile:
        for r in rows:
            print(f"\n== N={r['size']}: e2e {r['e2e']['seconds']}s; pump: {r['e2e']['pump']} ==")
            print("SQL statements (seconds, summed):")
            for s in r["e2e"]["sql"][:12]:
                print(f"{s['seconds']:>9.3f}s {s['calls']:>5}x  {s['sql']}")
            print(r["e2e"]["profile_tottime"])
    if args.explain:
        for r in rows:
            print(f"\n== N={r['size']}: EXPLAIN ANALYZE of batch 3 ==")
            for p in r["e2e"]["plans"]:
                print(f"-- {p['seconds']:.3f}s  {p['sql']}\n{p['plan']}\n")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"crm-{stamp}.json"
    meta = {
        "when": stamp,
        "code": code,
        "warehouse": where,
        "cpus": os.cpu_count(),
        "e2e_mode": args.e2e,
        "argv": sys.argv[1:],
    }
    path.write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str))
    print(f"\nwritten {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
