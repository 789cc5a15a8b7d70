"""The one ingest path every source's assets run: pull, load, check, describe.

A source declares, per asset, an ``Ingest``: the loads of a run (what to fetch, into which
``SourceSpec``, under which raw partition key) and the checks. ``Ingest.run`` opens the
vendor client and one warehouse transaction, pumps every load's pages into its
``PartitionLoad``, decides whether each pull was complete (only a complete pull marks rows
gone), runs the checks once the transaction has committed, and returns the materialization
with its metadata. With ``from_raw`` the same loads read their pages back from ``raw``
instead of the vendor: no client is opened, no request is sent, and no row is marked gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
)
from psycopg import sql
from pydantic import Field as ConfigField

from pipelines.lib import checks, refresh
from pipelines.lib.http import HttpStats, Page
from pipelines.lib.loading import LoadResult, PartitionLoad, SourceSpec, pump, qualified_ident
from pipelines.lib.warehouse import WarehouseResource

Window = tuple[datetime, datetime]


# Who answers for the ingest assets in the UI (Dagster shows owners on every asset page).
OWNERS = ["team:callcenter-data"]


class IngestConfig(Config):
    """Run configuration every fact asset accepts."""

    from_raw: bool = ConfigField(
        default=False,
        description="Re-derive the partition from the records in raw, through the same typing and checks, "
        "sending no request to the vendor (after a mapping change, or where the vendor has forgotten).",
    )
    full: bool = ConfigField(
        default=False,
        description="Pull the whole open window instead of what is new since its high-water mark (a closed "
        "window is always pulled whole).",
    )


@dataclass
class Tally:
    """What one load's pull saw, filled in by the source's fetch as pages arrive."""

    api_total: int | None = None  # the total the API reported, if any
    # What to ask the vendor for: set before the fetch (the load's window, or for an
    # incremental load what ``refresh.plan`` decided); every fetch requests this range.
    pull: Window | None = None
    pulled_range: Window | None = None  # default: the load's whole window
    walk_complete: bool = True  # False: the walk knows it did not see every record
    extra: dict[str, Any] = field(default_factory=dict)  # source metadata (a plan, a cursor)


# A load's pull: the open warehouse connection (inside the load's transaction, after its
# partition lock) and the tally to fill; yields the vendor's pages.
Fetch = Callable[[psycopg.AsyncConnection, Tally], AsyncIterator[Page]]
# Runs inside the load's transaction after its last page (e.g. counting what is left).
After = Callable[[psycopg.AsyncConnection, Tally, PartitionLoad], Awaitable[None]]


@dataclass(frozen=True)
class Load:
    """One ``PartitionLoad`` of a run."""

    spec: SourceSpec
    partition_key: str  # the raw partition key (a VDN's loads carry "<week>/vdn-<id>")
    fetch: Fetch
    params: Mapping[str, Any] = field(default_factory=dict)
    window: Window | None = None  # default: the run's window (a snapshot: its instant)
    after: After | None = None
    # False where the endpoint lists only some rows (an agent's recent calls): the load
    # never marks anything gone.
    marks_gone: bool = True
    # Set: the open window refreshes from its high-water mark (``refresh``).
    incremental: refresh.Incremental | None = None


@dataclass
class Loaded:
    """One load's outcome."""

    load: Load
    tally: Tally
    result: LoadResult
    complete: bool
    requests: int = 0  # this load's share of the run's HTTP counters
    pages: int = 0
    pull: refresh.Pull | None = None  # an incremental load's pull plan


@dataclass
class IngestRun:
    """What a run did: every load's outcome, the HTTP counters and the time taken."""

    partition_key: str
    window: Window
    fetched_at: datetime
    loaded: list[Loaded]
    http: HttpStats
    elapsed_s: float
    from_raw: bool
    notes: dict[str, Any] = field(default_factory=dict)  # what the plan decided

    @property
    def total(self) -> LoadResult:
        out = LoadResult()
        for item in self.loaded:
            r = item.result
            out.records_received += r.records_received
            out.rows_landed += r.rows_landed
            out.rejects += r.rejects
            out.refused_records += r.refused_records
            out.batches += r.batches
            out.gone_refused += r.gone_refused
            for name in ("rows_upserted", "rows_gone"):
                mine = getattr(out, name)
                for table, n in getattr(r, name).items():
                    mine[table] = mine.get(table, 0) + n
        return out

    @property
    def raw_partition_keys(self) -> list[str]:
        return [item.load.partition_key for item in self.loaded]

    @property
    def api_total(self) -> int | None:
        totals = [item.tally.api_total for item in self.loaded]
        return None if not totals or None in totals else sum(t for t in totals if t is not None)

    @property
    def complete(self) -> bool:
        return bool(self.loaded) and all(item.complete for item in self.loaded)

    def metadata(self) -> dict[str, Any]:
        lo, hi = self.window
        out: dict[str, Any] = {
            "window": f"[{lo.isoformat()}, {hi.isoformat()})",
            "source_of_pages": "raw (rebuild, no request sent)" if self.from_raw else "vendor",
            "api_total": self.api_total if self.api_total is not None else "not reported",
            "complete_pull": self.complete,
            **self.total.as_metadata(),
            **self.http.as_metadata(),
            "elapsed_s": round(self.elapsed_s, 3),
        }
        out.update(pull_metadata(self.loaded))
        for item in self.loaded:
            out.update(item.tally.extra)
        return out


def pull_metadata(loaded: Sequence[Loaded]) -> dict[str, Any]:
    """Which pull ran (one kind for the run, "mixed" when its loads differ) and over what."""
    pulls = [item.pull for item in loaded if item.pull is not None]
    if not pulls:
        return {}
    if len(pulls) == 1:
        return pulls[0].metadata()
    kinds = {p.kind for p in pulls}
    marks = [p.mark for p in pulls if p.mark is not None]
    return {
        "pull": kinds.pop() if len(kinds) == 1 else "mixed",
        "pulled_from": min(p.lo for p in pulls).isoformat(),
        "pulled_to": max(p.hi for p in pulls).isoformat(),
        "high_water_mark": max(marks).isoformat() if marks else "none",
        "overlap_minutes": next(
            (p.overlap.total_seconds() / 60 for p in pulls if p.overlap is not None), "n/a"
        ),
    }


class VendorResource(Protocol):
    """What the skeleton needs of a source's resource: its client (whose ``http`` is closed
    after the run) and the share of a window one pull may mark gone."""

    max_gone_share: float

    def client(self) -> Any: ...


@dataclass(frozen=True)
class RunContext:
    """What a source's plan sees of the run."""

    partition_key: str  # the Dagster partition ("snapshot" for an unpartitioned asset)
    window: Window  # the partition's window (a snapshot: the instant it is taken)
    resource: Any
    client: Any | None  # None when rebuilding from raw: nothing may be fetched
    config: Any = None  # the asset's run config (an IngestConfig)
    log: Any = None  # the run's logger (context.log): what an operator must read goes there
    # What the plan decided, for the checks and metadata (e.g. a retention plan).
    notes: dict[str, Any] = field(default_factory=dict)


# The loads of one run.
Plan = Callable[[RunContext], Iterable[Load]]
CheckFn = Callable[[psycopg.Connection, IngestRun], Sequence[AssetCheckResult]]


@dataclass(frozen=True)
class TableChecks:
    """The checks every loaded core table gets, from one scan of its window where it has
    one: reconciliation with the API's total and duplicate keys (``reconcile``), rejects,
    documented not-null columns, known enum values, and the mass-disappearance guard."""

    table: str  # "core.fact_crm_call"
    reject_tables: tuple[str, ...]  # raw and core tables whose rejects count
    time_column: str | None = None  # None: a snapshot, the whole table
    not_null: tuple[str, ...] = ()
    # column -> its allowed values, or the mapping-table column listing them (checks.Allowed)
    enums: Mapping[str, checks.Allowed] = field(default_factory=dict)
    reconcile: bool = False  # the API reports a total to compare with
    duplicates: bool = True  # count the keys the pull returned more than once
    drift: bool = True  # report raw fields the source's field list does not name

    @property
    def names(self) -> list[str]:
        names = ["reconciles_with_api"] if self.reconcile else []
        names += ["no_duplicate_keys"] if self.duplicates else []
        names.append("no_rejects")
        if self.not_null:
            names.append("required_not_null")
        if self.enums:
            names.append("known_enums")
        if self.drift:
            names.append("unexpected_fields")
        return [*names, "no_mass_disappearance"]

    def evaluate(
        self, conn: psycopg.Connection, run: IngestRun, source: str
    ) -> tuple[int, list[AssetCheckResult]]:
        """The table's live rows in the window, and the check results."""
        total = run.total
        results: list[AssetCheckResult] = []
        if self.reconcile:
            results.append(checks.reconciles(total, run.api_total, AssetCheckSeverity.WARN))
        if self.duplicates:
            results.append(checks.no_duplicates(total))
        results.append(
            checks.no_rejects(conn, self.reject_tables, run.raw_partition_keys, total.records_received)
        )
        window = run.window if self.time_column else None
        rows, not_null, enums = checks.window_checks(
            conn, self.table, self.not_null, self.enums, self.time_column, window
        )
        results += [not_null] if self.not_null else []
        results += [enums] if self.enums else []
        if self.drift:
            results.append(checks.unexpected_fields(conn, _landings(run)))
        results.append(checks.no_mass_disappearance(total, source, run.window))
        return rows, results


def _landings(run: IngestRun) -> dict[str, tuple[list[str], tuple[str, ...] | None]]:
    """Per raw table of the run: its partition keys and the fields its spec names."""
    out: dict[str, tuple[list[str], tuple[str, ...] | None]] = {}
    for item in run.loaded:
        spec = item.load.spec
        keys, _ = out.setdefault(spec.raw_table, ([], spec.known_fields))
        keys.append(item.load.partition_key)
    return out


@dataclass(frozen=True)
class Ingest:
    """What one asset (or multi-asset) of a source declares; ``run`` does the rest."""

    source: str  # the resource's SOURCE: names the source in check texts
    plan: Plan
    table: TableChecks
    extra_checks: CheckFn | None = None  # the source's own checks, on top of the table's
    extra_descriptions: Mapping[str, str] = field(default_factory=dict)
    # The source's own metadata (per-VDN counts, a retention plan, known vendor quirks).
    describe: Callable[[psycopg.Connection, IngestRun], Mapping[str, Any]] | None = None

    def check_specs(self, asset_key: AssetKey) -> list[AssetCheckSpec]:
        # extra_descriptions name the source's own checks, or describe a shared one better.
        names = [*self.table.names, *(n for n in self.extra_descriptions if n not in self.table.names)]
        return checks.specs(asset_key, names, {**checks.DESCRIPTIONS, **self.extra_descriptions})

    def run(
        self,
        context: AssetExecutionContext | None,
        resource: VendorResource,
        warehouse: WarehouseResource,
        config: IngestConfig | None = None,
    ) -> IngestRun:
        """Pull (or rebuild) and load the run's partition: the window comes from the
        partition (``context.partition_time_window``); an unpartitioned asset is a snapshot."""
        started = time.monotonic()
        fetched_at = datetime.now(UTC)
        if context is not None and context.has_partition_key:
            tw = context.partition_time_window
            key, window = context.partition_key, (tw.start, tw.end)
        else:
            key, window = "snapshot", (fetched_at, fetched_at)
        from_raw = bool(config and config.from_raw)
        log = context.log if context is not None else logging.getLogger(__name__)
        run = RunContext(key, window, resource, None, config, log)
        loaded, stats = asyncio.run(_run_loads(self.plan, run, warehouse, fetched_at, from_raw=from_raw))
        elapsed = time.monotonic() - started
        return IngestRun(key, window, fetched_at, loaded, stats, elapsed, from_raw, run.notes)

    def materialize(
        self,
        context: AssetExecutionContext | None,
        resource: VendorResource,
        warehouse: WarehouseResource,
        config: IngestConfig | None = None,
    ) -> MaterializeResult:
        return self.result(self.run(context, resource, warehouse, config), warehouse)

    def result(
        self,
        run: IngestRun,
        warehouse: WarehouseResource,
        asset_key: AssetKey | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MaterializeResult:
        """The materialization of ``asset_key`` (a multi-asset names each of its keys):
        the run's metadata and every check, evaluated after the load committed."""
        with warehouse.connect() as conn:
            rows, results = self.table.evaluate(conn, run, self.source)
            if self.extra_checks is not None:
                results += self.extra_checks(conn, run)
            described = self.describe(conn, run) if self.describe is not None else {}
        out = {
            **run.metadata(),
            **described,
            **(metadata or {}),
            "dagster/row_count": MetadataValue.int(int(rows)),
        }
        return MaterializeResult(
            asset_key=asset_key, metadata=out, check_results=[checks.for_asset(asset_key, c) for c in results]
        )


async def _run_loads(
    plan: Plan, run: RunContext, warehouse: WarehouseResource, fetched_at: datetime, *, from_raw: bool
) -> tuple[list[Loaded], HttpStats]:
    loaded: list[Loaded] = []
    if from_raw:
        # The plan is read without a client; its fetches are replaced by raw's records.
        async with (
            await warehouse.aconnect() as conn,
            await warehouse.aconnect() as reader,
            conn.transaction(),
        ):
            for load in plan(run):
                fetch = _raw_fetch(reader, load.spec, load.partition_key)
                loaded.append(await _one(conn, load, fetch, run, fetched_at, rebuild=True))
        return loaded, HttpStats()
    client = run.resource.client()
    run = dataclasses.replace(run, client=client)
    async with client.http, await warehouse.aconnect() as conn, conn.transaction():
        # One transaction around every load of the run: all of it commits, or none.
        for load in plan(run):
            stats = client.http.stats
            requests, pages = stats.requests, stats.pages
            item = await _one(conn, load, load.fetch, run, fetched_at, rebuild=False)
            item.requests, item.pages = stats.requests - requests, stats.pages - pages
            loaded.append(item)
    return loaded, client.http.stats


async def _one(
    conn: psycopg.AsyncConnection,
    load: Load,
    fetch: Fetch,
    run: RunContext,
    fetched_at: datetime,
    *,
    rebuild: bool,
) -> Loaded:
    window = load.window or run.window
    tally = Tally(pull=window)
    async with PartitionLoad(
        conn,
        load.spec,
        partition_key=load.partition_key,
        window=window,
        fetched_at=fetched_at,
        params=load.params,
        max_gone_share=run.resource.max_gone_share,
        rebuild=rebuild,
    ) as pl:
        pull = None
        if load.incremental is not None and not rebuild:
            # Under the partition's lock: a concurrent run of it waits, then sees this one's rows.
            mark = await refresh.high_water_mark(conn, load.spec, pl.params)
            full = bool(getattr(run.config, "full", False))
            pull = refresh.plan(window, refresh.utc_now(), mark, load.incremental, full=full)
            tally.pull = tally.pulled_range = pull.range
        await pump(_tallied(fetch(conn, tally), tally), pl)
        await pl.flush()
        received = pl.result.records_received
        counted = tally.api_total is None or received >= tally.api_total
        # Only a pull that saw every record, and could read each one, may mark rows gone: a
        # record rejected for its shape (a renamed key) must not make its row look gone.
        complete = (
            not rebuild
            and load.marks_gone
            # An incremental pull saw only what is new: it never marks anything gone.
            and (pull is None or pull.kind == "full")
            and tally.walk_complete
            and counted
            and not await pl.rejected_now()
        )
        result = await pl.finish(complete=complete, pulled_range=tally.pulled_range)
        if load.after is not None and not rebuild:
            await load.after(conn, tally, pl)
        if not rebuild:
            await refresh.record(
                conn,
                load.spec.raw_table,
                load.partition_key,
                fetched_at,
                tally.pulled_range or window,
                kind=pull.kind if pull is not None else "full",
                complete=complete,
                records=result.records_received,
            )
    return Loaded(load, tally, result, complete, pull=pull)


async def one_page(page: Awaitable[Page]) -> AsyncIterator[Page]:
    """A fetch of an endpoint that answers in one page."""
    yield await page


async def _tallied(pages: AsyncIterator[Page], tally: Tally) -> AsyncIterator[Page]:
    async for page in pages:
        if tally.api_total is None and page.total is not None:
            tally.api_total = page.total
        yield page


RAW_PAGE_RECORDS = 1_000


def _raw_fetch(reader: psycopg.AsyncConnection, spec: SourceSpec, partition_key: str) -> Fetch:
    """Pages rebuilt from the partition's raw records, shaped as the vendor's pages
    (records at ``spec.records_path``), so they take the same load path."""

    async def fetch(_conn: psycopg.AsyncConnection, tally: Tally) -> AsyncIterator[Page]:
        head = b"".join(b'{"' + step.encode() + b'":' for step in spec.records_path) + b"["
        tail = b"]" + b"}" * len(spec.records_path)
        async with reader.cursor(name="raw_pages") as cur:
            await cur.execute(_raw_query(spec.raw_table), (partition_key,))
            while rows := await cur.fetchmany(RAW_PAGE_RECORDS):
                yield Page(head + b",".join(r[0].encode() for r in rows) + tail, len(rows))
        tally.extra["rebuilt_from"] = spec.raw_table

    return fetch


def _raw_query(raw_table: str) -> sql.Composed:
    return sql.SQL("SELECT record::text FROM {} WHERE partition_key = %s ORDER BY record_key").format(
        qualified_ident(raw_table)
    )
