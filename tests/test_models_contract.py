"""models/ is the one source of truth for columns: every normalizer writes exactly its model
table's columns (the loader's bookkeeping aside), every core table but the static ones is
some normalizer's target, and the Dagster table metadata comes from the same tables."""

from __future__ import annotations

import pytest
from dagster import TableSchema
from sqlalchemy import BigInteger, Column, MetaData, Table, Text

import models
from pipelines.defs.sources.crm import normalize as crm
from pipelines.defs.sources.isales import normalize as isales
from pipelines.defs.sources.pushlog import normalize as pushlog
from pipelines.defs.sources.trtc import normalize as trtc
from pipelines.lib.loading import SourceSpec
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
# customer tables behind mart pseudonyms are written by their own assets (models/mart.py, on main).
NOT_NORMALIZED = {"core.dim_push_type", "core.customer_identity", "core.customer_key"}
TABLES = {qualified_name(t): t for t in models.metadata.sorted_tables}
TARGETS = [t for spec in SPECS for t in spec.targets]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.table)
def test_each_target_writes_exactly_its_model_columns_by_its_model_key(target) -> None:
    table = TABLES[target.table]
    model = [c.name for c in table.columns if c.name not in BOOKKEEPING]
    assert list(target.columns) == model
    assert list(target.key) == [c.name for c in table.primary_key.columns]
    assert {"_loaded_at", "_gone_at"} <= {c.name for c in table.columns}


def test_every_core_table_is_loaded_by_a_normalizer_or_static() -> None:
    core = {name for name, t in TABLES.items() if t.schema == "core"}
    targeted = {t.table for t in TARGETS}
    assert targeted <= core
    assert core - targeted <= NOT_NORMALIZED
    assert "core.dim_push_type" in core - targeted


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
