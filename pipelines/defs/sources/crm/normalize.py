"""How CRM records become typed rows: the fields of each endpoint's records (pipelines/lib/typed_select.py).

The documented types are often wrong (this folder's README.md lists how); these follow the
samples: identifiers and phone numbers are text (``spNumber`` keeps its leading zero,
``callId`` is a UUID string), ``province``/``city`` are integers or null, times are naive
``yyyy-MM-dd HH:mm:ss`` in CRM_TIMEZONE (``%(tz)s``). A field that is present but cannot be
typed rejects the record, naming the field, rather than being silently nulled.
"""

from __future__ import annotations

from models import crm as models
from pipelines.lib.loading import SourceSpec
from pipelines.lib.schema import core_target
from pipelines.lib.typed_select import Field, Param

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

CALL_LOGS = SourceSpec(
    raw_table="raw.crm_call",
    records_path=("data", "list"),
    key_sql="rec->>'id'",
    targets=(core_target(models.fact_crm_call, CALL_FIELDS, time_column="created_at"),),
)

# One row per recording: each element of callLogRecordFoundResponseList.
RECORDING_FIELDS = (
    Field("call_id", "callId"),
    Field("record_url", "recordUrl", required=True, element=True),
    Field("crm_call_id", "id", "bigint"),
    Field("call_created_at", "createTime", "local_ts", required=True),
    Field("channel_user_type", "channelUserType", "smallint"),
)

RECORDINGS = SourceSpec(
    raw_table="raw.crm_call_detail",
    records_path=("data",),
    key_sql="rec->>'callId'",
    targets=(
        core_target(
            models.fact_crm_call_recording,
            RECORDING_FIELDS,
            rows_from="callLogRecordFoundResponseList",
            time_column="call_created_at",
        ),
    ),
)

# Trimmed with an explicit set: two names end with a tab.
HANGUP_REASON_FIELDS = (
    Field("id", "id", "int", required=True),
    Field("name", "name", required=True, trim=" \t\r\n"),
)

HANGUP_REASONS = SourceSpec(
    raw_table="raw.crm_hangup_reason",
    records_path=("data",),
    key_sql="rec->>'id'",
    targets=(core_target(models.dim_crm_hangup_reason, HANGUP_REASON_FIELDS, on_missing="mark_gone"),),
)

AGENT_CALL_FIELDS = (
    Field("id", "id", "bigint", required=True),
    Param("master_user_id", "master_user_id", "bigint"),
    Field("call_id", "callId"),
    Field("created_at", "createTime", "local_ts"),
    Field("ivr_duration", "ivrDuration", "int"),
)

AGENT_CALLS = SourceSpec(
    raw_table="raw.crm_agent_call",
    records_path=("data", "list"),
    key_sql="rec->>'id'",
    # The search lists recent calls only: older rows are history, not deletions.
    targets=(core_target(models.fact_crm_call_ivr, AGENT_CALL_FIELDS, on_missing="keep"),),
)
