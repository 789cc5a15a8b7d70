"""The analysts' layer (issue 13): the code-mapping tables and settings of ``mart``, and the
two ``core`` tables behind pseudonymous customers.

The ``mart`` views (``mart.calls``, ``mart.push_deliveries``) live in ``sql/mart/views/``
(SQLAlchemy metadata holds tables only; Alembic's comparison ignores views); the KPI tables
kept by day in ``models/mart_kpi.py``. Their rows are filled by that migration, not by the
pipeline: a mapping changes only through a migration, so every warehouse agrees on it.
"""

from sqlalchemy import Boolean, Column, Integer, SmallInteger, Table, Text

from models.base import loaded_at, metadata

# ------------------------------------------------------------------------------------------
# core: who a customer is (restricted; analysts never read these)

customer_identity = Table(
    "customer_identity",
    metadata,
    Column("app_user_id", Text, primary_key=True, comment="An app user id (TRTC userId)."),
    Column("phone_number", Text, nullable=False, comment="The user's phone number, as the file gives it."),
    loaded_at(),
    schema="core",
    comment="Optional identity map from the operator's CSV (CUSTOMER_IDENTITY_FILE): app user id -> phone "
    "number. Replaced as a whole by each load of core/customer_identity; it lets mart.calls give an app "
    "user the same customer_key as their phone calls.",
)

customer_key = Table(
    "customer_key",
    metadata,
    Column(
        "subject",
        Text,
        primary_key=True,
        comment="What is keyed: a phone number normalized by core.normalize_phone ('+8613812345678'), "
        "or 'app:<user id>' for an app user id that is neither a number nor in core.customer_identity.",
    ),
    Column(
        "customer_key",
        Text,
        nullable=False,
        comment="HMAC-SHA256 of subject under PII_HASH_KEY, first 16 bytes in URL-safe Base64 (22 "
        "characters). The key itself is never stored.",
    ),
    Column("last4", Text, comment="Last four digits of a phone subject; NULL for an app user id."),
    Column(
        "key_id",
        Text,
        nullable=False,
        comment="Which key made customer_key (an HMAC of a fixed label under the key, 8 bytes hex): "
        "rows of another key are recomputed.",
    ),
    loaded_at(),
    schema="core",
    comment="The pseudonym of every customer seen in the call facts, written by the core/customer_key "
    "asset (the only place the key is known). mart.calls joins it on subject.",
)

# ------------------------------------------------------------------------------------------
# mart: code mappings and settings, readable by analysts


def _desc() -> Column:
    return Column("description", Text, nullable=False, comment="What the code means, in words.")


map_crm_direction = Table(
    "map_crm_direction",
    metadata,
    Column(
        "call_type",
        SmallInteger,
        primary_key=True,
        autoincrement=False,
        comment="CRM callType (core.fact_crm_call.call_type).",
    ),
    Column("direction", Text, nullable=False, comment="mart.calls.direction."),
    _desc(),
    schema="mart",
    comment="CRM callType -> mart.calls.direction.",
)

map_crm_outcome = Table(
    "map_crm_outcome",
    metadata,
    Column(
        "result",
        SmallInteger,
        primary_key=True,
        autoincrement=False,
        comment="CRM result (core.fact_crm_call.result).",
    ),
    Column("outcome", Text, nullable=False, comment="mart.calls.outcome."),
    _desc(),
    schema="mart",
    comment="CRM result -> mart.calls.outcome. A result not listed here becomes 'other'.",
)

map_crm_hangup_side = Table(
    "map_crm_hangup_side",
    metadata,
    Column(
        "drop_side",
        SmallInteger,
        primary_key=True,
        autoincrement=False,
        comment="CRM dropSide (core.fact_crm_call.drop_side).",
    ),
    Column("hangup_side", Text, nullable=False, comment="mart.calls.hangup_side."),
    _desc(),
    schema="mart",
    comment="CRM dropSide -> mart.calls.hangup_side (who hung up).",
)

map_trtc_direction = Table(
    "map_trtc_direction",
    metadata,
    Column("call_type", Text, primary_key=True, comment="TRTC callType (core.fact_trtc_call.call_type)."),
    Column("direction", Text, nullable=False, comment="mart.calls.direction."),
    _desc(),
    schema="mart",
    comment="TRTC callType -> mart.calls.direction: every TRTC call is placed in the app.",
)

map_trtc_outcome = Table(
    "map_trtc_outcome",
    metadata,
    Column(
        "call_result", Text, primary_key=True, comment="TRTC callResult (core.fact_trtc_call.call_result)."
    ),
    Column("outcome", Text, nullable=False, comment="mart.calls.outcome."),
    Column("answered", Boolean, nullable=False, comment="The callee accepted the call (answered_at is set)."),
    _desc(),
    schema="mart",
    comment="TRTC callResult -> mart.calls.outcome. mart.calls takes the TRTC caller as the customer, so "
    "the callee is the answering side. A value not listed here becomes 'other'.",
)

map_outcome = Table(
    "map_outcome",
    metadata,
    Column("outcome", Text, primary_key=True, comment="A value of mart.calls.outcome."),
    Column(
        "answered",
        Boolean,
        nullable=False,
        comment="Calls with this outcome were answered (counted in answered).",
    ),
    _desc(),
    schema="mart",
    comment="The unified outcomes of mart.calls, whatever the source.",
)

map_push_type = Table(
    "map_push_type",
    metadata,
    Column(
        "push_type",
        Integer,
        primary_key=True,
        autoincrement=False,
        comment="Push type code (core.fact_push_log.type).",
    ),
    Column("name", Text, nullable=False, comment="The documented name (seed 001), Chinese."),
    Column("name_en", Text, nullable=False, comment="Our English translation of name."),
    schema="mart",
    comment="Push (webhook) types of the call center, with English names (mart.push_delivery_daily).",
)

map_isales_result_code = Table(
    "map_isales_result_code",
    metadata,
    Column(
        "result_code",
        Text,
        primary_key=True,
        comment="iSales result code, text (7 or 8 digits with a leading zero).",
    ),
    Column("is_success", Boolean, nullable=False, comment="Only 0200000 is success."),
    Column("meaning", Text, nullable=False, comment="The documented meaning (seed 003, table 6), Chinese."),
    Column("meaning_en", Text, nullable=False, comment="Our English translation of meaning."),
    schema="mart",
    comment="Huawei CC-iSales result codes (mart.api_usage_daily.result_codes). A code not listed here is "
    "an error of unknown meaning.",
)

settings = Table(
    "settings",
    metadata,
    Column("name", Text, primary_key=True, comment="Setting name."),
    Column("value", Text, nullable=False, comment="Its value."),
    _desc(),
    schema="mart",
    comment="Settings the mart views read; reporting_timezone is written from REPORTING_TIMEZONE each time "
    "the mart assets run (default Asia/Shanghai).",
)
