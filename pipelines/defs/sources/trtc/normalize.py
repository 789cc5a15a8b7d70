"""TRTC call records: raw.trtc_call -> core.fact_trtc_call and core.fact_trtc_call_callee.

The fields of a call record (pipelines/lib/typed_select.py); the callees are one row each.
Times are epoch seconds (``startCallTs``, ``acceptTs``, ``endTs``) made ``timestamptz``; 0
or absent means "did not happen" (a ``not_answer`` call's ``acceptTs``) and becomes NULL. Enums stay text: ``callResult`` has
values beyond the documented set (``offline``), which a check lists rather than rejects.
``callees`` is an array of user ids; the schema-drift form (one comma-joined string) is read
too. Identifiers are text (user ids keep leading zeros).
"""

from __future__ import annotations

from models import trtc as models
from pipelines.lib.loading import SourceSpec
from pipelines.lib.schema import core_target
from pipelines.lib.typed_select import Field, typed_select

CALL_RESULTS = ["cancel", "reject", "not_answer", "normal_end", "call_busy", "interrupt"]  # seed 004
CALL_TYPES = ["single", "group"]
MEDIA_TYPES = ["video", "audio"]

CALL_FIELDS = (
    # The record's own sdkAppId, else the configured one (%(sdk_app_id)s): the natural key.
    Field("sdk_app_id", "sdkAppId", "bigint", default="sdk_app_id"),
    Field("call_id", "callId", required=True),
    Field("started_at", "startCallTs", "epoch_s", required=True),
    Field("accepted_at", "acceptTs", "epoch_s"),
    Field("ended_at", "endTs", "epoch_s"),
    Field("media_type", "mediaType"),
    Field("room_id", "roomId"),
    Field("caller", "caller"),
    Field("callees", "callees", "text_array"),
    Field("total_user_number", "totalUserNumber", "int"),
    Field("call_type", "callType"),
    Field("call_result", "callResult"),
)


def _callees(calls: str) -> str:
    """One row per callee of each typed call (the call's own reject, if any, carried along)."""
    return f"""
SELECT f.sdk_app_id, f.call_id, u.callee, f.started_at,
       COALESCE(u.callee = f.caller, false) AS is_caller,
       f._record_key, f._reject
FROM ({calls}) f
CROSS JOIN LATERAL unnest(f.callees) AS u(callee)
WHERE u.callee IS NOT NULL"""


_CALLS = core_target(models.fact_trtc_call, CALL_FIELDS, time_column="started_at")

CALLS = SourceSpec(
    raw_table="raw.trtc_call",
    records_path=("data", "callRecordList"),
    key_sql="COALESCE(core.try_bigint(rec->'sdkAppId')::text, %(sdk_app_id)s::text) || ':' || "
    "NULLIF(rec->>'callId', '')",
    targets=(
        _CALLS,
        core_target(
            models.fact_trtc_call_callee,
            select_sql=_callees(typed_select(CALL_FIELDS, fast=False)),
            fast_select_sql=_callees(typed_select(CALL_FIELDS, fast=True)),
            written=("sdk_app_id", "call_id", "callee", "started_at", "is_caller"),
            reads=CALL_FIELDS,
            time_column="started_at",
        ),
    ),
)
