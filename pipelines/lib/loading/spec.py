"""What a source declares about one endpoint's landing: where its records sit in a page,
what keys them, and how they become rows of each ``core`` table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from psycopg import sql


@dataclass(frozen=True)
class CoreTarget:
    """How raw records become rows of one core table.

    ``select_sql`` reads the batch's records from ``_stage_records (record_key text, rec
    jsonb)`` and returns the table's ``columns``, ``_record_key`` (the record it came from)
    and ``_reject`` (text: why the row cannot be typed, NULL when it can). It must not raise
    on bad input: every cast is guarded.
    """

    table: str  # "core.fact_<source>_call"
    key: tuple[str, ...]
    columns: tuple[str, ...]
    select_sql: str
    time_column: str | None = None  # the column the window filters on (facts)
    # The same rows by plain casts that raise on bad input (see pipelines/lib/typed_select.py):
    # tried first, in a savepoint; select_sql types what it can of a batch it refused.
    fast_select_sql: str | None = None
    # "mark_gone": rows a complete pull no longer returned get ``_gone_at`` (every fact and
    # snapshot dimension); "keep": the endpoint lists only some rows (recent ones), so a
    # row's absence means nothing.
    on_missing: Literal["mark_gone", "keep"] = "mark_gone"
    # An extra SQL condition (over the table's columns, with the load's named parameters)
    # limiting what ``finish`` may remove or mark gone, when one table is loaded in several
    # scopes: e.g. ``vdn_id = %(vdn_id)s`` so one VDN's pull never prunes another's rows.
    scope_sql: str | None = None
    # The record's top-level JSON keys the SELECTs read (None: not declared). A key outside
    # every target's list is one no document names: kept in raw, reported by a check.
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One endpoint's landing: where records sit in a page body and what keys them."""

    raw_table: str  # "raw.<source>_call"
    records_path: tuple[str, ...]  # path of the record array inside a page body
    key_sql: str  # SQL over ``rec`` giving the natural key as text
    targets: tuple[CoreTarget, ...]
    # Keys the vendor documents but no target types (kept in raw only): not drift.
    untyped_fields: tuple[str, ...] = ()

    @property
    def known_fields(self) -> tuple[str, ...] | None:
        """The record's top-level keys the vendor documents (None: a target did not say)."""
        if any(t.fields is None for t in self.targets):
            return None
        return tuple(sorted({*self.untyped_fields, *(f for t in self.targets for f in t.fields or ())}))


def qualified_ident(qualified: str) -> sql.Composable:
    """``"core.fact"`` as the quoted identifier ``"core"."fact"``."""
    return sql.Identifier(*qualified.split("."))


def columns(names: Sequence[str]) -> sql.Composable:
    """A comma-separated list of quoted column names."""
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def target_scope(target: CoreTarget) -> sql.Composable:
    """The rows of ``target`` a load over [%(lo)s, %(hi)s) answers for."""
    scope: sql.Composable = sql.SQL("TRUE")
    if target.time_column is not None:
        scope = sql.SQL("{c} >= %(lo)s AND {c} < %(hi)s").format(c=sql.Identifier(target.time_column))
    if target.scope_sql is not None:
        scope = sql.SQL("{} AND ({})").format(scope, sql.SQL(target.scope_sql))
    return scope
