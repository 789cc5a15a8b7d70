"""Quality checks shared by every source, evaluated in SQL against the warehouse right after
a partition commits and returned with its materialization (``check_specs``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue
from psycopg import sql

from pipelines.loader import LoadResult, qualified_ident


def _window_clause(time_column: str | None) -> sql.Composable:
    if time_column is None:
        return sql.SQL("TRUE")
    return sql.SQL("{c} >= %(lo)s AND {c} < %(hi)s").format(c=sql.Identifier(time_column))


def specs(asset_key: AssetKey, names: Sequence[str], descriptions: Mapping[str, str]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=asset_key, description=descriptions.get(name)) for name in names]


DESCRIPTIONS = {
    "reconciles_with_api": "Distinct records landed equal the total the API reported for the window.",
    "no_duplicate_keys": "The API returned each natural key once in the pull (offset paging can repeat).",
    "no_rejects": "Every record of the pull could be typed into core (else see raw.rejects).",
    "required_not_null": "Columns the vendor documents as not-null are filled.",
    "known_enums": "Coded columns hold only documented values.",
}


def reconciles(
    result: LoadResult, reported_total: int | None, severity: AssetCheckSeverity
) -> AssetCheckResult:
    if reported_total is None:
        return AssetCheckResult(
            check_name="reconciles_with_api",
            passed=True,
            severity=AssetCheckSeverity.WARN,
            metadata={"rows_landed": result.rows_landed, "api_total": "not reported"},
            description="The API reported no total for this pull.",
        )
    return AssetCheckResult(
        check_name="reconciles_with_api",
        passed=result.rows_landed == reported_total,
        severity=severity,
        metadata={"rows_landed": result.rows_landed, "api_total": reported_total},
    )


def no_duplicates(result: LoadResult) -> AssetCheckResult:
    # Keyless records are not landed either; they show up here and in no_rejects.
    dupes = max(0, result.records_received - result.rows_landed)
    return AssetCheckResult(
        check_name="no_duplicate_keys",
        passed=dupes == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"records_received": result.records_received, "duplicates": dupes},
    )


def no_rejects(
    conn: psycopg.Connection, tables: Sequence[str], partition_keys: str | Sequence[str], received: int
) -> AssetCheckResult:
    keys = [partition_keys] if isinstance(partition_keys, str) else list(partition_keys)
    rows = conn.execute(
        "SELECT reason, count(*) FROM raw.rejects WHERE source_table = ANY(%s) AND partition_key = ANY(%s) "
        "GROUP BY reason ORDER BY count(*) DESC LIMIT 20",
        (list(tables), keys),
    ).fetchall()
    total = sum(n for _, n in rows)
    # All records rejected means the vendor's format changed: that is a failure, not a warning.
    severity = AssetCheckSeverity.ERROR if received and total >= received else AssetCheckSeverity.WARN
    return AssetCheckResult(
        check_name="no_rejects",
        passed=total == 0,
        severity=severity,
        metadata={
            "rejects": total,
            "reasons": MetadataValue.md("\n".join(f"- {n} × {reason}" for reason, n in rows) or "none"),
        },
    )


def required_not_null(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    time_column: str | None,
    window: tuple[datetime, datetime] | None,
) -> AssetCheckResult:
    counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {c} IS NULL)").format(c=sql.Identifier(c)) for c in columns
    )
    query = sql.SQL("SELECT {counts} FROM {table} WHERE {scope}").format(
        counts=counts, table=qualified_ident(table), scope=_window_clause(time_column if window else None)
    )
    lo, hi = window or (None, None)
    row = conn.execute(query, {"lo": lo, "hi": hi}).fetchone() or ()
    nulls = {c: int(n) for c, n in zip(columns, row, strict=True) if n}
    return AssetCheckResult(
        check_name="required_not_null",
        passed=not nulls,
        severity=AssetCheckSeverity.WARN,
        metadata={"null_counts": MetadataValue.json(nulls), "columns": ", ".join(columns)},
    )


def known_enums(
    conn: psycopg.Connection,
    table: str,
    allowed: Mapping[str, Sequence[Any]],
    time_column: str | None,
    window: tuple[datetime, datetime] | None,
) -> AssetCheckResult:
    """Lists, per column, values outside the documented set (NULL is not a value).

    One scan counts the unknown values of every column; only a column with some is read
    again, for its values (the usual clean partition costs one pass, not one per column)."""
    unknown: dict[str, dict[str, int]] = {}
    lo, hi = window or (None, None)
    params: dict[str, Any] = {"lo": lo, "hi": hi}
    scope = _window_clause(time_column if window else None)
    outside: list[sql.Composable] = []
    for i, (column, values) in enumerate(allowed.items()):
        params[f"allowed_{i}"] = [str(v) for v in values]
        outside.append(
            sql.SQL("{c} IS NOT NULL AND NOT ({c}::text = ANY({allowed}))").format(
                c=sql.Identifier(column), allowed=sql.Placeholder(f"allowed_{i}")
            )
        )
    counts = sql.SQL(", ").join(sql.SQL("count(*) FILTER (WHERE {})").format(o) for o in outside)
    row = (
        conn.execute(
            sql.SQL("SELECT {counts} FROM {table} WHERE {scope}").format(
                counts=counts, table=qualified_ident(table), scope=scope
            ),
            params,
        ).fetchone()
        or ()
    )
    for (column, _), condition, n in zip(allowed.items(), outside, row, strict=True):
        if not n:
            continue
        query = sql.SQL(
            "SELECT {c}::text, count(*) FROM {table} WHERE {scope} AND {condition} "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 20"
        ).format(c=sql.Identifier(column), table=qualified_ident(table), scope=scope, condition=condition)
        unknown[column] = {value: int(k) for value, k in conn.execute(query, params).fetchall()}
    return AssetCheckResult(
        check_name="known_enums",
        passed=not unknown,
        severity=AssetCheckSeverity.WARN,
        metadata={"unknown_values": MetadataValue.json(unknown)},
    )
