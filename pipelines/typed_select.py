"""Normalizing SELECTs generated from a declarative list of fields.

Each source describes its record as ``Field``s (column, JSON name, kind). From that list
come two SELECTs over ``_stage_records (record_key, rec)`` returning the same rows:

- ``fast``: ``jsonb_to_record`` types every field in one C call per record. A value that
  does not fit its type raises, so the loader runs it inside a savepoint;
- ``guarded``: every cast is guarded (``core.try_*``); a present but untypable field rejects
  its record, naming the field. The loader falls back to it for a batch the fast one refused.

Clean batches, the usual case, cost the fast path only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "int", "smallint", "bigint", "local_ts"]

_GUARDED = {
    "int": "core.try_int({v})",
    "smallint": "core.try_smallint({v})",
    "bigint": "core.try_bigint({v})",
    "local_ts": "core.try_local_timestamp({v}, %(tz)s)",
}
_SQL_TYPE = {"text": "text", "int": "integer", "smallint": "smallint", "bigint": "bigint"}
_WHAT = {
    "int": "an integer",
    "smallint": "a small integer",
    "bigint": "an integer",
    "local_ts": "a yyyy-MM-dd HH:mm:ss time",
}


@dataclass(frozen=True)
class Field:
    column: str
    json: str
    kind: Kind = "text"
    required: bool = False  # missing, empty or untypable: the record is rejected


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reasons(fields: Sequence[Field], fast: bool) -> str:
    parts = []
    for f in fields:
        if f.required:
            parts.append(f"CASE WHEN t.{f.column} IS NULL THEN '{f.json} missing or malformed' END")
        elif f.kind != "text" and (not fast or f.kind == "local_ts"):
            # Present but untypable; NULL and absent are simply NULL. (The fast path raises
            # on an untypable number, so it only checks times, which it reads as text.)
            parts.append(
                f"CASE WHEN t.{f.column} IS NULL AND jsonb_typeof(t._rec->{_literal(f.json)}) <> 'null' "
                f"THEN '{f.json} is not {_WHAT[f.kind]}' END"
            )
    return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')" if parts else "NULL::text"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def typed_select(fields: Sequence[Field], *, fast: bool) -> str:
    """The SELECT returning each field's column, ``_record_key`` and ``_reject``."""
    exprs = []
    for f in fields:
        v = f"s.rec->{_literal(f.json)}"
        if f.kind == "local_ts" and fast:
            # A cheap shape test instead of the guarded regex: what passes it and still is no
            # time (month 13) makes the cast raise, and the batch falls back to the guarded path.
            # The text comes from jsonb_to_record, read once rather than once per test.
            x = f"r.{_quote(f.json)}"
            expr = (
                f"CASE WHEN length({x}) BETWEEN 19 AND 26 AND substr({x}, 5, 1) = '-' "
                f"AND substr({x}, 8, 1) = '-' AND substr({x}, 11, 1) IN (' ', 'T') "
                f"AND substr({x}, 14, 1) = ':' AND substr({x}, 17, 1) = ':' "
                f"THEN {x}::timestamp AT TIME ZONE %(tz)s END"
            )
        elif f.kind == "local_ts":
            expr = _GUARDED["local_ts"].format(v=v)
        elif fast:
            expr = f"r.{_quote(f.json)}"
        elif f.kind == "text":
            expr = f"s.rec->>{_literal(f.json)}"
        else:
            expr = _GUARDED[f.kind].format(v=v)
        if f.kind == "text" and f.required:
            expr = f"NULLIF({expr}, '')"
        exprs.append(f"{expr} AS {f.column}")
    source = "_stage_records s"
    if fast:
        record = ", ".join(f"{_quote(f.json)} {_SQL_TYPE.get(f.kind, 'text')}" for f in fields)
        source += f" CROSS JOIN LATERAL jsonb_to_record(s.rec) AS r({record})"
    columns = ",\n    ".join(exprs)
    # OFFSET 0 keeps the planner from inlining the inner query into the outer one, which
    # would evaluate every cast again for the reasons.
    # The outer query leaves the record itself behind: the statement materializes its rows.
    outer = ", ".join(f"t.{f.column}" for f in fields)
    return (
        f"SELECT t._record_key, {outer}, {_reasons(fields, fast)} AS _reject\n"
        f"FROM (\n  SELECT s.record_key AS _record_key, s.rec AS _rec,\n    {columns}\n"
        f"  FROM {source} OFFSET 0\n) t"
    )
