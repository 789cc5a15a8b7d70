"""Tencent TRTC TUICallKit call records (seed 004): raw landing and core tables.

The vendor keeps calls for 7 days only: ``raw.trtc_call`` is the one long-term copy, and
``core`` can be rebuilt from it without calling the vendor.
"""

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY

from models.base import gone_at, loaded_at, metadata, raw_table, tstz

raw_trtc_call = raw_table(
    "trtc_call",
    "Tencent TRTC /v1/records/get_records_by_filter call records, verbatim; record_key is "
    "'<sdkAppId>:<callId>'. The vendor forgets calls after 7 days: this is the only long-term copy.",
)

fact_trtc_call = Table(
    "fact_trtc_call",
    metadata,
    Column("sdk_app_id", BigInteger, primary_key=True, comment="The TRTC application (sdkAppId)."),
    Column("call_id", Text, primary_key=True, comment="The call's unique id (callId), a UUID string."),
    tstz(
        "started_at",
        "When the call was placed (startCallTs, epoch seconds); the partition time.",
        nullable=False,
    ),
    tstz(
        "accepted_at",
        "When the call was answered (acceptTs); NULL when 0 or absent. Equals started_at for calls never "
        "answered (cancel, reject, call_busy, offline), as the vendor sends it.",
    ),
    tstz("ended_at", "When the call ended (endTs); NULL when 0 or absent."),
    Column("media_type", Text, comment="video or audio (mediaType)."),
    Column("room_id", Text, comment="The TRTC room of the call (roomId): numeric or a string id."),
    Column("caller", Text, comment="The caller's userId (text: ids keep leading zeros)."),
    Column(
        "callees",
        ARRAY(Text),
        comment="userIds called and taking part (callees), in the vendor's order; one row each in "
        "core.fact_trtc_call_callee. 'offline' calls list the caller too.",
    ),
    Column("total_user_number", Integer, comment="Participants counted by the vendor (totalUserNumber)."),
    Column("call_type", Text, comment="single (one to one) or group (callType)."),
    Column(
        "call_result",
        Text,
        comment="callResult: cancel, reject, not_answer, normal_end, call_busy, interrupt (documented); "
        "other values are seen (offline) and kept as sent. Group calls are only normal_end.",
    ),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Tencent TRTC TUICallKit call records (seed 004), one row per (sdk_app_id, call_id).",
)
Index("ix_fact_trtc_call_started_at", fact_trtc_call.c.started_at)

fact_trtc_call_callee = Table(
    "fact_trtc_call_callee",
    metadata,
    Column("sdk_app_id", BigInteger, primary_key=True, comment="The TRTC application (sdkAppId)."),
    Column("call_id", Text, primary_key=True, comment="The call (core.fact_trtc_call.call_id)."),
    Column("callee", Text, primary_key=True, comment="One userId of the call's callees."),
    tstz("started_at", "When the call was placed (core.fact_trtc_call.started_at).", nullable=False),
    Column(
        "is_caller",
        Boolean,
        nullable=False,
        comment="The callee is the caller itself (the vendor lists it so for 'offline' calls).",
    ),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Tencent TRTC call callees, one row per call and callee userId: join on callee to find a "
    "user's calls.",
)
Index("ix_fact_trtc_call_callee_started_at", fact_trtc_call_callee.c.started_at)
Index("ix_fact_trtc_call_callee_callee", fact_trtc_call_callee.c.callee)
# The mart's hourly job finds the reporting days that loads touched since its watermark.
Index("ix_fact_trtc_call_loaded_at", fact_trtc_call.c._loaded_at)
Index(
    "ix_fact_trtc_call_gone_at",
    fact_trtc_call.c._gone_at,
    postgresql_where=fact_trtc_call.c._gone_at.isnot(None),
)
