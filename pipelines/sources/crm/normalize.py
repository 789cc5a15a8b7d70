"""How CRM records become typed rows: SQL over ``_stage_records (record_key, rec)``.

The documented types are often wrong (VENDORS.md); these follow the samples: identifiers
and phone numbers are text (``spNumber`` keeps its leading zero, ``callId`` is a UUID
string), ``province``/``city`` are integers or null, times are naive ``yyyy-MM-dd
HH:mm:ss`` in CRM_TIMEZONE (``%(tz)s``). A field that is present but cannot be typed
rejects the record, naming the field, rather than being silently nulled.
"""

from __future__ import annotations

from pipelines.loader import CoreTarget, SourceSpec

# (column, SQL giving the typed value, SQL giving the raw json value or None when no check)
_CALL_FIELDS: list[tuple[str, str, str | None]] = [
    ("id", "core.try_bigint(rec->'id')", "rec->'id'"),
    ("created_at", "core.try_local_timestamp(rec->'createTime', %(tz)s)", "rec->'createTime'"),
    ("call_id", "NULLIF(rec->>'callId', '')", None),
    ("conversation_id", "rec->>'conversationId'", None),
    ("customer_number", "rec->>'customerNumber'", None),
    ("customer_name", "rec->>'customerName'", None),
    ("province", "core.try_int(rec->'province')", "rec->'province'"),
    ("city", "core.try_int(rec->'city')", "rec->'city'"),
    ("agent_name", "rec->>'agentName'", None),
    ("duration", "core.try_int(rec->'duration')", "rec->'duration'"),
    ("ringing_duration", "core.try_int(rec->'ringingDuration')", "rec->'ringingDuration'"),
    ("result", "core.try_smallint(rec->'result')", "rec->'result'"),
    ("sp_number", "rec->>'spNumber'", None),
    ("call_type", "core.try_smallint(rec->'callType')", "rec->'callType'"),
    ("seat_type", "core.try_smallint(rec->'seatType')", "rec->'seatType'"),
    ("drop_side", "core.try_smallint(rec->'dropSide')", "rec->'dropSide'"),
    ("hangup_cause_id", "core.try_int(rec->'hangupCauseId')", "rec->'hangupCauseId'"),
    ("business_id", "rec->>'businessId'", None),
    ("business_log_type", "core.try_smallint(rec->'businessLogType')", "rec->'businessLogType'"),
]
_REQUIRED = {"id": "id", "created_at": "createTime", "call_id": "callId"}
_JSON_NAME = {
    "id": "id", "created_at": "createTime", "province": "province", "city": "city", "duration": "duration",
    "ringing_duration": "ringingDuration", "result": "result", "call_type": "callType", "seat_type": "seatType",
    "drop_side": "dropSide", "hangup_cause_id": "hangupCauseId", "business_log_type": "businessLogType",
}  # fmt: skip


def _call_select(extra_columns: str = "") -> str:
    # The inner query types each field once (OFFSET 0 keeps the planner from inlining it
    # into the outer one, which would evaluate every cast again for the reasons).
    typed = ",\n    ".join(f"{sql} AS {col}" for col, sql, _ in _CALL_FIELDS)
    reasons = []
    for col, _, raw in _CALL_FIELDS:
        if col in _REQUIRED:
            reasons.append(f"CASE WHEN t.{col} IS NULL THEN '{_REQUIRED[col]} missing or malformed' END")
        elif raw is not None:
            raw_t = raw.replace("rec->", "t._rec->")
            reasons.append(
                f"CASE WHEN t.{col} IS NULL AND jsonb_typeof({raw_t}) <> 'null' "
                f"THEN '{_JSON_NAME[col]} is not an integer' END"
            )
    return (
        "SELECT t.*,\n"
        f"  NULLIF(concat_ws('; ', {', '.join(reasons)}), '') AS _reject\n"
        "FROM (\n"
        f"  SELECT s.record_key AS _record_key, s.rec AS _rec,\n    {typed}{extra_columns}\n"
        "  FROM _stage_records s OFFSET 0\n"
        ") t"
    )


CALL_COLUMNS = tuple(col for col, _, _ in _CALL_FIELDS)

CALL_LOGS = SourceSpec(
    raw_table="raw.crm_call",
    records_path=("data", "list"),
    key_sql="rec->>'id'",
    targets=(
        CoreTarget(
            table="core.fact_crm_call",
            key=("id",),
            columns=CALL_COLUMNS,
            select_sql=_call_select(),
            time_column="created_at",
        ),
    ),
)

RECORDINGS = SourceSpec(
    raw_table="raw.crm_call_detail",
    records_path=("data",),
    key_sql="rec->>'callId'",
    targets=(
        CoreTarget(
            table="core.fact_crm_call_recording",
            key=("call_id", "record_url"),
            columns=("call_id", "record_url", "crm_call_id", "call_created_at", "channel_user_type"),
            select_sql="""
SELECT rec->>'callId' AS call_id,
       r.rec_url AS record_url,
       core.try_bigint(rec->'id') AS crm_call_id,
       core.try_local_timestamp(rec->'createTime', %(tz)s) AS call_created_at,
       core.try_smallint(rec->'channelUserType') AS channel_user_type,
       s.record_key AS _record_key,
       NULLIF(concat_ws('; ',
         CASE WHEN core.try_local_timestamp(rec->'createTime', %(tz)s) IS NULL
              THEN 'createTime missing or malformed' END,
         CASE WHEN r.rec_url IS NULL THEN 'recordUrl missing' END,
         CASE WHEN core.is_bad(rec->'channelUserType', core.try_smallint(rec->'channelUserType'))
              THEN 'channelUserType is not an integer' END), '') AS _reject
FROM _stage_records s
CROSS JOIN LATERAL (
  SELECT NULLIF(e->>'recordUrl', '') AS rec_url
  FROM jsonb_array_elements(
    CASE WHEN jsonb_typeof(rec->'callLogRecordFoundResponseList') = 'array'
         THEN rec->'callLogRecordFoundResponseList' ELSE '[]'::jsonb END) AS e
) r""",
            time_column="call_created_at",
        ),
    ),
)

HANGUP_REASONS = SourceSpec(
    raw_table="raw.crm_hangup_reason",
    records_path=("data",),
    key_sql="rec->>'id'",
    targets=(
        CoreTarget(
            table="core.dim_crm_hangup_reason",
            key=("id",),
            columns=("id", "name"),
            # btrim with an explicit set: two names end with a tab.
            select_sql="""
SELECT core.try_int(rec->'id') AS id,
       btrim(rec->>'name', E' \\t\\r\\n') AS name,
       s.record_key AS _record_key,
       NULLIF(concat_ws('; ',
         CASE WHEN core.try_int(rec->'id') IS NULL THEN 'id missing or not an integer' END,
         CASE WHEN rec->>'name' IS NULL THEN 'name missing' END), '') AS _reject
FROM _stage_records s""",
            on_missing="mark_gone",
        ),
    ),
)

AGENT_CALLS = SourceSpec(
    raw_table="raw.crm_agent_call",
    records_path=("data", "list"),
    key_sql="rec->>'id'",
    targets=(
        CoreTarget(
            table="core.fact_crm_call_ivr",
            key=("id",),
            columns=("id", "master_user_id", "call_id", "created_at", "ivr_duration"),
            select_sql="""
SELECT core.try_bigint(rec->'id') AS id,
       %(master_user_id)s::bigint AS master_user_id,
       rec->>'callId' AS call_id,
       core.try_local_timestamp(rec->'createTime', %(tz)s) AS created_at,
       core.try_int(rec->'ivrDuration') AS ivr_duration,
       s.record_key AS _record_key,
       NULLIF(concat_ws('; ',
         CASE WHEN core.try_bigint(rec->'id') IS NULL THEN 'id missing or not an integer' END,
         CASE WHEN core.is_bad(rec->'ivrDuration', core.try_int(rec->'ivrDuration'))
              THEN 'ivrDuration is not an integer' END), '') AS _reject
FROM _stage_records s""",
            # The search lists recent calls only: older rows are history, not deletions.
            on_missing="keep",
        ),
    ),
)
