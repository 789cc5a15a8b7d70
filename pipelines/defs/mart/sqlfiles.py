"""The mart's SQL, kept as files under ``sql/mart/`` so a change is one SQL diff:

- ``views/<view>.sql``: ``CREATE OR REPLACE VIEW`` and its ``COMMENT ON`` statements, applied
  by the mart asset when the file differs from the one last applied (its SHA-256 is kept in
  ``core.mart_state``), so an unchanged view is not locked each hour;
- ``days/<table>.sql``: the SELECT of one reporting day's rows of a table kept by day, bound to
  ``%(day)s``, ``%(lo)s``, ``%(hi)s`` (the day's instants) and ``%(tz)s`` (the reporting zone);
- ``customers.sql``: ``mart.customers`` rows of the customers in ``pg_temp.mart_touched``.

Tables keep their DDL in migrations; these files only read and define views.
"""

from __future__ import annotations

import functools
import hashlib

import psycopg

from pipelines.defs.mart import state
from pipelines.lib.warehouse import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql" / "mart"
VIEWS = ("calls", "push_deliveries")


@functools.cache
def read(name: str) -> str:
    """The text of ``sql/mart/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def apply_views(conn: psycopg.Connection) -> list[str]:
    """Apply each view file that changed since it was last applied, in the caller's
    transaction; returns the views applied."""
    applied = []
    for view in VIEWS:
        text = read(f"views/{view}")
        digest = hashlib.sha256(text.encode()).hexdigest()
        name = f"view:{view}"
        if state.get(conn, name) == digest:
            continue
        conn.execute(text.encode())  # several statements, no parameters: the simple protocol
        state.put(conn, name, digest)
        applied.append(view)
    return applied
