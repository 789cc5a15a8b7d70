"""The one loader every source uses: land pages verbatim in ``raw``, normalize them into
``core``, atomically per partition.

A partition's load is one transaction:

1. an advisory lock on (table, partition), so two runs of one partition queue rather than race;
2. per batch of pages (5k records): one statement receives the page bodies (JSON bytes,
   unparsed) as one binary array parameter, explodes the record arrays, lands each record
   in ``raw.<source>`` (upsert by natural key) and upserts the typed rows into every
   ``core`` target; records the normalizing SELECT cannot type go to ``raw.rejects`` with
   the reason. Where the partition held nothing before (a first load, a backfill), the
   batches are plain INSERTs in a savepoint, and the load turns to upserts for good the
   first time a key turns out to be there already;
3. at the end, when the pull was complete, the window's rows that this pull did not return
   are marked gone (``_gone_at``), limited to the range actually pulled; nothing is ever
   deleted, from ``core`` or ``raw``: vendors lose and forget data more often than they
   delete it. A pull that would mark more than ``max_gone_share`` of the rows gone (or any
   row, when it returned nothing) marks none and says so (``LoadResult.gone_refused``).

A record PostgreSQL cannot take (a ``\u0000`` in a string, an unpaired surrogate, a number
beyond ``numeric``) fails its batch's statement; the batch is then split in Python
(``pipelines/lib/json_safety.py``): such records go to ``raw.rejects`` as made-safe copies with
a reason naming the field, and the rest of the batch lands.

Any other exception rolls the whole partition back. The SQL a source supplies is static text with
named parameters; identifiers are composed with ``psycopg.sql``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from pipelines.lib.http import Page
from pipelines.lib.json_safety import Refused, UnparsablePage, split_page

# A complete pull may mark at most this share of a window's rows gone; more is refused.
DEFAULT_MAX_GONE_SHARE = 0.2


class LoadError(RuntimeError):
    """PostgreSQL refused a batch. The message names the table, the partition and
    PostgreSQL's primary message only: its DETAIL and CONTEXT quote record values."""


@dataclass(frozen=True)
class CoreTarget:
    """How raw records become rows of one core table.

    ``select_sql`` reads the batch's records from ``_stage_records (record_key text, rec
    jsonb)`` and returns the table's ``columns``, ``_record_key`` (the record it came from)
    and ``_reject`` (text: why the row cannot be typed, NULL when it can). It must not raise
    on bad input: every cast is guarded.
    """

    table: str  # "core.fact_crm_call"
    key: tuple[str, ...]
    columns: tuple[str, ...]
    select_sql: str
    time_column: str | None = None  # the column the window filters on (facts)
    # The same rows by plain casts that raise on bad input (see pipelines/lib/typed_select.py):
    # tried first, in a savepoint; select_sql types what it can of a batch it refused.
    fast_select_sql: str | None = None
    # "mark_gone": rows a complete pull no longer returned get ``_gone_at`` (every fact and
    # snapshot dimension); "keep": the endpoint lists only some rows (recent ones), so a
    # row's absence means nothing.
    on_missing: Literal["mark_gone", "keep"] = "mark_gone"
    # An extra SQL condition (over the table's columns, with the load's named parameters)
    # limiting what ``finish`` may remove or mark gone, when one table is loaded in several
    # scopes: e.g. ``vdn_id = %(vdn_id)s`` so one VDN's pull never prunes another's rows.
    scope_sql: str | None = None
    # The record's top-level JSON keys the SELECTs read (None: not declared). A key outside
    # every target's list is one no document names: kept in raw, reported by a check.
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GoneRefusal:
    """A complete pull that would have marked too much of a table's scope gone."""

    table: str
    returned: int  # records the pull returned (for the whole spec)
    live: int  # rows of the scope not marked gone before the pull
    missing: int  # of those, rows the pull did not return
    max_share: float

    def describe(self, source: str, window: str) -> str:
        kept = self.live - self.missing
        return (
            f"{source} {self.table} {window}: the pull returned {kept} of {self.live} known rows "
            f"({self.returned} records in all); marking {self.missing} gone exceeds the allowed share "
            f"{self.max_share:.0%}, so none were marked. Check the vendor; raise the share only for a "
            "real mass deletion."
        )


@dataclass(frozen=True)
class SourceSpec:
    """One endpoint's landing: where records sit in a page body and what keys them."""

    raw_table: str  # "raw.crm_call"
    records_path: tuple[str, ...]  # path of the record array inside a page body
    key_sql: str  # SQL over ``rec`` giving the natural key as text
    targets: tuple[CoreTarget, ...]
    # Keys the vendor documents but no target types (kept in raw only): not drift.
    untyped_fields: tuple[str, ...] = ()

    @property
    def known_fields(self) -> tuple[str, ...] | None:
        """The record's top-level keys the vendor documents (None: a target did not say)."""
        if any(t.fields is None for t in self.targets):
            return None
        return tuple(sorted({*self.untyped_fields, *(f for t in self.targets for f in t.fields or ())}))


@dataclass
class LoadResult:
    records_received: int = 0
    rows_landed: int = 0
    rows_upserted: dict[str, int] = field(default_factory=dict)
    rows_gone: dict[str, int] = field(default_factory=dict)  # rows this pull marked gone
    gone_refused: list[GoneRefusal] = field(default_factory=list)
    rejects: int = 0
    refused_records: int = 0  # records PostgreSQL could not take (in raw.rejects)
    batches: int = 0

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "records_received": self.records_received,
            "rows_landed": self.rows_landed,
            "rejects": self.rejects,
        }
        for table, n in self.rows_upserted.items():
            out[f"rows_upserted {table}"] = n
        for table, n in self.rows_gone.items():
            out[f"rows_gone {table}"] = n
        if self.refused_records:
            out["records_postgres_refused"] = self.refused_records
        if self.gone_refused:
            out["gone_refused"] = ", ".join(f"{r.table}: {r.missing} of {r.live}" for r in self.gone_refused)
        return out


def qualified_ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split("."))


def _cols(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class PartitionLoad:
    """Use as ``async with PartitionLoad(conn, spec, ...) as load``: ``add`` page bodies,
    then ``finish``; leaving the block by an exception rolls everything back."""

    # The first batch is small, so PostgreSQL starts while the rest is still arriving.
    FIRST_BATCH_RECORDS = 1_000

    def __init__(
        self,
        conn: psycopg.AsyncConnection,
        spec: SourceSpec,
        *,
        partition_key: str,
        window: tuple[datetime, datetime],
        fetched_at: datetime,
        params: Mapping[str, Any] | None = None,
        batch_records: int = 5_000,
        max_gone_share: float = DEFAULT_MAX_GONE_SHARE,
        rebuild: bool = False,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.partition_key = partition_key
        self.window = window
        self.fetched_at = fetched_at
        self.params = {
            **(params or {}),
            "partition_key": partition_key,
            "window_start": window[0],
            "window_end": window[1],
            "fetched_at": fetched_at,
            "records_path": list(spec.records_path),
            "reject_tables": [spec.raw_table, *(t.table for t in spec.targets)],
        }
        self.batch_records = batch_records
        self.max_gone_share = max_gone_share
        # A rebuild reads its pages from raw: it writes core only, and keeps every row's
        # _gone_at (raw holds what the vendor stopped returning too).
        self.rebuild = rebuild
        self.result = LoadResult(rows_upserted={t.table: 0 for t in spec.targets})
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> PartitionLoad:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.conn.transaction())
            await self._begin()
            # Set up: the transaction stays open until __aexit__ (a failure above rolled it back).
            self._stack = stack.pop_all()
        return self

    async def _begin(self) -> None:
        # Each batch's statements are planned afresh; compiling them (JIT) costs more than
        # it saves at a batch's size.
        await self.conn.execute("SET LOCAL jit = off")
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"{self.spec.raw_table}|{self.partition_key}",),
        )
        # Sorts (DISTINCT ON) and the materialized typed rows of a batch fit in memory.
        await self.conn.execute("SET LOCAL work_mem = '64MB'")
        # What the window held before this load (the lock keeps other loads of the partition
        # out): where it held nothing, nothing can be stale at the end, and the prune that
        # would read every row just written is skipped (a first load, every backfill).
        self._held_before = {
            t.table: await self._exists(
                self._target_scope(t), {"lo": self.window[0], "hi": self.window[1]}, table=t.table
            )
            for t in self.spec.targets
            if t.on_missing != "keep"
        }
        self._raw_held_before = await self._exists(
            sql.SQL("partition_key = %(partition_key)s"), {}, table=self.spec.raw_table
        )
        # Where neither raw nor any target's scope held anything, batches are plain INSERTs:
        # ON CONFLICT's speculative insertion and the sort for DISTINCT ON cost PostgreSQL
        # ~10 % of a load. A key that is there after all (repeated by offset paging on a
        # later page, or kept under another partition) fails the batch's savepoint, and the
        # load upserts from then on.
        self._upsert = (
            self.rebuild
            or self._raw_held_before
            or any(self._held_before.values())
            or any(t.on_missing == "keep" for t in self.spec.targets)
        )

    async def _exists(self, scope: sql.Composable, params: Mapping[str, Any], table: str) -> bool:
        cur = await self.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT FROM {table} WHERE {scope})").format(
                table=qualified_ident(table), scope=scope
            ),
            {**self.params, **params},
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def rejected_now(self) -> bool:
        """Whether this load sent any record to raw.rejects (after a flush)."""
        cur = await self.conn.execute(
            "SELECT EXISTS (SELECT FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
            "AND partition_key = %(partition_key)s AND fetched_at = %(fetched_at)s)",
            self.params,
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def add(self, body: bytes, records: int) -> None:
        """Queue one page body (the vendor's UTF-8 JSON) holding ``records`` records."""
        self._buffer.append(body)
        self._buffered += records
        self.result.records_received += records
        limit = (
            self.batch_records if self.result.batches else min(self.batch_records, self.FIRST_BATCH_RECORDS)
        )
        if self._buffered >= limit:
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        cur = self.conn.cursor()
        pages, self._buffer, self._buffered = self._buffer, [], 0
        fast = any(t.fast_select_sql is not None for t in self.spec.targets)
        refused: list[Refused] | None = None
        while True:
            try:
                async with self.conn.transaction():  # a savepoint: a refused batch leaves no trace
                    counts = await self._land_batch(cur, pages, refused or [], fast=fast, upsert=self._upsert)
                break
            except psycopg.errors.UniqueViolation as exc:
                if self._upsert:
                    raise self._error(exc) from None
                self._upsert = True  # a key of this batch is there already
            except psycopg.errors.DataError as exc:
                if fast:
                    fast = (
                        False  # a value the plain casts refuse: the guarded SELECTs reject just that record
                    )
                elif refused is None:
                    # The guarded SELECTs never raise: PostgreSQL refused a record itself.
                    pages, refused = self._split(pages, exc)
                else:
                    raise self._error(exc) from None
        self.result.refused_records += len(refused or [])
        for target, n in zip(self.spec.targets, counts, strict=True):
            self.result.rows_upserted[target.table] += n
        self.result.batches += 1

    def _error(self, exc: psycopg.Error) -> LoadError:
        primary = exc.diag.message_primary or type(exc).__name__
        return LoadError(
            f"{self.spec.raw_table}, partition {self.partition_key}, batch {self.result.batches + 1}: "
            f"PostgreSQL refused it ({exc.sqlstate}: {primary})"
        )

    def _split(self, pages: list[bytes], exc: psycopg.Error) -> tuple[list[bytes], list[Refused]]:
        """The batch's pages without the records PostgreSQL cannot take, and those records."""
        cleaned: list[bytes] = []
        refused: list[Refused] = []
        for number, body in enumerate(pages, 1):
            try:
                page, bad = split_page(body, self.spec.records_path)
            except UnparsablePage as problem:
                raise LoadError(
                    f"{self.spec.raw_table}, partition {self.partition_key}: page {number} of batch "
                    f"{self.result.batches + 1}: {problem}"
                ) from None
            cleaned.append(page)
            refused.extend(bad)
        if not refused:  # nothing to isolate: the refusal was not about one record
            raise self._error(exc) from None
        return cleaned, refused

    async def _land_batch(
        self,
        cur: psycopg.AsyncCursor,
        pages: list[bytes],
        refused: list[Refused],
        *,
        fast: bool,
        upsert: bool,
    ) -> list[int]:
        """Land the batch's pages in raw and every core target in one statement, and the
        records PostgreSQL refused in raw.rejects; return the rows written per target."""
        # The page bodies travel as one binary bytea[] parameter: length-prefixed bytes, no
        # escaping, one message. (A COPY into a temp staging table did the same, but its
        # per-batch TRUNCATE re-created the table's files and its extra round trips left
        # the backend idle: ~10 % of a load's wall time, bench/README.md.)
        params = {**self._batch_params, "pages": pages}
        if refused:
            params["refused_records"] = [r.record for r in refused]
            params["refused_reasons"] = [r.reason for r in refused]
        await cur.execute(self._batch_sql(fast, upsert, refused=bool(refused)), params)
        row = await cur.fetchone()
        assert row is not None
        return [int(n) for n in row]

    @property
    def _batch_params(self) -> dict[str, Any]:
        targets = {f"target_{i}": t.table for i, t in enumerate(self.spec.targets)}
        return {**self.params, **targets, "raw_table": self.spec.raw_table}

    def _batch_sql(self, fast: bool, upsert: bool = True, refused: bool = False) -> sql.Composed:
        # One statement of data-modifying CTEs: the records are exploded once, held in
        # memory (MATERIALIZED) and read by every step, instead of written to a temp table
        # and read back per step. The CTE is named like the table the sources' SELECTs read.
        # All steps see the same snapshot: the DELETE of earlier rejections never sees the
        # rejections this statement adds.
        steps: list[sql.Composable] = [
            # DISTINCT ON keeps one record per key: offset paging can repeat a record across
            # pages, and ON CONFLICT cannot touch one row twice in a statement. Keyless
            # records are told apart by their content, so each distinct one reaches
            # raw.rejects.
            sql.SQL(
                "_stage_records AS MATERIALIZED ("
                "SELECT DISTINCT ON (k, CASE WHEN k IS NULL THEN rec END) k AS record_key, rec FROM ("
                " SELECT ({key}) AS k, e.rec FROM unnest(%(pages)b::bytea[]) AS p(body),"
                # convert_from checks that the body is valid UTF-8 before it is parsed.
                " jsonb_array_elements(COALESCE(convert_from(p.body, 'UTF8')::jsonb #> %(records_path)s::text[],"
                " '[]'::jsonb)) AS e(rec)"
                ") x)"
            ).format(key=sql.SQL(self.spec.key_sql)),
            # A record fetched again replaces its earlier rejection (it may type now);
            # rejections of records this pull did not reach stay, so an incremental pull
            # loses none.
            sql.SQL(
                "settled AS (DELETE FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
                "AND partition_key = %(partition_key)s "
                "AND record_key IN (SELECT record_key FROM _stage_records WHERE record_key IS NOT NULL"
                "{refused_keys}))"
            ).format(
                refused_keys=sql.SQL(" UNION ALL SELECT record_key FROM _refused") if refused else sql.SQL("")
            ),
            sql.SQL(
                "keyless AS (INSERT INTO raw.rejects (source_table, partition_key, record_key, reason, record, fetched_at) "
                "SELECT %(raw_table)s, %(partition_key)s, NULL, 'the record has no natural key', rec, %(fetched_at)s "
                "FROM _stage_records WHERE record_key IS NULL)"
            ),
        ]
        if not self.rebuild:  # a rebuild reads raw: it lands nothing there
            steps.append(
                sql.SQL(
                    "landed AS (INSERT INTO {raw} "
                    "(record_key, partition_key, window_start, window_end, fetched_at, record) "
                    "SELECT record_key, %(partition_key)s, %(window_start)s, %(window_end)s, %(fetched_at)s, rec "
                    "FROM _stage_records WHERE record_key IS NOT NULL{on_conflict})"
                ).format(
                    raw=qualified_ident(self.spec.raw_table),
                    on_conflict=sql.SQL(
                        " ON CONFLICT (record_key) DO UPDATE SET partition_key = EXCLUDED.partition_key, "
                        "window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, "
                        "fetched_at = EXCLUDED.fetched_at, record = EXCLUDED.record"
                        if upsert
                        else ""
                    ),
                )
            )
        if refused:
            # Records PostgreSQL cannot take, as made-safe copies: keyed by the same SQL as
            # the rest (the key fields are intact in the copy).
            steps[1:1] = [
                sql.SQL(
                    "_refused AS MATERIALIZED (SELECT ({key}) AS record_key, rec, reason FROM ("
                    " SELECT t::jsonb AS rec, reason"
                    " FROM unnest(%(refused_records)s::text[], %(refused_reasons)s::text[]) AS u(t, reason)) r)"
                ).format(key=sql.SQL(self.spec.key_sql))
            ]
            steps.append(
                sql.SQL(
                    "refused AS (INSERT INTO raw.rejects "
                    "(source_table, partition_key, record_key, reason, record, fetched_at) "
                    "SELECT %(raw_table)s, %(partition_key)s, record_key, reason, rec, %(fetched_at)s FROM _refused)"
                )
            )
        counts: list[sql.Composable] = []
        for i, target in enumerate(self.spec.targets):
            select = target.fast_select_sql if fast and target.fast_select_sql else target.select_sql
            steps.extend(self._target_steps(i, target, select, upsert, keep_gone=self.rebuild))
            counts.append(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"up_{i}")))
        return sql.SQL("WITH {steps} SELECT {counts}").format(
            steps=sql.SQL(", ").join(steps), counts=sql.SQL(", ").join(counts)
        )

    @staticmethod
    def _target_steps(
        i: int, target: CoreTarget, select_sql: str, upsert: bool, keep_gone: bool = False
    ) -> list[sql.Composable]:
        # The typed rows are computed once (MATERIALIZED) and feed both the rejects and the
        # upsert.
        updates = [c for c in target.columns if c not in target.key]
        set_clause = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in (*updates, "_loaded_at")
        )
        if target.on_missing == "mark_gone" and not keep_gone:  # the vendor returned it: not gone
            set_clause = sql.SQL("{}, _gone_at = NULL").format(set_clause)
        n, rejected, up = (sql.Identifier(f"{name}_{i}") for name in ("n", "rejected", "up"))
        return [
            sql.SQL("{n} AS MATERIALIZED ({select})").format(n=n, select=sql.SQL(select_sql)),
            sql.SQL(
                "{rejected} AS ("
                " INSERT INTO raw.rejects (source_table, partition_key, record_key, reason, record, fetched_at)"
                " SELECT {name}, %(partition_key)s, s.record_key, r._reject, s.rec, %(fetched_at)s"
                " FROM (SELECT DISTINCT _record_key, _reject FROM {n} WHERE _reject IS NOT NULL) r"
                " JOIN _stage_records s ON s.record_key = r._record_key"
                # Evaluated once, before the join: a batch without rejects (the usual one)
                # skips hashing its records.
                " WHERE EXISTS (SELECT FROM {n} WHERE _reject IS NOT NULL))"
            ).format(rejected=rejected, n=n, name=sql.Placeholder(f"target_{i}")),
            sql.SQL(
                "{up} AS (INSERT INTO {table} ({cols}, _loaded_at) "
                "SELECT {distinct}{cols}, %(fetched_at)s FROM {n} WHERE _reject IS NULL{on_conflict} RETURNING 1)"
            ).format(
                up=up,
                n=n,
                table=qualified_ident(target.table),
                cols=_cols(target.columns),
                # Without ON CONFLICT a key twice in the batch fails the INSERT, which is
                # then upserted: no sort needed to keep one row per key.
                distinct=sql.SQL("DISTINCT ON ({key}) ").format(key=_cols(target.key))
                if upsert
                else sql.SQL(""),
                on_conflict=sql.SQL(" ON CONFLICT ({key}) DO UPDATE SET {set_clause}").format(
                    key=_cols(target.key), set_clause=set_clause
                )
                if upsert
                else sql.SQL(""),
            ),
        ]

    async def finish(
        self, complete: bool, pulled_range: tuple[datetime, datetime] | None = None
    ) -> LoadResult:
        """Flush, then, if the pull was ``complete`` over ``pulled_range`` (default: the whole
        window), mark gone what it no longer returned, unless that is more than
        ``max_gone_share`` of a table's rows there (or any row, when it returned nothing):
        then nothing is marked and ``result.gone_refused`` says why. ``raw`` is never
        pruned: it keeps every record the vendor ever returned."""
        await self.flush()
        cur = self.conn.cursor()
        lo, hi = pulled_range or self.window
        whole_window = (lo, hi) == tuple(self.window)
        if complete:
            await self._mark_gone(cur, lo, hi)
        if complete and whole_window:
            # Every record of the window was asked for: older rejections are settled.
            await cur.execute(
                "DELETE FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
                "AND partition_key = %(partition_key)s AND fetched_at < %(fetched_at)s",
                self.params,
            )
        await cur.execute(
            sql.SQL("SELECT count(*) FROM {raw} WHERE partition_key = %s AND fetched_at = %s").format(
                raw=qualified_ident(self.spec.raw_table)
            ),
            (self.partition_key, self.fetched_at),
        )
        row = await cur.fetchone()
        self.result.rows_landed = int(row[0]) if row else 0
        await cur.execute(
            "SELECT count(*) FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
            "AND partition_key = %(partition_key)s",
            self.params,
        )
        row = await cur.fetchone()
        self.result.rejects = int(row[0]) if row else 0
        return self.result

    async def _mark_gone(self, cur: psycopg.AsyncCursor, lo: datetime, hi: datetime) -> None:
        """Mark gone, in every target, the rows of [lo, hi) this complete pull did not
        return; all or nothing across targets, so a call and its callees agree."""
        targets = [t for t in self.spec.targets if t.on_missing == "mark_gone"]
        params = {**self.params, "lo": lo, "hi": hi}
        for target in targets:
            self.result.rows_gone[target.table] = 0
        counted = [t for t in targets if self._held_before[t.table]]  # else nothing can be missing
        refusals: list[GoneRefusal] = []
        for target in counted:
            await cur.execute(
                sql.SQL(
                    "SELECT count(*), count(*) FILTER (WHERE _loaded_at < %(fetched_at)s) "
                    "FROM {table} WHERE {scope} AND _gone_at IS NULL"
                ).format(table=qualified_ident(target.table), scope=self._target_scope(target)),
                params,
            )
            live, missing = await cur.fetchone() or (0, 0)
            returned = self.result.records_received
            if missing and (returned == 0 or missing > self.max_gone_share * live):
                refusals.append(GoneRefusal(target.table, returned, live, missing, self.max_gone_share))
        if refusals:
            self.result.gone_refused = refusals
            return
        for target in counted:
            await cur.execute(
                sql.SQL(
                    "UPDATE {table} SET _gone_at = %(fetched_at)s "
                    "WHERE {scope} AND _loaded_at < %(fetched_at)s AND _gone_at IS NULL"
                ).format(table=qualified_ident(target.table), scope=self._target_scope(target)),
                params,
            )
            self.result.rows_gone[target.table] = cur.rowcount

    @staticmethod
    def _target_scope(target: CoreTarget) -> sql.Composable:
        """The rows of ``target`` a load over [%(lo)s, %(hi)s) answers for."""
        scope: sql.Composable = sql.SQL("TRUE")
        if target.time_column is not None:
            scope = sql.SQL("{c} >= %(lo)s AND {c} < %(hi)s").format(c=sql.Identifier(target.time_column))
        if target.scope_sql is not None:
            scope = sql.SQL("{} AND ({})").format(scope, sql.SQL(target.scope_sql))
        return scope


async def pump(pages: AsyncIterator[Page], load: PartitionLoad, max_bytes: int = 4 << 20) -> None:
    """Feed ``pages`` into ``load`` through a queue bounded by the bytes of the pages it holds
    (a CRM page is 40 KB, a push-log page 1 MB), so fetching goes on while PostgreSQL works
    on the previous batch and memory stays bounded whatever the vendor's page size.

    4 MB holds about two CRM batches: enough to keep fetching through a flush. A deeper
    queue fetches no faster; it only fills further the longer a pull runs, so peak memory
    would grow with the partition's size (bench/README.md).

    An error on either side cancels the other and is raised as it was (the load then rolls
    back).
    """
    queue: asyncio.Queue[Page | None] = asyncio.Queue()
    held = 0
    room = asyncio.Condition()

    async def produce() -> None:
        nonlocal held
        async for page in pages:
            async with room:
                await room.wait_for(lambda: held < max_bytes)  # noqa: B023 (reads the current value on purpose)
                held += len(page.body)
            queue.put_nowait(page)
        queue.put_nowait(None)

    async def take(page: Page) -> None:
        nonlocal held
        async with room:
            held -= len(page.body)
            room.notify()
        await load.add(page.body, page.records)

    async def consume() -> None:
        while (page := await queue.get()) is not None:
            await take(page)
            # Take what is already queued without yielding: page by page, the producer would
            # refill each freed slot, find the queue full when a flush starts, and sit idle
            # for the whole flush instead of fetching the next batch.
            while not queue.empty():
                if (page := queue.get_nowait()) is None:
                    return
                await take(page)

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(produce())
            tasks.create_task(consume())
    except* Exception as group:
        # One side failed and the other was cancelled: raise the failure itself, so callers
        # and the run's error name the vendor or the table, not a group.
        raise group.exceptions[0] from None
