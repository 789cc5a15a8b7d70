"""One partition's load: one transaction that takes the partition's lock (``lock``), chooses
plain INSERTs or upserts (``write_mode``), lands the pages batch by batch (``batch``) and,
after a complete pull, marks gone what it no longer returned (``gone``)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import psycopg

from pipelines.lib.loading import rejects, seen
from pipelines.lib.loading.batch import land_batch
from pipelines.lib.loading.fallback import Attempt
from pipelines.lib.loading.gone import DEFAULT_MAX_GONE_SHARE, mark_gone
from pipelines.lib.loading.lock import lock_partition
from pipelines.lib.loading.result import LoadResult
from pipelines.lib.loading.spec import SourceSpec
from pipelines.lib.loading.statement import Shape
from pipelines.lib.loading.write_mode import Held, held_before


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
        self.conn, self.spec = conn, spec
        self.partition_key, self.window, self.fetched_at = partition_key, window, fetched_at
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
        self.held = Held({}, raw=False)
        self.upsert = True  # False while every batch went in by plain INSERTs
        self.track: tuple[str, ...] = ()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> PartitionLoad:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.conn.transaction())
            # Each batch's statements are planned afresh; compiling them (JIT) costs more
            # than it saves at a batch's size.
            await self.conn.execute("SET LOCAL jit = off")
            await lock_partition(self.conn, self.spec.raw_table, self.partition_key)
            # Sorts (DISTINCT ON) and the materialized typed rows of a batch fit in memory.
            await self.conn.execute("SET LOCAL work_mem = '64MB'")
            self.held = await held_before(self.conn, self.spec, self.params)
            self.upsert = self.held.upsert_from_start(self.spec, rebuild=self.rebuild)
            # Keys are kept only where a complete pull may mark rows gone: a target whose
            # scope held nothing before has nothing to mark.
            self.track = () if self.rebuild else tuple(t for t, held in self.held.targets.items() if held)
            await seen.start(
                self.conn, [(i, t) for i, t in enumerate(self.spec.targets) if t.table in self.track]
            )
            # Set up: the transaction stays open until __aexit__ (a failure above rolled it back).
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def rejected_now(self) -> bool:
        """Whether this load sent any record to raw.rejects (after a flush)."""
        return await rejects.any_from_this_fetch(self.conn, self.params)

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
        """Land the queued pages as one batch."""
        if not self._buffer:
            return
        pages, self._buffer, self._buffered = self._buffer, [], 0
        fast = any(t.fast_select_sql is not None for t in self.spec.targets)
        first = Attempt(pages, Shape(upsert=self.upsert, fast=fast, rebuild=self.rebuild, track=self.track))
        name = f"{self.spec.raw_table}, partition {self.partition_key}, batch {self.result.batches + 1}"
        landed, counts = await land_batch(self.conn, self.spec, self.params, first, name)
        self.upsert = landed.shape.upsert  # a key found there already: upserts from now on
        self.result.refused_records += len(landed.refused)
        for target, n in zip(self.spec.targets, counts, strict=True):
            self.result.rows_upserted[target.table] += n
        self.result.batches += 1

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
        if complete:
            gone = await mark_gone(
                cur,
                self.spec,
                {**self.params, "lo": lo, "hi": hi},
                held_before=self.held.targets,
                returned=self.result.records_received,
                max_share=self.max_gone_share,
            )
            self.result.rows_gone, self.result.gone_refused = gone.rows, gone.refused
        if complete and (lo, hi) == tuple(self.window):
            await rejects.settle_earlier(cur, self.params)  # every record of the window was asked for
        # The records this pull landed in raw, written or found unchanged (a rebuild lands none).
        self.result.rows_landed = 0 if self.rebuild else await seen.records(cur)
        self.result.rejects = await rejects.count(cur, self.params)
        return self.result
