"""Quality checks shared by every source, evaluated in SQL against the warehouse right after
a partition commits and returned with its materialization (``check_specs``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue
from psycopg import sql
from sqlalchemy import Column

from pipelines.lib.loading import LoadResult, qualified_ident

# What a coded column may hold: the values listed, or the codes in a column of a mapping
# table the warehouse keeps (a model's Column), read by the check itself each time it runs.
# A code then lives in one place: the mapping table, which a migration changes.
Allowed = Sequence[Any] | Column


def _window_clause(time_column: str | None) -> sql.Composable:
    if time_column is None:
        return sql.SQL("TRUE")
    return sql.SQL("{c} >= %(lo)s AND {c} < %(hi)s").format(c=sql.Identifier(time_column))


def for_asset(asset_key: AssetKey | None, result: AssetCheckResult) -> AssetCheckResult:
    """``result`` naming ``asset_key``: a multi-asset's results must say which asset they check."""
    if asset_key is None or result.asset_key is not None:
        return result
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        metadata=result.metadata,
        description=result.description,
    )


# A failure of these stops the run (and what depends on the asset): an operator must look.
BLOCKING = frozenset({"no_mass_disappearance"})


def specs(asset_key: AssetKey, names: Sequence[str], descriptions: Mapping[str, str]) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=asset_key, description=descriptions.get(name), blocking=name in BLOCKING)
        for name in names
    ]


DESCRIPTIONS = {
    "reconciles_with_api": "Distinct records landed equal the total the API reported for the window.",
    "no_duplicate_keys": "The API returned each natural key once in the pull (offset paging can repeat).",
    "no_rejects": "Every record of the pull could be typed into core (else see raw.rejects).",
    "required_not_null": "Columns the vendor documents as not-null are filled.",
    "known_enums": "Coded columns hold only documented values (those listed, or those a mapping table maps).",
    "unexpected_fields": "The window's raw records carry no field the source's field list does not name "
    "(a new vendor field is kept in raw; map it or list it as untyped).",
    "no_mass_disappearance": "A complete pull marked at most <SOURCE>_MAX_GONE_SHARE (default 20 %) of the "
    "window's rows gone, and none when it returned nothing; otherwise it marked none and fails here.",
}


def no_mass_disappearance(
    results: LoadResult | Sequence[LoadResult], source: str, window: tuple[datetime, datetime] | str
) -> AssetCheckResult:
    """Fails (ERROR, blocking) when a load refused to mark rows gone: the vendor returned
    far fewer records than the warehouse holds for the window, which is far more often a
    vendor losing data than deleting it."""
    loads = [results] if isinstance(results, LoadResult) else list(results)
    span = window if isinstance(window, str) else f"[{window[0].isoformat()}, {window[1].isoformat()})"
    refusals = [r for load in loads for r in load.gone_refused]
    gone = {}
    for load in loads:
        for table, n in load.rows_gone.items():
            gone[table] = gone.get(table, 0) + n
    return AssetCheckResult(
        check_name="no_mass_disappearance",
        passed=not refusals,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_marked_gone": MetadataValue.json(gone),
            "refused": MetadataValue.json(
                [
                    {"table": r.table, "known": r.live, "missing": r.missing, "returned": r.returned}
                    for r in refusals
                ]
            ),
        },
        description="; ".join(r.describe(source, span) for r in refusals) or None,
    )


def unexpected_fields(
    conn: psycopg.Connection, landings: Mapping[str, tuple[Sequence[str], Sequence[str] | None]]
) -> AssetCheckResult:
    """WARN when raw records of the run's partitions carry top-level keys their source does
    not name: ``landings`` maps a raw table to (its partition keys, its known fields; None
    when the source declares none). Only the keys and their counts are reported, never values."""
    found: dict[str, dict[str, int]] = {}
    undeclared: list[str] = []
    for raw_table, (partition_keys, known) in sorted(landings.items()):
        if known is None:
            undeclared.append(raw_table)
            continue
        # Subtracting the known keys (one C call per record) leaves most records empty; only
        # the rest are unnested: 5x cheaper than unnesting every record's keys (200k: 0.1 s).
        query = sql.SQL(
            "SELECT k, count(*) FROM (SELECT record - %s::text[] AS rest FROM {raw} "
            "WHERE partition_key = ANY(%s) AND jsonb_typeof(record) = 'object') r "
            "CROSS JOIN LATERAL jsonb_object_keys(r.rest) AS k WHERE r.rest <> '{{}}'::jsonb "
            "GROUP BY k ORDER BY 2 DESC, 1 LIMIT 20"
        ).format(raw=qualified_ident(raw_table))
        rows = conn.execute(query, (list(known), list(partition_keys))).fetchall()
        if rows:
            found[raw_table] = {key: int(n) for key, n in rows}
    metadata: dict[str, Any] = {"unexpected_fields": MetadataValue.json(found)}
    if undeclared:
        metadata["fields_not_declared"] = ", ".join(undeclared)
    described = "; ".join(f"{table}: {', '.join(keys)}" for table, keys in found.items())
    return AssetCheckResult(
        check_name="unexpected_fields",
        passed=not found,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"fields no document names (kept in raw): {described}" if found else None,
    )


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
    # A record PostgreSQL could not store was returned all the same: it is in raw.rejects.
    returned = result.rows_landed + result.refused_records
    return AssetCheckResult(
        check_name="reconciles_with_api",
        passed=returned == reported_total,
        severity=severity,
        metadata={
            "rows_landed": result.rows_landed,
            "records_postgres_refused": result.refused_records,
            "api_total": reported_total,
        },
    )


def no_duplicates(result: LoadResult) -> AssetCheckResult:
    # Keyless records are not landed either; they show up here and in no_rejects.
    dupes = max(0, result.records_received - result.rows_landed - result.refused_records)
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


def _outside(column: str, values: Allowed, param: str, params: dict[str, Any]) -> sql.Composable:
    """The condition of a value of ``column`` that ``values`` does not allow (NULL is not
    a value). A mapping table's codes are read by the statement itself (an InitPlan, once),
    compared in the column's own type; listed values are a parameter, compared as text."""
    c = sql.Identifier(column)
    if isinstance(values, Column):
        known = sql.SQL("ARRAY(SELECT {k} FROM {t})").format(
            k=sql.Identifier(values.name), t=qualified_ident(values.table.fullname)
        )
        return sql.SQL("{c} IS NOT NULL AND NOT ({c} = ANY({known}))").format(c=c, known=known)
    params[param] = [str(v) for v in values]
    return sql.SQL("{c} IS NOT NULL AND NOT ({c}::text = ANY({allowed}))").format(
        c=c, allowed=sql.Placeholder(param)
    )


def _codes_from(allowed: Mapping[str, Allowed]) -> dict[str, Any]:
    """Which mapping table lists each column's codes: where a missing code is added."""
    tables = {c: f"{v.table.fullname}.{v.name}" for c, v in allowed.items() if isinstance(v, Column)}
    return {"codes_from": MetadataValue.json(tables)} if tables else {}


def window_checks(
    conn: psycopg.Connection,
    table: str,
    not_null: Sequence[str],
    allowed: Mapping[str, Allowed],
    time_column: str | None,
    window: tuple[datetime, datetime] | None,
) -> tuple[int, AssetCheckResult, AssetCheckResult]:
    """The window's live row count, ``required_not_null`` over ``not_null`` and ``known_enums``
    over ``allowed`` (NULL is not a value), from one scan of the window: after a load these
    were three scans of every row just written. Only a column with unknown values is read
    again, for them."""
    lo, hi = window or (None, None)
    params: dict[str, Any] = {"lo": lo, "hi": hi}
    scope = _window_clause(time_column if window else None)
    outside = [
        _outside(column, values, f"allowed_{i}", params) for i, (column, values) in enumerate(allowed.items())
    ]
    counts = [
        # Rows the vendor still returns: a row marked gone is kept, but no longer counted.
        sql.SQL("count(*) FILTER (WHERE _gone_at IS NULL)"),
        *(sql.SQL("count(*) FILTER (WHERE {} IS NULL)").format(sql.Identifier(c)) for c in not_null),
        *(sql.SQL("count(*) FILTER (WHERE {})").format(o) for o in outside),
    ]
    query = sql.SQL("SELECT {counts} FROM {table} WHERE {scope}").format(
        counts=sql.SQL(", ").join(counts), table=qualified_ident(table), scope=scope
    )
    row = conn.execute(query, params).fetchone() or (0,) * len(counts)
    rows, null_counts, unknown_counts = row[0], row[1 : 1 + len(not_null)], row[1 + len(not_null) :]
    nulls = {c: int(n) for c, n in zip(not_null, null_counts, strict=True) if n}
    unknown: dict[str, dict[str, int]] = {}
    for column, condition, n in zip(allowed, outside, unknown_counts, strict=True):
        if not n:
            continue
        values_query = sql.SQL(
            "SELECT {c}::text, count(*) FROM {table} WHERE {scope} AND {condition} "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 20"
        ).format(c=sql.Identifier(column), table=qualified_ident(table), scope=scope, condition=condition)
        unknown[column] = {value: int(k) for value, k in conn.execute(values_query, params).fetchall()}
    return (
        int(rows),
        AssetCheckResult(
            check_name="required_not_null",
            passed=not nulls,
            severity=AssetCheckSeverity.WARN,
            metadata={"null_counts": MetadataValue.json(nulls), "columns": ", ".join(not_null)},
        ),
        AssetCheckResult(
            check_name="known_enums",
            passed=not unknown,
            severity=AssetCheckSeverity.WARN,
            metadata={"unknown_values": MetadataValue.json(unknown), **_codes_from(allowed)},
        ),
    )
