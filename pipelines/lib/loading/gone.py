"""Gone-marking: the rows of a window that a complete pull no longer returned get
``_gone_at``; nothing is ever deleted, from ``core`` or ``raw``: vendors lose and forget data
more often than they delete it. A pull that would mark more than ``max_share`` of a table's
rows gone (or any row, when it returned nothing) marks none and says why (``GoneRefusal``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pipelines.lib.loading import seen
from pipelines.lib.loading.spec import SourceSpec, qualified_ident, target_scope

# A complete pull may mark at most this share of a window's rows gone; more is refused.
DEFAULT_MAX_GONE_SHARE = 0.2


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


@dataclass
class Gone:
    """What ``mark_gone`` did: rows marked per table, or why it marked none."""

    rows: dict[str, int]
    refused: list[GoneRefusal]


async def mark_gone(
    cur: psycopg.AsyncCursor,
    spec: SourceSpec,
    params: Mapping[str, Any],
    *,
    held_before: Mapping[str, bool],
    returned: int,
    max_share: float,
) -> Gone:
    """Mark gone, in every target, the rows of [%(lo)s, %(hi)s) this complete pull (as of
    %(fetched_at)s, ``returned`` records) did not return (its keys, ``seen``: a row returned
    unchanged was not rewritten); all or nothing across targets, so a call and its callees
    agree. A target whose scope ``held_before`` nothing is skipped: nothing there can be
    missing."""
    targets = [(i, t) for i, t in enumerate(spec.targets) if t.on_missing == "mark_gone"]
    gone = Gone(rows={t.table: 0 for _, t in targets}, refused=[])
    counted = [(i, t) for i, t in targets if held_before[t.table]]
    for i, target in counted:
        await cur.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE {missing}) "
                "FROM {table} t WHERE {scope} AND _gone_at IS NULL"
            ).format(
                table=qualified_ident(target.table),
                scope=target_scope(target),
                missing=seen.not_returned(i, target),
            ),
            params,
        )
        live, missing = await cur.fetchone() or (0, 0)
        if missing and (returned == 0 or missing > max_share * live):
            gone.refused.append(GoneRefusal(target.table, returned, live, missing, max_share))
    if gone.refused:
        return gone
    for i, target in counted:
        await cur.execute(
            sql.SQL(
                "UPDATE {table} t SET _gone_at = %(fetched_at)s WHERE {scope} AND {missing} AND _gone_at IS NULL"
            ).format(
                table=qualified_ident(target.table),
                scope=target_scope(target),
                missing=seen.not_returned(i, target),
            ),
            params,
        )
        gone.rows[target.table] = cur.rowcount
    return gone
