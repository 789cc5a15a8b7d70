"""What the mart's assets remember between runs, in ``core.mart_state`` (in the caller's
transaction, so a watermark moves only with the rows it covers): the facts' load watermarks
and the fingerprint of the PII key (``pii.key_id``, never the key)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

# A fact row carries the time its pull started (_loaded_at), not when its load committed: a
# load still running when the watermark moved commits rows older than it. Each run reads
# from this much before its watermark, so such rows are found (at the cost of reading the
# last hour's loads twice).
LOAD_OVERLAP = timedelta(hours=1)
EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)  # before any fact
FACTS = ("core.fact_crm_call", "core.fact_trtc_call", "core.fact_push_log", "core.fact_isales_api_call")
# The newest load or deletion in the facts (two index lookups per fact).
NEWEST = (
    "SELECT max(t) FROM ("
    + " UNION ALL ".join(
        f"(SELECT max(_loaded_at) AS t FROM {f}) UNION ALL (SELECT max(_gone_at) FROM {f})" for f in FACTS
    )
    + ") m"
)


def get(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM core.mart_state WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def put(conn: psycopg.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO core.mart_state (name, value, updated_at) VALUES (%s, %s, now()) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        (name, value),
    )


def since(conn: psycopg.Connection, name: str) -> tuple[datetime, datetime | None]:
    """(read from, new watermark): the rows to read are those loaded or gone after the first;
    the second is what to store once they are handled. No watermark yet: read everything."""
    newest = conn.execute(NEWEST).fetchone()[0]
    stored = get(conn, name)
    return (datetime.fromisoformat(stored) - LOAD_OVERLAP if stored else EVERYTHING), newest


def advance(conn: psycopg.Connection, name: str, newest: datetime | None) -> None:
    if newest is not None:
        put(conn, name, newest.isoformat())
