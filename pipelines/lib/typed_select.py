"""Normalizing SELECTs generated from a declarative list of fields.

Each source describes its record as ``Field``s (column, JSON name, kind), plus ``Param``
columns (a load parameter, e.g. the VDN) and ``Derived`` ones (computed from typed
columns). From that list come two SELECTs over ``_stage_records (record_key, rec)``
returning the same rows:

- ``fast``: ``jsonb_to_record`` reads every field in one C call per record and types it by
  plain casts. A value that does not fit raises, so the loader runs it inside a savepoint;
- ``guarded``: every cast is guarded (``core.try_*``); a present but untypable field rejects
  its record, naming the field. The loader falls back to it for a batch the fast one refused.

Clean batches, the usual case, cost the fast path only.

The guarded SELECT has three levels, each fenced by ``OFFSET 0`` so the planner cannot fold
them together (the ``core.try_*`` functions are inlined SQL: folded, each JSON value would
be extracted and cast again for every use): extract each JSON value once, cast once, then
give the outputs and the reasons.

Rejection rules, the same for every source: a ``required`` field that is missing, null,
empty or untypable rejects its record ("<field> missing ..."); any other field that is
present but untypable rejects it too ("<field> is not ..."); absent, null and the field's
``empty`` values are just NULL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "text",  # as sent (a number or an object: its JSON text)
    "int",
    "smallint",  # coded values: out of smallint's range rejects
    "bigint",
    "local_ts",  # naive yyyy-MM-dd HH:mm:ss[.ffffff], read in %(tz)s
    "iso_ts",  # ISO 8601 with its offset (a naive one read in %(tz)s; 13 digits: epoch ms)
    "epoch_s",  # epoch seconds, number or numeric string; 0 means "did not happen" (NULL)
    "epoch_ms",  # epoch milliseconds, number or numeric string
    "json_text",  # JSON escaped inside a string, decoded; the text kept when it never decodes
    "text_array",  # an array of strings or numbers; one comma-joined string read too
]

# The ranges of the epoch kinds, here only: both SELECTs read the integer (a plain cast, or
# core.try_bigint) and make it a time with these bounds, so they agree by construction.
# Epoch seconds: beyond 9999-12-31 to_timestamp() fails; a millisecond value would land in
# year ~55000. Either is a malformed time, so anything outside [1, this] is not epoch seconds.
MAX_EPOCH_S = 253_402_300_799
# Epoch milliseconds: 0 to 15 digits (up to year 33658), the digits migration 0004's
# core.try_epoch_ms takes; the SELECTs no longer call it (it stays for migration 0008's index).
MAX_EPOCH_MS = 999_999_999_999_999

_INTS = {"int": "integer", "smallint": "smallint", "bigint": "bigint"}
# Why a required field rejects its record, and why a present but untypable optional one does.
_MISSING = {
    "text": "missing",
    "int": "missing or not an integer",
    "smallint": "missing or not an integer",
    "bigint": "missing or not an integer",
    "epoch_s": "missing or not epoch seconds",
}
_BAD = {
    "int": "is not an integer",
    "smallint": "is not a small integer",
    "bigint": "is not an integer",
    "local_ts": "is not a yyyy-MM-dd HH:mm:ss time",
    "iso_ts": "is not an ISO 8601 time",
    "epoch_s": "is not epoch seconds",
    "epoch_ms": "is not epoch milliseconds",
    "text_array": "is neither an array nor a string",
}
# Guarded casts of the extracted JSON value ``{v}``.
_GUARDED = {
    "int": "core.try_int({v})",
    "smallint": "core.try_smallint({v})",
    "bigint": "core.try_bigint({v})",
    "epoch_s": "core.try_bigint({v})",  # the integer; the outer level makes it a time
    "epoch_ms": "core.try_bigint({v})",  # the same: the outer level makes it a time
    "local_ts": "core.try_local_timestamp({v}, %(tz)s)",
    "iso_ts": "core.try_iso_timestamp({v}, %(tz)s)",
}


@dataclass(frozen=True)
class Field:
    column: str
    json: str
    kind: Kind = "text"
    required: bool = False  # missing, null, empty or untypable: the record is rejected
    # Values the vendor sends meaning "nothing" (e.g. "", or the two characters ""): NULL,
    # not a reject. A required text field treats "" so anyway.
    empty: tuple[str, ...] = ()
    trim: str | None = None  # text: characters stripped from both ends
    default: str | None = None  # a load parameter standing in when the field is absent
    raw_column: str | None = None  # json_text: the column keeping the text that never decodes
    element: bool = False  # read from each element of ``rows_from``, not from the record

    def __post_init__(self) -> None:
        # What the SQL generation supports; anything else is a mistake in a field list.
        if self.default is not None and self.kind not in _INTS:
            raise ValueError(f"{self.column}: a default stands in for integer fields only")
        if self.raw_column is not None and self.kind != "json_text":
            raise ValueError(f"{self.column}: raw_column is for json_text fields")
        if self.trim is not None and self.kind != "text":
            raise ValueError(f"{self.column}: trim is for text fields")
        if self.element and self.kind not in ("text", *_INTS, "local_ts", "iso_ts", "epoch_ms"):
            raise ValueError(f"{self.column}: a {self.kind} field cannot be read from an element")

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, self.raw_column) if self.raw_column else (self.column,)


@dataclass(frozen=True)
class Param:
    """A column every row of a load gets from a load parameter (``%(param)s``)."""

    column: str
    param: str
    sql_type: str  # "integer", "bigint"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class Derived:
    """A column computed from typed ones: ``sql`` names them as ``{column}``."""

    column: str
    sql: str

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)


Spec = Field | Param | Derived


def columns_of(specs: Sequence[Spec]) -> tuple[str, ...]:
    """Every column the SELECT of ``specs`` writes, in order."""
    return tuple(c for s in specs for c in s.columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    quoted = text.replace("'", "''")
    if not any(c in text for c in "\t\r\n\\"):
        return f"'{quoted}'"
    # Control characters spelled as escapes, so the SQL stays one readable line.
    for char, escape in (("\\", "\\\\"), ("\t", "\\t"), ("\r", "\\r"), ("\n", "\\n")):
        quoted = quoted.replace(char, escape)
    return f"E'{quoted}'"


def _j(f: Field) -> str:
    return f"j_{f.column}"


def _source(f: Field, fast_record: str = "s.rec") -> str:
    return "e.el" if f.element else fast_record


def _json_value(f: Field, doc: str) -> str:
    """The field's JSON value, its ``empty`` values made SQL NULL."""
    v = f"{doc}->{_literal(f.json)}"
    for e in f.empty:
        v = f"NULLIF({v}, {_literal(json.dumps(e))}::jsonb)"
    return v


def _text(f: Field, x: str) -> str:
    """A text field's value from its text ``x``."""
    if f.trim is not None:
        x = f"btrim({x}, {_literal(f.trim)})"
    empty = set(f.empty) | ({""} if f.required else set())
    if len(empty) == 1:
        return f"NULLIF({x}, {_literal(empty.pop())})"
    if empty:
        return f"CASE WHEN {x} NOT IN ({', '.join(_literal(e) for e in sorted(empty))}) THEN {x} END"
    return x


def _array(j: str) -> str:
    """text[] from the JSON value ``j``: an array's string and number elements in order, or
    the schema-drift form seen from the same API family, one comma-joined string."""
    return (
        f"CASE jsonb_typeof({j}) "
        f"WHEN 'array' THEN ARRAY(SELECT e #>> '{{}}' FROM jsonb_array_elements({j}) WITH ORDINALITY AS x(e, i) "
        "WHERE jsonb_typeof(e) IN ('string', 'number') ORDER BY i) "
        f"WHEN 'string' THEN ARRAY(SELECT btrim(u) FROM unnest(string_to_array({j} #>> '{{}}', ',')) "
        "WITH ORDINALITY AS x(u, i) WHERE btrim(u) <> '' ORDER BY i) END"
    )


# Per epoch kind: the integers that are a time, and the time of ``{n}``. Epoch seconds take
# 0 to mean "did not happen" (NULL); an epoch millisecond of 0 is 1970-01-01.
_EPOCHS = {
    "epoch_s": (1, MAX_EPOCH_S, "to_timestamp({n})"),
    "epoch_ms": (0, MAX_EPOCH_MS, "to_timestamp({n} / 1000.0::double precision)"),
}


def _epoch(kind: str, n: str) -> str:
    """The time of the integer ``n`` of an epoch kind; NULL outside its range."""
    lo, hi, as_time = _EPOCHS[kind]
    return f"CASE WHEN {n} BETWEEN {lo} AND {hi} THEN {as_time.format(n=n)} END"


def _fast_record_type(f: Field) -> str | None:
    """The type ``jsonb_to_record`` reads the field as in the fast SELECT, None when the
    fast SELECT reads it like the guarded one does."""
    if f.element or f.kind == "iso_ts":
        return None
    if f.kind in _INTS or f.kind in _EPOCHS:
        return "text" if f.empty else _INTS.get(f.kind, "bigint")
    return "jsonb" if f.kind == "text_array" else "text"


def _fast_value(f: Field) -> str:
    """The fast SELECT's inner expression for ``f``: raises where the guarded one rejects,
    or gives NULL for the outer level to reject (times, read by a cheap shape test)."""
    x = f"r.{_quote(f.json)}"
    if _fast_record_type(f) is None:
        if f.kind == "text":
            return _text(f, f"e.el->>{_literal(f.json)}")
        if f.kind == "text_array":
            return _json_value(f, _source(f))
        return _GUARDED[f.kind].format(v=_json_value(f, _source(f)))
    if f.kind == "text":
        return _text(f, x)
    if f.kind == "json_text":
        return f"core.decode_json_text({x})"
    if f.kind in _INTS or f.kind in _EPOCHS:
        return f"NULLIF({x}, '')::{_INTS.get(f.kind, 'bigint')}" if f.empty else x
    if f.kind == "text_array":
        return x
    # local_ts: a cheap shape test instead of the guarded regex: what passes it and still is
    # no time (month 13) makes the cast raise, and the batch falls back to the guarded path.
    return (
        f"CASE WHEN length({x}) BETWEEN 19 AND 26 AND substr({x}, 5, 1) = '-' "
        f"AND substr({x}, 8, 1) = '-' AND substr({x}, 11, 1) IN (' ', 'T') "
        f"AND substr({x}, 14, 1) = ':' AND substr({x}, 17, 1) = ':' "
        f"THEN {x}::timestamp AT TIME ZONE %(tz)s END"
    )


def _outputs(specs: Sequence[Spec], t: str) -> list[str]:
    """The outer level's columns, over the typed level ``t``."""
    # A derived column sees a field as it is written (an epoch kind: its time).
    typed = {
        s.column: _epoch(s.kind, f"{t}.{s.column}") if s.kind in _EPOCHS else f"{t}.{s.column}"
        for s in specs
        if isinstance(s, Field)
    }
    out = []
    for s in specs:
        if isinstance(s, Param):
            out.append(f"%({s.param})s::{s.sql_type} AS {s.column}")
        elif isinstance(s, Derived):
            out.append(f"{s.sql.format(**typed)} AS {s.column}")
        elif s.kind in _EPOCHS:
            out.append(f"{typed[s.column]} AS {s.column}")
        elif s.kind == "json_text":
            out.append(f"{t}.{s.column}")
            if s.raw_column:
                out.append(f"CASE WHEN {t}.{s.column} IS NULL THEN {t}._s_{s.column} END AS {s.raw_column}")
        elif s.default is not None:
            out.append(f"COALESCE({t}.{s.column}, %({s.default})s::{_INTS[s.kind]}) AS {s.column}")
        else:
            out.append(f"{t}.{s.column}")
    return out


def _reasons(specs: Sequence[Spec], t: str, fast: bool) -> str:
    parts = []
    for f in specs:
        if not isinstance(f, Field) or f.kind in ("text", "json_text") and not f.required:
            continue
        c = f"{t}.{f.column}"
        name = f.json.replace("'", "''")
        if f.required:
            if f.kind in _EPOCHS:
                lo, hi, _ = _EPOCHS[f.kind]
                missing = f"({c} BETWEEN {lo} AND {hi}) IS NOT TRUE"
            else:
                missing = f"{c} IS NULL"
            reason = _MISSING.get(f.kind, "missing or malformed")
            parts.append(f"CASE WHEN {missing} THEN '{name} {reason}' END")
            continue
        # The fast SELECT reads a record's field through jsonb_to_record, which raised
        # already on an untypable integer; the guarded one kept the JSON value as j_<column>.
        if not fast:
            j = f"{t}.{_j(f)}"
        elif f.kind == "text_array":
            j = f"{t}.{f.column}_j"
        else:
            j = _json_value(f, f"{t}._el" if f.element else f"{t}._rec")
        if f.kind == "text_array":
            bad = f"jsonb_typeof({j}) NOT IN ('array', 'string', 'null')"
        elif f.kind in _EPOCHS:
            range_bad = f"{c} NOT BETWEEN 0 AND {_EPOCHS[f.kind][1]}"
            bad = range_bad if fast and _fast_record_type(f) else f"core.is_bad({j}, {c}) OR {range_bad}"
        elif fast and f.kind in _INTS and _fast_record_type(f):
            continue
        else:
            bad = f"{c} IS NULL AND core.is_bad({j}, {c})" if fast else f"core.is_bad({j}, {c})"
        parts.append(f"CASE WHEN {bad} THEN '{name} {_BAD[f.kind]}' END")
    return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')" if parts else "NULL::text"


def _elements(rows_from: str | None) -> str:
    if rows_from is None:
        return ""
    j = f"s.rec->{_literal(rows_from)}"
    return (
        f"\n  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof({j}) = 'array' "
        f"THEN {j} ELSE '[]'::jsonb END) AS e(el)"
    )


def _guarded(specs: Sequence[Spec], rows_from: str | None) -> str:
    fields = [s for s in specs if isinstance(s, Field)]
    extract, cast = [], []
    for f in fields:
        doc = _source(f)
        if f.kind == "text":
            extract.append(f"{_text(f, f'{doc}->>{_literal(f.json)}')} AS {f.column}")
        elif f.kind == "json_text":
            sent = f"{doc}->>{_literal(f.json)}"
            extract += [f"core.decode_json_text({sent}) AS {f.column}", f"{sent} AS _s_{f.column}"]
        else:
            extract.append(f"{_json_value(f, doc)} AS {_j(f)}")
            if f.kind == "text_array":
                cast.append(f"{_array('a.' + _j(f))} AS {f.column}")
            else:
                cast.append(f"{_GUARDED[f.kind].format(v='a.' + _j(f))} AS {f.column}")
    casts = ", ".join(["a.*", *cast])
    return (
        f"SELECT b._record_key, {', '.join(_outputs(specs, 'b'))},\n"
        f"  {_reasons(specs, 'b', fast=False)} AS _reject\n"
        f"FROM (SELECT {casts}\n"
        f"  FROM (SELECT s.record_key AS _record_key, {', '.join(extract)}\n"
        f"    FROM _stage_records s{_elements(rows_from)} OFFSET 0) a OFFSET 0) b"
    )


def _fast(specs: Sequence[Spec], rows_from: str | None) -> str:
    fields = [s for s in specs if isinstance(s, Field)]
    record: dict[str, str] = {}
    exprs = []
    for f in fields:
        kind = _fast_record_type(f)
        if kind is not None and record.setdefault(f.json, kind) != kind:
            raise ValueError(f"{f.json} is read as both {record[f.json]} and {kind}")
        value = _fast_value(f)
        if f.kind == "text_array":
            exprs += [f"{_array(value)} AS {f.column}", f"{value} AS {f.column}_j"]
        elif f.kind == "json_text":
            exprs += [f"{value} AS {f.column}", f"r.{_quote(f.json)} AS _s_{f.column}"]
        else:
            exprs.append(f"{value} AS {f.column}")
    source = "_stage_records s"
    if record:
        columns = ", ".join(f"{_quote(name)} {kind}" for name, kind in record.items())
        source += f" CROSS JOIN LATERAL jsonb_to_record(s.rec) AS r({columns})"
    source += _elements(rows_from)
    element = ", e.el AS _el" if rows_from else ""
    # The outer level leaves the record itself behind: the statement materializes its rows.
    return (
        f"SELECT t._record_key, {', '.join(_outputs(specs, 't'))},\n"
        f"  {_reasons(specs, 't', fast=True)} AS _reject\n"
        f"FROM (SELECT s.record_key AS _record_key, s.rec AS _rec{element},\n    {', '.join(exprs)}\n"
        f"  FROM {source} OFFSET 0) t"
    )


def typed_select(specs: Sequence[Spec], *, fast: bool, rows_from: str | None = None) -> str:
    """The SELECT returning each spec's columns, ``_record_key`` and ``_reject``.

    ``rows_from`` names an array inside the record: each of its elements gives a row (none
    when it is absent or not an array), and ``element`` fields are read from it.
    """
    if any(isinstance(s, Field) and s.element for s in specs) and rows_from is None:
        raise ValueError("element fields need rows_from")
    return _fast(specs, rows_from) if fast else _guarded(specs, rows_from)
