"""The partition's lock: two loads of one partition queue rather than race."""

from __future__ import annotations

import psycopg


async def lock_partition(conn: psycopg.AsyncConnection, raw_table: str, partition_key: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock of
    (``raw_table``, ``partition_key``). A load that takes it first sees everything a load
    of the same partition before it committed, and no other load of it until it ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"{raw_table}|{partition_key}",),
    )
