"""How CRM records become typed rows: SQL over ``_stage_records (record_key, rec)``.

The documented types are often wrong (VENDORS.md); these follow the samples: identifiers
and phone numbers are text (``spNumber`` keeps its leading zero, ``callId`` is a UUID
string), ``province``/``city`` are integers or null, times are naive ``yyyy-MM-dd
HH:mm:ss`` in CRM_TIMEZONE (``%(tz)s``). A field that is present but cannot be typed
rejects the record, naming the field, rather than being silently nulled.
"""

from __future__ import annotations

from pipelines.loader import CoreTarget, SourceSpec
from pipelines.typed_select import Field, typed_select

CALL_FIELDS = (
    Field("id", "id", "bigint", required=True),
    Field("created_at", "createTime", "local_ts", required=True),
    Field("call_id", "callId", required=True),
    Field("conversation_id", "conversationId"),
    Field("customer_number", "customerNumber"),
    Field("customer_name", "customerName"),
    Field("province", "province", "int"),
    Field("city", "city", "int"),
    Field("agent_name", "agentName"),
    Field("duration", "duration", "int"),
    Field("ringing_duration", "ringingDuration", "int"),
    Field("result", "result", "smallint"),
    Field("sp_number", "spNumber"),
    Field("call_type", "callType", "smallint"),
    Field("seat_type", "seatType", "smallint"),
    Field("drop_side", "dropSide", "smallint"),
    Field("hangup_cause_id", "hangupCauseId", "int"),
    Field("business_id", "businessId"),
    Field("business_log_type", "businessLogType", "smallint"),
)
CALL_COLUMNS = tuple(f.column for f in CALL_FIELDS)

CALL_LOGS = SourceSpec(
    raw_table="raw.crm_call",
    records_path=("data", "list"),
    key_sql="rec->>'id'",
    targets=(
        CoreTarget(
            table="core.fact_crm_call",
            key=("id",),
            columns=CALL_COLUMNS,
            select_sql=typed_select(CALL_FIELDS, fast=False),
            fast_select_sql=typed_select(CALL_FIELDS, fast=True),
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
