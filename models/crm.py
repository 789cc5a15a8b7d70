"""Udesk CCPS CRM (seed 002): raw landing and core tables."""

from sqlalchemy import BigInteger, Column, Index, Integer, SmallInteger, Table, Text

from models.base import gone_at, loaded_at, metadata, raw_table, tstz

raw_crm_call = raw_table("crm_call", "Udesk CRM /v1/callLogs records, verbatim.")
raw_crm_call_detail = raw_table(
    "crm_call_detail", "Udesk CRM /v1/callLogs/view answers (one call with its recordings), verbatim."
)
raw_crm_hangup_reason = raw_table("crm_hangup_reason", "Udesk CRM /v1/hangupReasons records, verbatim.")
raw_crm_agent_call = raw_table(
    "crm_agent_call", "Udesk CRM /v1/callLogs/search records (an agent's recent calls), verbatim."
)

fact_crm_call = Table(
    "fact_crm_call",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False, comment="Call log id (通话记录id)."),
    tstz("created_at", "When the call was logged (createTime, read in CRM_TIMEZONE).", nullable=False),
    Column("call_id", Text, nullable=False, comment="CallID: a UUID string, although documented as int."),
    Column("conversation_id", Text, comment="Conversation id: a UUID or a short number (undocumented)."),
    Column("customer_number", Text, comment="The customer's phone number (号码)."),
    Column("customer_name", Text, comment="Name of the linked CRM record (关联记录名称)."),
    Column(
        "province", Integer, comment="Province code of the number (归属地省); an int, documented as string."
    ),
    Column("city", Integer, comment="City code of the number (归属地市); an int, documented as string."),
    Column("agent_name", Text, comment="Agent name (坐席名称); can be null despite the documentation."),
    Column("duration", Integer, comment="Talk time in seconds (通话时长)."),
    Column("ringing_duration", Integer, comment="Ringing time in seconds (响铃时长)."),
    Column(
        "result",
        SmallInteger,
        comment="1 customer answered, 2 customer missed, 3 agent missed, 4 agent rejected, 5 agent answered.",
    ),
    Column("sp_number", Text, comment="Trunk number (中继号); text, it keeps its leading zero."),
    Column("call_type", SmallInteger, comment="1 inbound, 2 outbound, 3 automatic outbound."),
    Column("seat_type", SmallInteger, comment="1 IP phone, 2 mobile."),
    Column("drop_side", SmallInteger, comment="Who hung up: 1 customer, 2 agent."),
    Column("hangup_cause_id", Integer, comment="Outbound failure reason; see core.dim_crm_hangup_reason."),
    Column("business_id", Text, comment="Id of the linked CRM record (关联记录id)."),
    Column(
        "business_log_type",
        SmallInteger,
        comment="Linked record type: 1 lead, 2 customer, 3 deal, 4 contact.",
    ),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Udesk CRM call logs (/v1/callLogs), one row per call log id.",
)
Index("ix_fact_crm_call_created_at", fact_crm_call.c.created_at)
# call_id (a random UUID) is only ever looked up or joined by equality: a hash index does
# that and costs a load less to maintain than a B-tree (about 2 of ~25 us per record).
Index("ix_fact_crm_call_call_id", fact_crm_call.c.call_id, postgresql_using="hash")

fact_crm_call_recording = Table(
    "fact_crm_call_recording",
    metadata,
    Column("call_id", Text, primary_key=True, comment="CallID of the call (see core.fact_crm_call.call_id)."),
    Column("record_url", Text, primary_key=True, comment="Recording address (录音地址)."),
    Column("crm_call_id", BigInteger, comment="Call log id (core.fact_crm_call.id)."),
    tstz("call_created_at", "When the call was logged; the partition time.", nullable=False),
    Column("channel_user_type", SmallInteger, comment="Whose channel: 1 user, 2 agent, 4 monitor."),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Udesk CRM call recordings (/v1/callLogs/view), one row per call and recording URL.",
)
Index("ix_fact_crm_call_recording_call_created_at", fact_crm_call_recording.c.call_created_at)

dim_crm_hangup_reason = Table(
    "dim_crm_hangup_reason",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, comment="Hangup reason id (挂机原因id)."),
    Column(
        "name", Text, nullable=False, comment="Reason name, trimmed (the API sends some with a trailing tab)."
    ),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Udesk CRM outbound hangup reasons (/v1/hangupReasons), a daily snapshot.",
)

fact_crm_call_ivr = Table(
    "fact_crm_call_ivr",
    metadata,
    Column(
        "id",
        BigInteger,
        primary_key=True,
        autoincrement=False,
        comment="Call log id (core.fact_crm_call.id).",
    ),
    Column(
        "master_user_id",
        BigInteger,
        nullable=False,
        comment="The agent (CRM_AGENT_IDS) whose calls listed it.",
    ),
    Column("call_id", Text, comment="CallID of the call."),
    tstz("created_at", "When the call was logged (createTime, read in CRM_TIMEZONE)."),
    Column(
        "ivr_duration",
        Integer,
        comment="Seconds spent in the IVR (ivr通话时长); only /v1/callLogs/search has it.",
    ),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="IVR durations of agents' recent calls (/v1/callLogs/search); join on id to core.fact_crm_call.",
)
# The mart's hourly job finds the reporting days that loads touched since its watermark.
Index("ix_fact_crm_call_loaded_at", fact_crm_call.c._loaded_at)
Index(
    "ix_fact_crm_call_gone_at",
    fact_crm_call.c._gone_at,
    postgresql_where=fact_crm_call.c._gone_at.isnot(None),
)
