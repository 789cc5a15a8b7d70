"""What one pull returned, kept apart from the rows it wrote: an upsert skips a record whose
content did not change (no row version, no WAL), so a row's ``_loaded_at`` says when it last
changed, not whether this pull saw it. The batch statement adds the pull's record keys and,
per target that may mark rows gone, its row keys to temporary tables (dropped at commit);
gone-marking anti-joins against them and ``rows_landed`` counts them."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from pipelines.lib.loading.spec import CoreTarget, columns, qualified_ident

SEEN_RECORDS = "_pull_seen_records"


def seen_table(i: int) -> str:
    """The temporary table holding the keys target ``i`` of the spec got from this pull."""
    return f"_pull_seen_{i}"


async def start(conn: psycopg.AsyncConnection, targets: Sequence[tuple[int, CoreTarget]]) -> None:
    """Empty tables for this load (one transaction may hold several loads: each starts afresh)."""
    await conn.execute(
        sql.SQL(
            "DROP TABLE IF EXISTS pg_temp.{seen}; CREATE TEMP TABLE {seen} (record_key text) ON COMMIT DROP"
        ).format(seen=sql.Identifier(SEEN_RECORDS))
    )
    for i, target in targets:
        await conn.execute(
            sql.SQL(
                "DROP TABLE IF EXISTS pg_temp.{seen}; "
                "CREATE TEMP TABLE {seen} ON COMMIT DROP AS SELECT {key} FROM {table} WITH NO DATA"
            ).format(
                seen=sql.Identifier(seen_table(i)),
                key=columns(target.key),
                table=qualified_ident(target.table),
            )
        )


async def records(cur: psycopg.AsyncCursor) -> int:
    """The distinct records this pull landed in raw (returned, whether changed or not)."""
    await cur.execute(
        sql.SQL("SELECT count(DISTINCT record_key) FROM pg_temp.{}").format(sql.Identifier(SEEN_RECORDS))
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def not_returned(i: int, target: CoreTarget) -> sql.Composable:
    """A condition on the target's row ``t``: this pull did not return it."""
    key = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in target.key)
    return sql.SQL("NOT EXISTS (SELECT FROM pg_temp.{seen} s WHERE ({s_key}) = ({key}))").format(
        seen=sql.Identifier(seen_table(i)),
        s_key=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in target.key),
        key=key,
    )
