"""Insert or upsert: a partition that held nothing before its load (a first load, a
backfill) takes plain INSERTs, since ON CONFLICT's speculative insertion and the sort for
DISTINCT ON cost PostgreSQL ~10 % of a load. A key that is there after all (repeated by
offset paging on a later page, or kept under another partition) fails its batch's savepoint,
and the load upserts from then on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pipelines.lib.loading.spec import SourceSpec, qualified_ident, target_scope


@dataclass(frozen=True)
class Held:
    """What the partition held before this load (its lock keeps other loads of it out)."""

    # Per target that marks rows gone: whether its scope over the window held a row. Where it
    # held nothing, nothing can be stale at the end, and the gone-marking that would read
    # every row just written is skipped.
    targets: dict[str, bool]
    raw: bool  # whether raw held a record of the partition

    def upsert_from_start(self, spec: SourceSpec, *, rebuild: bool) -> bool:
        """Whether the first batch must upsert: only a partition that held nothing anywhere
        (and whose every target can tell so) starts with plain INSERTs."""
        return (
            rebuild
            or self.raw
            or any(self.targets.values())
            or any(t.on_missing == "keep" for t in spec.targets)
        )


async def held_before(conn: psycopg.AsyncConnection, spec: SourceSpec, params: Mapping[str, Any]) -> Held:
    """What the partition (``params``: the load's, with its window) holds now."""
    window = {"lo": params["window_start"], "hi": params["window_end"]}
    targets = {
        t.table: await _exists(conn, t.table, target_scope(t), {**params, **window})
        for t in spec.targets
        if t.on_missing != "keep"
    }
    raw = await _exists(conn, spec.raw_table, sql.SQL("partition_key = %(partition_key)s"), params)
    return Held(targets, raw)


async def _exists(
    conn: psycopg.AsyncConnection, table: str, scope: sql.Composable, params: Mapping[str, Any]
) -> bool:
    cur = await conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {table} WHERE {scope})").format(
            table=qualified_ident(table), scope=scope
        ),
        params,
    )
    row = await cur.fetchone()
    return bool(row and row[0])
