"""How CloudListCurlLog records become ``core.fact_push_log`` rows (set-based SQL).

The documented types are not the wire's: times are epoch milliseconds as strings, ids and
codes numeric strings, and Params / ResultText / Headers JSON escaped once or twice inside a
string (``core.decode_json_text`` unwraps it). ``UniqueId`` and ``CurrentMonth`` send the two
characters ``""`` for "empty".
"""

from __future__ import annotations

from pipelines.loader import CoreTarget, SourceSpec

# Typed from a JSON value: (column, vendor field, guarded cast, required). A malformed value
# of a required field rejects the record; of any other field too (a value that is there but is
# not what it should be), while an absent, null or empty ("") value is just NULL.
_CASTS: list[tuple[str, str, str, bool]] = [
    ("enterprise_id", "EnterpriseId", "core.try_bigint", True),
    ("id", "Id", "core.try_bigint", True),
    ("create_time", "CreateTime", "core.try_epoch_ms", True),
    ("start_time", "StartTime", "core.try_epoch_ms", False),
    ("end_time", "EndTime", "core.try_epoch_ms", False),
    ("request_time", "RequestTime", "core.try_epoch_ms", False),
    ("type", "Type", "core.try_int", False),
    ("result", "Result", "core.try_int", False),
    ("status_code", "StatusCode", "core.try_int", False),
    ("content_type", "ContentType", "core.try_int", False),
    ("position", "Position", "core.try_int", False),
    ("timeout", "Timeout", "core.try_int", False),
    ("delay", "Delay", "core.try_int", False),
    ("level", "Level", "core.try_int", False),
    ("retry", "Retry", "core.try_int", False),
]
# Text as sent (the two characters "" mean empty for UniqueId and CurrentMonth).
_TEXTS: list[tuple[str, str]] = [
    ("type_str", "rec->>'TypeStr'"),
    ("url", "NULLIF(rec->>'Url', '')"),
    ("method", "NULLIF(rec->>'Method', '')"),
    ("unique_id", "CASE WHEN rec->>'UniqueId' NOT IN ('', '\"\"') THEN rec->>'UniqueId' END"),
    ("current_month", "CASE WHEN rec->>'CurrentMonth' NOT IN ('', '\"\"') THEN rec->>'CurrentMonth' END"),
]
# JSON inside a string: the decoded value, and the text only when it never decodes.
_JSON_TEXTS: list[tuple[str, str]] = [
    ("params", "Params"),
    ("result_text", "ResultText"),
    ("headers", "Headers"),
]

COLUMNS = (
    *(c for c, _, _, _ in _CASTS),
    "latency_ms",
    *(c for c, _ in _TEXTS),
    *(x for c, _ in _JSON_TEXTS for x in (c, f"{c}_text")),
)


def _select() -> str:
    """Three levels, each fenced by OFFSET 0 so the planner cannot fold them back together
    (which would evaluate every extraction and cast twice: once for the value, once for the
    reject reason): extract each JSON value once, cast once, then give the reasons."""
    extract = [f"NULLIF(rec->'{f}', '\"\"'::jsonb) AS j_{c}" for c, f, _, _ in _CASTS]
    extract += [f"{expr} AS {c}" for c, expr in _TEXTS]
    for c, f in _JSON_TEXTS:
        extract += [f"core.decode_json_text(rec->>'{f}') AS {c}", f"rec->>'{f}' AS {c}_sent"]
    cast = [f"{fn}(a.j_{c}) AS {c}" for c, _, fn, _ in _CASTS]
    # Exact delivery latency from the epoch values themselves (no float, no rounding).
    cast.append("core.try_bigint(a.j_end_time) - core.try_bigint(a.j_start_time) AS latency_ms")
    reasons = [
        f"CASE WHEN b.{c} IS NULL THEN '{f} missing or malformed' END" for c, f, _, req in _CASTS if req
    ]
    for c, f, fn, req in _CASTS:
        if not req:
            kind = "epoch milliseconds" if fn == "core.try_epoch_ms" else "an integer"
            reasons.append(f"CASE WHEN core.is_bad(b.j_{c}, b.{c}) THEN '{f} is not {kind}' END")
    out = [f"b.{c}" for c, _, _, _ in _CASTS] + ["b.latency_ms"] + [f"b.{c}" for c, _ in _TEXTS]
    for c, _ in _JSON_TEXTS:
        out += [f"b.{c}", f"CASE WHEN b.{c} IS NULL THEN b.{c}_sent END AS {c}_text"]
    return (
        "SELECT " + ", ".join(out) + ", b._record_key,\n"
        f"  NULLIF(concat_ws('; ', {', '.join(reasons)}), '') AS _reject\n"
        "FROM (SELECT a.*, " + ", ".join(cast) + "\n"
        "  FROM (SELECT s.record_key AS _record_key, " + ", ".join(extract) + "\n"
        "    FROM _stage_records s OFFSET 0) a OFFSET 0) b"
    )


PUSH_LOGS = SourceSpec(
    raw_table="raw.pushlog",
    records_path=("Data", "List"),
    # NULL (a keyless reject) unless both parts are there.
    key_sql="(rec->>'EnterpriseId') || ':' || (rec->>'Id')",
    targets=(
        CoreTarget(
            table="core.fact_push_log",
            key=("enterprise_id", "id"),
            columns=COLUMNS,
            select_sql=_select(),
            time_column="create_time",
        ),
    ),
)
