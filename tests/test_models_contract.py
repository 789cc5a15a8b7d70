"""What the loader takes for granted about each core table, checked against the migrated
warehouse rather than against the models it was built from: the table is keyed there exactly
as its upsert's ON CONFLICT names it, both normalizing SELECTs give every column of the table
in the table's own type (an INSERT's assignment cast would otherwise convert silently, or fail
only on the first value it cannot take), and every core table is some normalizer's target or
known to be loaded otherwise. The models' own guard, and the Dagster metadata built from them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from dagster import TableSchema
from sqlalchemy import BigInteger, Column, MetaData, Table, Text

import models
from pipelines.defs.sources.crm import normalize as crm
from pipelines.defs.sources.isales import normalize as isales
from pipelines.defs.sources.pushlog import normalize as pushlog
from pipelines.defs.sources.trtc import normalize as trtc
from pipelines.lib.loading import CoreTarget, SourceSpec
from pipelines.lib.schema import (
    BOOKKEEPING,
    ModelMismatch,
    check_columns,
    core_target,
    load_columns,
    qualified_name,
    table_metadata,
)
from pipelines.lib.typed_select import Field, Param
from tests.conftest import _with_db

SPECS: list[SourceSpec] = [
    crm.CALL_LOGS,
    crm.RECORDINGS,
    crm.HANGUP_REASONS,
    crm.AGENT_CALLS,
    isales.API_CALLS,
    isales.FILE_SERVERS,
    pushlog.PUSH_LOGS,
    trtc.CALLS,
]
# Core tables no normalizer loads: the push types come from seed 001 (migration 0004); the
# customer tables behind mart pseudonyms and the mart's state are written by their own assets
# (pipelines/defs/mart).
NOT_NORMALIZED = {
    "core.dim_push_type",
    "core.customer_identity",
    "core.customer_key",
    "core.customer_day",
    "core.mart_state",
}
TABLES = {qualified_name(t): t for t in models.metadata.sorted_tables}
TARGETS = [t for spec in SPECS for t in spec.targets]


@pytest.fixture(scope="module")
def warehouse(pg_admin_url: str, template_db: str) -> Iterator[psycopg.Connection]:
    """One migrated database for the module (nothing here writes to it), with the loader's
    staging table, empty: the SELECTs are only described, never run over records."""
    name = f"ccw_contract_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        with psycopg.connect(_with_db(pg_admin_url, name), autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE _stage_records (record_key text, rec jsonb)")
            yield conn
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, bool]]:
    """The warehouse's columns of ``table``: name -> (type, NOT NULL)."""
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()
    return {name: (type_, notnull) for name, type_, notnull in rows}


def _select_types(conn: psycopg.Connection, select_sql: str) -> dict[str, str]:
    """Each output column of ``select_sql`` and its type, as PostgreSQL plans it (no row read)."""
    # Every load parameter NULL: only the statement's shape matters here.
    params = dict.fromkeys(re.findall(r"%\((\w+)\)s", select_sql))
    cur = conn.execute(f"SELECT * FROM ({select_sql}) n LIMIT 0", params)
    assert cur.description is not None
    oids = [c.type_code for c in cur.description]
    names = conn.execute(
        "SELECT format_type(t, NULL) FROM unnest(%s::oid[]) WITH ORDINALITY u(t, i) ORDER BY i", (oids,)
    )
    return dict(zip((c.name for c in cur.description), (n for (n,) in names.fetchall()), strict=True))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.table)
def test_each_target_is_keyed_in_the_warehouse_as_its_upsert_names_it(
    warehouse: psycopg.Connection, target: CoreTarget
) -> None:
    # ON CONFLICT (key) needs this very unique index, and DISTINCT ON (key) keeps one row per
    # key. Alembic's model comparison does not look at primary keys, so only this catches a
    # migration keying a table otherwise.
    (key,) = warehouse.execute(
        "SELECT array_agg(a.attname ORDER BY k.i) FROM pg_index x "
        "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, i) "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
        "WHERE x.indrelid = %s::regclass AND x.indisprimary",
        (target.table,),
    ).fetchone()
    assert key == list(target.key)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "guarded"])
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.table)
def test_each_select_gives_every_warehouse_column_in_its_own_type(
    warehouse: psycopg.Connection, target: CoreTarget, fast: bool
) -> None:
    select_sql = target.fast_select_sql if fast else target.select_sql
    assert select_sql is not None, target.table
    table = _columns(warehouse, target.table)
    written = {name: type_ for name, (type_, _) in table.items() if name not in BOOKKEEPING}
    typed = _select_types(warehouse, select_sql)
    assert typed.pop("_record_key") == "text" and typed.pop("_reject") == "text"
    assert typed == written
    # What the loader writes itself: when it loaded a row, and when the vendor stopped listing it.
    assert table["_loaded_at"] == ("timestamp with time zone", True)
    assert table["_gone_at"] == ("timestamp with time zone", False)


def test_every_core_table_of_the_warehouse_is_loaded_by_a_normalizer_or_otherwise(
    warehouse: psycopg.Connection,
) -> None:
    core = {
        f"core.{name}"
        for (name,) in warehouse.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'core'")
    }
    targeted = {t.table for t in TARGETS}
    assert targeted <= core
    assert core - targeted == NOT_NORMALIZED


def test_a_normalizer_disagreeing_with_its_model_fails() -> None:
    table = Table(
        "t",
        MetaData(),
        Column("id", BigInteger, primary_key=True),
        Column("name", Text),
        Column("_loaded_at", Text),
        schema="core",
    )
    fields = (Field("id", "id", "bigint", required=True), Field("name", "name"))
    assert core_target(table, fields).columns == ("id", "name")
    with pytest.raises(ModelMismatch, match="written but not in the model: extra"):
        core_target(table, (*fields, Field("extra", "extra")))
    with pytest.raises(ModelMismatch, match="in the model but not written: name"):
        core_target(table, fields[:1])
    with pytest.raises(ModelMismatch, match="written twice: id"):
        check_columns(table, ["id", "name", "id"])
    with pytest.raises(ModelMismatch, match="written but not in the model: _loaded_at"):
        core_target(table, (*fields, Param("_loaded_at", "now", "text")))
    assert load_columns(table) == ("id", "name")


def test_table_metadata_names_the_table_and_describes_every_column() -> None:
    table = models.trtc.fact_trtc_call
    meta = table_metadata(table)
    assert meta["dagster/table_name"] == "core.fact_trtc_call"
    schema = meta["dagster/column_schema"]
    assert isinstance(schema, TableSchema)
    columns = {c.name: c for c in schema.columns}
    assert list(columns) == [c.name for c in table.columns]
    assert columns["callees"].type == "text[]"
    assert columns["started_at"].type == "timestamp with time zone"
    assert columns["started_at"].description == table.c.started_at.comment
    assert columns["started_at"].constraints.nullable is False
    assert columns["accepted_at"].constraints.nullable is True
    # Part of a two-column key: not unique alone, the key itself a table constraint.
    assert columns["call_id"].constraints.unique is False
    assert columns["call_id"].constraints.other == ["primary key"]
    assert schema.constraints.other == ["primary key (sdk_app_id, call_id)"]


def test_a_single_column_key_is_unique_and_every_core_column_has_a_comment() -> None:
    meta = table_metadata(models.crm.fact_crm_call)
    columns = {c.name: c for c in meta["dagster/column_schema"].columns}
    assert columns["id"].constraints.unique is True and columns["id"].type == "bigint"
    assert meta["dagster/column_schema"].constraints.other == []
    for name, table in TABLES.items():
        if table.schema == "core":
            described = table_metadata(table)["dagster/column_schema"].columns
            assert all(c.description for c in described), name
