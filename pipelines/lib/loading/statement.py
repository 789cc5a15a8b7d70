"""The one statement that lands a batch of pages: pure functions from a source's spec (and
the load's parameters) to the SQL and its parameters; nothing here touches a connection.

One statement of data-modifying CTEs: the records are exploded once, held in memory
(MATERIALIZED) and read by every step, instead of written to a temp table and read back per
step. The CTE is named like the table the sources' SELECTs read. All steps see the same
snapshot: the DELETE of earlier rejections never sees the rejections this statement adds.

The page bodies travel as one binary ``bytea[]`` parameter: length-prefixed bytes, no
escaping, one message. (A COPY into a temp staging table did the same, but its per-batch
TRUNCATE re-created the table's files and its extra round trips left the backend idle: ~10 %
of a load's wall time, bench/README.md.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pipelines.lib.loading.json_safety import Refused
from pipelines.lib.loading.seen import SEEN_RECORDS, seen_table
from pipelines.lib.loading.spec import CoreTarget, SourceSpec, columns, qualified_ident

_INSERT_REJECT = (
    "INSERT INTO raw.rejects (source_table, partition_key, record_key, reason, record, fetched_at)"
)


@dataclass(frozen=True)
class Shape:
    """How a batch is written.

    ``upsert``: ON CONFLICT and one row per key (else plain INSERTs, which fail on a key
    already there); ``fast``: the targets' plain-cast SELECTs where they have one;
    ``refused``: the batch carries records PostgreSQL cannot take, as made-safe copies;
    ``rebuild``: the pages come from raw, so nothing lands there and ``_gone_at`` is kept;
    ``track``: the targets whose returned keys the pull keeps (``seen``) for gone-marking.
    """

    upsert: bool = True
    fast: bool = False
    refused: bool = False
    rebuild: bool = False
    track: tuple[str, ...] = ()


def batch_statement(spec: SourceSpec, shape: Shape) -> sql.Composed:
    """The statement landing one batch; it returns one row: the rows written per target."""
    steps = [_stage(spec)]
    if shape.refused:
        steps.append(_refused_copies(spec))
    steps += [_settle_rejections(shape.refused), _keyless()]
    if not shape.rebuild:  # a rebuild reads raw: it lands nothing there
        steps += [_land_raw(spec, shape.upsert), _seen_records()]
    if shape.refused:
        steps.append(_refused_rejects())
    counts: list[sql.Composable] = []
    for i, target in enumerate(spec.targets):
        select = target.fast_select_sql if shape.fast and target.fast_select_sql else target.select_sql
        steps += target_steps(i, target, select, shape.upsert, keep_gone=shape.rebuild)
        if target.table in shape.track:
            steps.append(_seen_rows(i, target))
        counts.append(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"up_{i}")))
    return sql.SQL("WITH {steps} SELECT {counts}").format(
        steps=sql.SQL(", ").join(steps), counts=sql.SQL(", ").join(counts)
    )


def batch_params(
    spec: SourceSpec, load_params: Mapping[str, Any], pages: Sequence[bytes], refused: Sequence[Refused]
) -> dict[str, Any]:
    """The parameters of ``batch_statement`` for these pages (and refused records)."""
    params = {
        **load_params,
        **{f"target_{i}": t.table for i, t in enumerate(spec.targets)},
        "raw_table": spec.raw_table,
        "pages": list(pages),
    }
    if refused:
        params["refused_records"] = [r.record for r in refused]
        params["refused_reasons"] = [r.reason for r in refused]
    return params


def _stage(spec: SourceSpec) -> sql.Composable:
    # DISTINCT ON keeps one record per key: offset paging can repeat a record across pages,
    # and ON CONFLICT cannot touch one row twice in a statement. Keyless records are told
    # apart by their content, so each distinct one reaches raw.rejects.
    return sql.SQL(
        "_stage_records AS MATERIALIZED ("
        "SELECT DISTINCT ON (k, CASE WHEN k IS NULL THEN rec END) k AS record_key, rec FROM ("
        " SELECT ({key}) AS k, e.rec FROM unnest(%(pages)b::bytea[]) AS p(body),"
        # convert_from checks that the body is valid UTF-8 before it is parsed.
        " jsonb_array_elements(COALESCE(convert_from(p.body, 'UTF8')::jsonb #> %(records_path)s::text[],"
        " '[]'::jsonb)) AS e(rec)"
        ") x)"
    ).format(key=sql.SQL(spec.key_sql))


def _refused_copies(spec: SourceSpec) -> sql.Composable:
    # Records PostgreSQL cannot take, as made-safe copies: keyed by the same SQL as the rest
    # (the key fields are intact in the copy).
    return sql.SQL(
        "_refused AS MATERIALIZED (SELECT ({key}) AS record_key, rec, reason FROM ("
        " SELECT t::jsonb AS rec, reason"
        " FROM unnest(%(refused_records)s::text[], %(refused_reasons)s::text[]) AS u(t, reason)) r)"
    ).format(key=sql.SQL(spec.key_sql))


def _settle_rejections(refused: bool) -> sql.Composable:
    # A record fetched again replaces its earlier rejection (it may type now); rejections of
    # records this pull did not reach stay, so an incremental pull loses none.
    return sql.SQL(
        "settled AS (DELETE FROM raw.rejects WHERE source_table = ANY(%(reject_tables)s) "
        "AND partition_key = %(partition_key)s "
        "AND record_key IN (SELECT record_key FROM _stage_records WHERE record_key IS NOT NULL"
        "{refused_keys}))"
    ).format(refused_keys=sql.SQL(" UNION ALL SELECT record_key FROM _refused" if refused else ""))


def _refused_rejects() -> sql.Composable:
    return sql.SQL(
        f"refused AS ({_INSERT_REJECT} "
        "SELECT %(raw_table)s, %(partition_key)s, record_key, reason, rec, %(fetched_at)s FROM _refused)"
    )


def _keyless() -> sql.Composable:
    return sql.SQL(
        f"keyless AS ({_INSERT_REJECT} "
        "SELECT %(raw_table)s, %(partition_key)s, NULL, 'the record has no natural key', rec, %(fetched_at)s "
        "FROM _stage_records WHERE record_key IS NULL)"
    )


def _land_raw(spec: SourceSpec, upsert: bool) -> sql.Composable:
    # A record returned unchanged writes nothing (no row version, no WAL): fetched_at is the
    # pull that last changed it; the pull's keys are kept apart (``seen``).
    on_conflict = (
        " ON CONFLICT (record_key) DO UPDATE SET partition_key = EXCLUDED.partition_key, "
        "window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, "
        "fetched_at = EXCLUDED.fetched_at, record = EXCLUDED.record "
        "WHERE (r.record, r.partition_key, r.window_start, r.window_end) IS DISTINCT FROM "
        "(EXCLUDED.record, EXCLUDED.partition_key, EXCLUDED.window_start, EXCLUDED.window_end)"
    )
    return sql.SQL(
        "landed AS (INSERT INTO {raw} AS r "
        "(record_key, partition_key, window_start, window_end, fetched_at, record) "
        "SELECT record_key, %(partition_key)s, %(window_start)s, %(window_end)s, %(fetched_at)s, rec "
        "FROM _stage_records WHERE record_key IS NOT NULL{on_conflict})"
    ).format(raw=qualified_ident(spec.raw_table), on_conflict=sql.SQL(on_conflict if upsert else ""))


def _seen_records() -> sql.Composable:
    return sql.SQL(
        "seen_raw AS (INSERT INTO {seen} SELECT record_key FROM _stage_records WHERE record_key IS NOT NULL)"
    ).format(seen=sql.Identifier(SEEN_RECORDS))


def _seen_rows(i: int, target: CoreTarget) -> sql.Composable:
    return sql.SQL("{step} AS (INSERT INTO {seen} SELECT {key} FROM {n} WHERE _reject IS NULL)").format(
        step=sql.Identifier(f"seen_{i}"),
        seen=sql.Identifier(seen_table(i)),
        key=columns(target.key),
        n=sql.Identifier(f"n_{i}"),
    )


def target_steps(
    i: int, target: CoreTarget, select_sql: str, upsert: bool, keep_gone: bool = False
) -> list[sql.Composable]:
    """The steps typing the batch into target ``i``: its typed rows (computed once,
    MATERIALIZED, feeding both the rejects and the write), their rejects, the write."""
    n, rejected, up = (sql.Identifier(f"{name}_{i}") for name in ("n", "rejected", "up"))
    return [
        sql.SQL("{n} AS MATERIALIZED ({select})").format(n=n, select=sql.SQL(select_sql)),
        sql.SQL(
            f"{{rejected}} AS ({_INSERT_REJECT}"
            " SELECT {name}, %(partition_key)s, s.record_key, r._reject, s.rec, %(fetched_at)s"
            " FROM (SELECT DISTINCT _record_key, _reject FROM {n} WHERE _reject IS NOT NULL) r"
            " JOIN _stage_records s ON s.record_key = r._record_key"
            # Evaluated once, before the join: a batch without rejects (the usual one) skips
            # hashing its records.
            " WHERE EXISTS (SELECT FROM {n} WHERE _reject IS NOT NULL))"
        ).format(rejected=rejected, n=n, name=sql.Placeholder(f"target_{i}")),
        sql.SQL(
            "{up} AS (INSERT INTO {table} AS t ({cols}, _loaded_at) "
            "SELECT {distinct}{cols}, %(fetched_at)s FROM {n} WHERE _reject IS NULL{on_conflict} RETURNING 1)"
        ).format(
            up=up,
            n=n,
            table=qualified_ident(target.table),
            cols=columns(target.columns),
            **_write_mode(target, upsert, keep_gone),
        ),
    ]


def _write_mode(target: CoreTarget, upsert: bool, keep_gone: bool) -> dict[str, sql.Composable]:
    """The parts of a target's INSERT that make it an upsert (empty for a plain INSERT)."""
    if not upsert:
        # Without ON CONFLICT a key twice in the batch fails the INSERT, which is then
        # upserted: no sort needed to keep one row per key.
        return {"distinct": sql.SQL(""), "on_conflict": sql.SQL("")}
    updates = [c for c in target.columns if c not in target.key]
    set_clause = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in (*updates, "_loaded_at")
    )
    # A row whose content did not change is not written (no row version): _loaded_at is
    # when it last changed. One that had gone and came back is, to clear its _gone_at.
    changed = sql.SQL("({mine}) IS DISTINCT FROM ({theirs})").format(
        mine=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in updates),
        theirs=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in updates),
    )
    if not updates:  # every column is the key: nothing can change
        changed = sql.SQL("FALSE")
    if target.on_missing == "mark_gone" and not keep_gone:  # the vendor returned it: not gone
        set_clause = sql.SQL("{}, _gone_at = NULL").format(set_clause)
        changed = sql.SQL("{} OR t._gone_at IS NOT NULL").format(changed)
    key = columns(target.key)
    return {
        "distinct": sql.SQL("DISTINCT ON ({key}) ").format(key=key),
        "on_conflict": sql.SQL(" ON CONFLICT ({key}) DO UPDATE SET {set_clause} WHERE {changed}").format(
            key=key, set_clause=set_clause, changed=changed
        ),
    }
