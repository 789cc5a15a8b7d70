"""The load's bookkeeping in ``raw.rejects``: the records a source's SELECTs could not type,
PostgreSQL could not take, or that have no natural key (the batch statement writes them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

# Every query takes the load's parameters: %(reject_tables)s (the spec's raw and core
# tables), %(partition_key)s, %(fetched_at)s.


async def any_from_this_fetch(conn: psycopg.AsyncConnection, params: Mapping[str, Any]) -> bool:
    """Whether this load (its ``fetched_at``) sent any record to raw.rejects."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
        "AND partition_key = %(partition_key)s AND fetched_at = %(fetched_at)s)",
        params,
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def settle_earlier(cur: psycopg.AsyncCursor, params: Mapping[str, Any]) -> None:
    """Drop the partition's rejections older than this load: a complete pull of the whole
    window asked for every record again, and each it returned was judged afresh."""
    await cur.execute(
        "DELETE FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
        "AND partition_key = %(partition_key)s AND fetched_at < %(fetched_at)s",
        params,
    )


async def count(cur: psycopg.AsyncCursor, params: Mapping[str, Any]) -> int:
    """The partition's rejections, of this load and earlier ones."""
    await cur.execute(
        "SELECT count(*) FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
        "AND partition_key = %(partition_key)s",
        params,
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0
