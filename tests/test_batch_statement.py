"""The batch statement and what a refused batch tries next, as pure functions: the SQL built
for a small spec, and the fallback ladder, without a database."""

from __future__ import annotations

import re

import psycopg
import pytest

from pipelines.lib.loading.fallback import Attempt, next_attempt
from pipelines.lib.loading.json_safety import Refused
from pipelines.lib.loading.spec import CoreTarget, SourceSpec
from pipelines.lib.loading.statement import Shape, batch_params, batch_statement

FACT = CoreTarget(
    table="core.fact_example",
    key=("id",),
    columns=("id", "n"),
    select_sql="SELECT guarded FROM _stage_records",
    time_column="started_at",
    fast_select_sql="SELECT plain FROM _stage_records",
)
LISTED = CoreTarget(
    table="core.dim_example",
    key=("code",),
    columns=("code", "name"),
    select_sql="SELECT listed FROM _stage_records",
    on_missing="keep",
)
SPEC = SourceSpec(
    raw_table="raw.example", records_path=("data", "list"), key_sql="rec->>'id'", targets=(FACT,)
)
TWO = SourceSpec(
    raw_table="raw.example", records_path=("data", "list"), key_sql="rec->>'id'", targets=(FACT, LISTED)
)
LOAD_PARAMS = {
    "partition_key": "2026-11-20",
    "window_start": None,
    "window_end": None,
    "fetched_at": None,
    "records_path": ["data", "list"],
    "reject_tables": ["raw.example", "core.fact_example"],
}


def text(spec: SourceSpec, **shape: bool) -> str:
    return " ".join(batch_statement(spec, Shape(**shape)).as_string().split())


def test_an_upsert_lands_raw_and_the_target_on_conflict_and_clears_gone() -> None:
    sql = text(SPEC, upsert=True)
    assert sql.startswith("WITH _stage_records AS MATERIALIZED (SELECT DISTINCT ON (k, CASE WHEN k IS NULL")
    assert "SELECT (rec->>'id') AS k" in sql and "unnest(%(pages)b::bytea[])" in sql
    assert 'landed AS (INSERT INTO "raw"."example"' in sql
    assert "ON CONFLICT (record_key) DO UPDATE SET partition_key = EXCLUDED.partition_key" in sql
    assert (
        'up_0" AS (INSERT INTO "core"."fact_example" AS t ("id", "n", _loaded_at) SELECT DISTINCT ON ("id") '
        in sql
    )
    # An unchanged row is not written (issue 20); one that had gone and came back is.
    assert (
        'ON CONFLICT ("id") DO UPDATE SET "n" = EXCLUDED."n", "_loaded_at" = EXCLUDED."_loaded_at", '
        '_gone_at = NULL WHERE (t."n") IS DISTINCT FROM (EXCLUDED."n") OR t._gone_at IS NOT NULL RETURNING 1)'
    ) in sql
    assert "IS DISTINCT FROM (EXCLUDED.record, EXCLUDED.partition_key" in sql
    assert 'seen_raw AS (INSERT INTO "_pull_seen_records"' in sql
    assert sql.endswith('SELECT (SELECT count(*) FROM "up_0")')


def test_a_first_load_inserts_without_on_conflict_or_sort() -> None:
    sql = text(SPEC, upsert=False)
    assert "ON CONFLICT" not in sql
    assert 'DISTINCT ON ("id")' not in sql
    assert (
        'INSERT INTO "core"."fact_example" AS t ("id", "n", _loaded_at) SELECT "id", "n", %(fetched_at)s'
        in sql
    )
    assert 'INSERT INTO "raw"."example"' in sql


def test_a_rebuild_lands_nothing_in_raw_and_keeps_gone() -> None:
    sql = text(SPEC, upsert=True, rebuild=True)
    assert 'INSERT INTO "raw"."example"' not in sql and "landed AS" not in sql
    assert "_gone_at" not in sql
    assert 'ON CONFLICT ("id") DO UPDATE' in sql


def test_a_target_that_keeps_missing_rows_never_clears_gone() -> None:
    sql = text(TWO, upsert=True)
    dim = sql[sql.index('"up_1" AS') :]
    assert (
        'ON CONFLICT ("code") DO UPDATE SET "name" = EXCLUDED."name", "_loaded_at" = EXCLUDED."_loaded_at"'
        in dim
    )
    assert "_gone_at" not in dim
    assert sql.endswith('SELECT (SELECT count(*) FROM "up_0"), (SELECT count(*) FROM "up_1")')


def test_the_fast_select_is_used_only_where_a_target_has_one() -> None:
    fast = text(TWO, fast=True)
    assert '"n_0" AS MATERIALIZED (SELECT plain FROM _stage_records)' in fast
    assert '"n_1" AS MATERIALIZED (SELECT listed FROM _stage_records)' in fast
    assert '"n_0" AS MATERIALIZED (SELECT guarded FROM _stage_records)' in text(TWO, fast=False)


def test_refused_records_go_to_rejects_and_settle_their_earlier_rejections() -> None:
    plain = text(SPEC)
    assert "_refused" not in plain and "refused AS" not in plain
    sql = text(SPEC, refused=True)
    assert sql.index("_refused AS MATERIALIZED") < sql.index("settled AS")
    assert "unnest(%(refused_records)s::text[], %(refused_reasons)s::text[])" in sql
    assert "UNION ALL SELECT record_key FROM _refused" in sql
    assert "refused AS (INSERT INTO raw.rejects" in sql and "FROM _refused)" in sql


@pytest.mark.parametrize("refused", [(), (Refused('{"id": 3}', "why"),)])
@pytest.mark.parametrize("shape", [Shape(), Shape(upsert=False, fast=True), Shape(rebuild=True)])
def test_every_placeholder_has_its_parameter(shape: Shape, refused: tuple[Refused, ...]) -> None:
    shape = Shape(shape.upsert, shape.fast, bool(refused), shape.rebuild)
    sql = batch_statement(TWO, shape).as_string()
    params = batch_params(TWO, LOAD_PARAMS, [b"{}"], refused)
    assert set(re.findall(r"%\((\w+)\)[sb]", sql)) <= set(params)
    assert params["target_0"] == "core.fact_example" and params["target_1"] == "core.dim_example"
    assert params["raw_table"] == "raw.example" and params["pages"] == [b"{}"]
    assert ("refused_records" in params) == bool(refused)


def page(*records: str) -> bytes:
    return ('{"data": {"list": [' + ", ".join(records) + "]}}").encode()


def test_a_duplicate_key_turns_an_insert_to_an_upsert_and_fails_an_upsert() -> None:
    inserting = Attempt([page()], Shape(upsert=False, fast=True))
    after = next_attempt(inserting, psycopg.errors.UniqueViolation(), ("data", "list"))
    assert after == Attempt([page()], Shape(upsert=True, fast=True))
    assert next_attempt(after, psycopg.errors.UniqueViolation(), ("data", "list")) is None


def test_a_data_error_falls_back_to_guarded_casts_then_isolates_the_record() -> None:
    pages = [page('{"id": 1}', '{"id": 2, "name": "a\\u0000b"}')]
    fast = Attempt(pages, Shape(fast=True))
    guarded = next_attempt(fast, psycopg.errors.DataError(), ("data", "list"))
    assert guarded == Attempt(pages, Shape(fast=False))
    split = next_attempt(guarded, psycopg.errors.DataError(), ("data", "list"))
    assert split is not None and split.shape == Shape(refused=True)
    assert split.pages == [b'{"data":{"list":[{"id":1}]}}']
    assert [r.record for r in split.refused] == ['{"id":2,"name":"\\"a\\\\u0000b\\""}']
    # Isolated already: a refusal now is not about one record.
    assert next_attempt(split, psycopg.errors.DataError(), ("data", "list")) is None


def test_a_data_error_with_no_record_to_isolate_fails() -> None:
    guarded = Attempt([page('{"id": 1}')], Shape())
    assert next_attempt(guarded, psycopg.errors.DataError(), ("data", "list")) is None
    assert next_attempt(guarded, psycopg.errors.SyntaxError(), ("data", "list")) is None
