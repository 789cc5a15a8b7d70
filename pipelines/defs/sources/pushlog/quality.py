"""Push-log quality beyond the shared checks: every Type is in ``core.dim_push_type`` (a
check), and where TypeStr disagrees with the documented name of its Type (metadata: the
vendor's own sample disagrees, so it is a known quirk, not an alarm)."""

from __future__ import annotations

from datetime import datetime

import psycopg
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

DESCRIPTIONS = {
    "known_push_types": "Every Type of the month is one of the 29 in core.dim_push_type.",
}


def known_push_types(conn: psycopg.Connection, window: tuple[datetime, datetime]) -> AssetCheckResult:
    rows = conn.execute(
        "SELECT f.type::text, count(*) FROM core.fact_push_log f "
        "LEFT JOIN core.dim_push_type d ON d.type = f.type "
        "WHERE f.create_time >= %s AND f.create_time < %s AND f.type IS NOT NULL AND d.type IS NULL "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
        window,
    ).fetchall()
    unknown = {str(t): int(n) for t, n in rows}
    return AssetCheckResult(
        check_name="known_push_types",
        passed=not unknown,
        severity=AssetCheckSeverity.WARN,
        metadata={"unknown_types": MetadataValue.json(unknown)},
    )


def type_str_disagreements(conn: psycopg.Connection, window: tuple[datetime, datetime]) -> dict[str, object]:
    """TypeStr disagrees with the documented name of Type in the vendor's own sample
    (this folder's README.md): a known quirk, recorded as metadata rather than checked. ``type`` is what
    the warehouse trusts; the pairs show what the vendor printed."""
    rows = conn.execute(
        "SELECT f.type, d.name, f.type_str, count(*), sum(count(*)) OVER () FROM core.fact_push_log f "
        "JOIN core.dim_push_type d ON d.type = f.type "
        "WHERE f.create_time >= %s AND f.create_time < %s AND f.type_str IS DISTINCT FROM d.name "
        "GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 3 LIMIT 50",
        window,
    ).fetchall()
    pairs = [{"type": t, "documented": name, "type_str": s, "rows": int(n)} for t, name, s, n, _ in rows]
    return {
        "type_str_disagreeing_rows": MetadataValue.int(int(rows[0][4]) if rows else 0),
        "type_str_disagreeing_pairs": MetadataValue.json(pairs),
    }
