"""TRTC call records: raw.trtc_call -> core.fact_trtc_call and core.fact_trtc_call_callee.

Set-based SQL over the loader's ``_stage_records``. Times are epoch seconds (``startCallTs``,
``acceptTs``, ``endTs``) made ``timestamptz``; 0 or absent means "did not happen" (a
``not_answer`` call's ``acceptTs``) and becomes NULL. Enums stay text: ``callResult`` has
values beyond the documented set (``offline``), which a check lists rather than rejects.
``callees`` is an array of user ids; the schema-drift form (one comma-joined string) is read
too. Identifiers are text (user ids keep leading zeros).
"""

from __future__ import annotations

from pipelines.loader import CoreTarget, SourceSpec

# Beyond 9999-12-31 to_timestamp() fails; a millisecond value would land in year ~55000.
# Either is a malformed time, so anything outside [1, this] is not epoch seconds.
MAX_EPOCH_S = 253_402_300_799

CALL_RESULTS = ["cancel", "reject", "not_answer", "normal_end", "call_busy", "interrupt"]  # seed 004
CALL_TYPES = ["single", "group"]
MEDIA_TYPES = ["video", "audio"]


def epoch_sql(doc: str, field: str) -> str:
    """SQL giving ``doc->field`` (epoch seconds, number or numeric string) as timestamptz,
    NULL when absent, 0 or not a time."""
    v = f"core.try_bigint({doc}->'{field}')"
    return f"(CASE WHEN {v} BETWEEN 1 AND {MAX_EPOCH_S} THEN to_timestamp({v}) END)"


def _bad_epoch(field: str) -> str:
    v = f"core.try_bigint(rec->'{field}')"
    return (
        f"CASE WHEN core.is_bad(rec->'{field}', {v}) OR {v} NOT BETWEEN 0 AND {MAX_EPOCH_S} "
        f"THEN '{field} is not epoch seconds' END"
    )


CALL_COLUMNS = (
    "sdk_app_id",
    "call_id",
    "started_at",
    "accepted_at",
    "ended_at",
    "media_type",
    "room_id",
    "caller",
    "callees",
    "total_user_number",
    "call_type",
    "call_result",
)

# The record's own sdkAppId, else the configured one (%(sdk_app_id)s): the natural key.
_APP_ID = "COALESCE(core.try_bigint(rec->'sdkAppId'), %(sdk_app_id)s::bigint)"

_CALL_SELECT = f"""
SELECT {_APP_ID} AS sdk_app_id,
       NULLIF(rec->>'callId', '') AS call_id,
       {epoch_sql("rec", "startCallTs")} AS started_at,
       {epoch_sql("rec", "acceptTs")} AS accepted_at,
       {epoch_sql("rec", "endTs")} AS ended_at,
       rec->>'mediaType' AS media_type,
       rec->>'roomId' AS room_id,
       rec->>'caller' AS caller,
       c.callees,
       core.try_int(rec->'totalUserNumber') AS total_user_number,
       rec->>'callType' AS call_type,
       rec->>'callResult' AS call_result,
       s.record_key AS _record_key,
       NULLIF(concat_ws('; ',
         CASE WHEN NULLIF(rec->>'callId', '') IS NULL THEN 'callId missing' END,
         CASE WHEN {epoch_sql("rec", "startCallTs")} IS NULL THEN 'startCallTs missing or not epoch seconds' END,
         {_bad_epoch("acceptTs")},
         {_bad_epoch("endTs")},
         CASE WHEN core.is_bad(rec->'sdkAppId', core.try_bigint(rec->'sdkAppId'))
              THEN 'sdkAppId is not an integer' END,
         CASE WHEN core.is_bad(rec->'totalUserNumber', core.try_int(rec->'totalUserNumber'))
              THEN 'totalUserNumber is not an integer' END,
         CASE WHEN jsonb_typeof(rec->'callees') NOT IN ('array', 'string', 'null')
              THEN 'callees is neither an array nor a string' END), '') AS _reject
FROM _stage_records s
CROSS JOIN LATERAL (
  SELECT CASE jsonb_typeof(rec->'callees')
    WHEN 'array' THEN ARRAY(
      SELECT e #>> '{{}}' FROM jsonb_array_elements(rec->'callees') WITH ORDINALITY AS x(e, i)
      WHERE jsonb_typeof(e) IN ('string', 'number') ORDER BY i)
    -- schema drift seen from the same API family: the ids as one comma-joined string
    WHEN 'string' THEN ARRAY(
      SELECT btrim(u) FROM unnest(string_to_array(rec->>'callees', ',')) WITH ORDINALITY AS x(u, i)
      WHERE btrim(u) <> '' ORDER BY i)
  END AS callees
) c"""

_CALLEE_SELECT = f"""
SELECT f.sdk_app_id, f.call_id, u.callee, f.started_at,
       COALESCE(u.callee = f.caller, false) AS is_caller,
       f._record_key, f._reject
FROM ({_CALL_SELECT}) f
CROSS JOIN LATERAL unnest(f.callees) AS u(callee)
WHERE u.callee IS NOT NULL"""

CALLS = SourceSpec(
    raw_table="raw.trtc_call",
    records_path=("data", "callRecordList"),
    key_sql="COALESCE(core.try_bigint(rec->'sdkAppId')::text, %(sdk_app_id)s::text) || ':' || "
    "NULLIF(rec->>'callId', '')",
    targets=(
        CoreTarget(
            table="core.fact_trtc_call",
            key=("sdk_app_id", "call_id"),
            columns=CALL_COLUMNS,
            select_sql=_CALL_SELECT,
            time_column="started_at",
        ),
        CoreTarget(
            table="core.fact_trtc_call_callee",
            key=("sdk_app_id", "call_id", "callee"),
            columns=("sdk_app_id", "call_id", "callee", "started_at", "is_caller"),
            select_sql=_CALLEE_SELECT,
            time_column="started_at",
        ),
    ),
)
