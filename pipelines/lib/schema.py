"""What the pipeline derives from the SQLAlchemy tables in ``models/``, the one source of
truth for columns: a load target's columns and key, and an asset's Dagster table metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from dagster import TableColumn, TableColumnConstraints, TableConstraints, TableSchema
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from pipelines.lib.loading import CoreTarget
from pipelines.lib.typed_select import Field, Spec, columns_of, typed_select

# Written by the loader itself, never by a normalizer.
BOOKKEEPING = ("_loaded_at", "_gone_at")


class ModelMismatch(ValueError):
    """A normalizer and its model table disagree about the table's columns."""


def qualified_name(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def load_columns(table: Table) -> tuple[str, ...]:
    """The columns a normalizer fills: all but the loader's bookkeeping ones."""
    return tuple(c.name for c in table.columns if c.name not in BOOKKEEPING)


def check_columns(table: Table, written: Sequence[str]) -> None:
    """Raise ``ModelMismatch`` unless ``written`` are exactly the table's load columns."""
    expected, got = set(load_columns(table)), list(written)
    extra = [c for c in got if c not in expected]
    lacking = sorted(expected - set(got))
    twice = sorted({c for c in got if got.count(c) > 1})
    if extra or lacking or twice:
        problems = [
            f"{what}: {', '.join(cols)}"
            for what, cols in (
                ("written but not in the model", extra),
                ("in the model but not written", lacking),
                ("written twice", twice),
            )
            if cols
        ]
        raise ModelMismatch(f"{qualified_name(table)}: " + "; ".join(problems))


def core_target(
    table: Table,
    specs: Sequence[Spec] | None = None,
    *,
    rows_from: str | None = None,
    select_sql: str | None = None,
    fast_select_sql: str | None = None,
    written: Sequence[str] | None = None,
    time_column: str | None = None,
    on_missing: Literal["mark_gone", "keep"] = "mark_gone",
    scope_sql: str | None = None,
    reads: Sequence[Spec] | None = None,
) -> CoreTarget:
    """The load target of ``table``: columns and key from the model, the SELECTs generated
    from ``specs`` (or, for a SELECT built over another one, given with the ``written``
    columns, and ``reads``: the fields it reads). Raises ``ModelMismatch`` when the two disagree."""
    read = specs if specs is not None else reads
    if specs is not None:
        written = columns_of(specs)
        select_sql = typed_select(specs, fast=False, rows_from=rows_from)
        fast_select_sql = typed_select(specs, fast=True, rows_from=rows_from)
    if select_sql is None or written is None:
        raise ValueError("core_target needs specs, or select_sql with the columns it writes")
    check_columns(table, written)
    return CoreTarget(
        table=qualified_name(table),
        key=tuple(c.name for c in table.primary_key.columns),
        columns=load_columns(table),
        select_sql=select_sql,
        fast_select_sql=fast_select_sql,
        time_column=time_column,
        on_missing=on_missing,
        scope_sql=scope_sql,
        fields=None if read is None else _top_level_keys(read, rows_from),
    )


def _top_level_keys(specs: Sequence[Spec], rows_from: str | None) -> tuple[str, ...]:
    """The record's keys a SELECT over ``specs`` reads (an element's fields live inside
    ``rows_from``)."""
    keys = {s.json for s in specs if isinstance(s, Field) and not s.element}
    return tuple(sorted(keys | ({rows_from} if rows_from else set())))


def _type_name(column: Any) -> str:
    return column.type.compile(dialect=postgresql.dialect()).lower()


def table_metadata(table: Table) -> dict[str, Any]:
    """Dagster definition metadata of an asset materialized into ``table``: its name and
    column schema (type, comment, nullability, key)."""
    key = [c.name for c in table.primary_key.columns]
    columns = [
        TableColumn(
            name=c.name,
            type=_type_name(c),
            description=c.comment,
            constraints=TableColumnConstraints(
                nullable=bool(c.nullable),
                unique=key == [c.name] or bool(c.unique),
                other=["primary key"] if c.name in key else [],
            ),
        )
        for c in table.columns
    ]
    constraints = TableConstraints(other=[f"primary key ({', '.join(key)})"] if len(key) > 1 else [])
    return {
        "dagster/table_name": qualified_name(table),
        "dagster/column_schema": TableSchema(columns=columns, constraints=constraints),
    }


_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum), NOT a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def schema_from_comments(conn: psycopg.Connection, relation: str) -> TableSchema:
    """The column schema of ``relation`` (a table or view, ``schema.name``) as the database
    holds it: names, types and ``COMMENT ON COLUMN`` texts, so the UI shows what analysts read."""
    return TableSchema(
        columns=[
            TableColumn(
                name=name,
                type=kind,
                description=comment,
                constraints=TableColumnConstraints(nullable=nullable),
            )
            for name, kind, comment, nullable in conn.execute(_COLUMNS_SQL, (relation,)).fetchall()
        ]
    )
