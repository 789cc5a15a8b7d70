"""Alibaba Cloud VMS ``CloudListCurlLog`` push (webhook) logs (seed 001): raw landing, the
fact and the static push-type dimension.

The times are epoch milliseconds (absolute instants), so no zone is involved in reading
them; the monthly partitions and the request windows are in PUSHLOG_TIMEZONE.
"""

from sqlalchemy import BigInteger, Column, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from models.base import gone_at, loaded_at, metadata, raw_table, tstz

raw_pushlog = raw_table(
    "pushlog",
    "Alibaba Cloud VMS CloudListCurlLog records (push/webhook logs), verbatim; "
    "record_key is '<EnterpriseId>:<Id>'.",
)
# An incremental refresh prunes raw rows by delivery time within its range (migration 0008).
Index(
    "ix_pushlog_partition_create_time",
    raw_pushlog.c.partition_key,
    text("core.try_epoch_ms(record->'CreateTime')"),
)

fact_push_log = Table(
    "fact_push_log",
    metadata,
    Column(
        "enterprise_id", BigInteger, primary_key=True, comment="Call-center (enterprise) id (EnterpriseId)."
    ),
    Column("id", BigInteger, primary_key=True, comment="Push log id (日志 id, Id)."),
    tstz(
        "create_time",
        "When the push was logged (CreateTime, epoch ms); the time the API filters on (inferred) "
        "and the partition time.",
        nullable=False,
    ),
    tstz("start_time", "When the push started (StartTime, epoch ms)."),
    tstz("end_time", "When the push ended (EndTime, epoch ms)."),
    tstz("request_time", "When the HTTP request was sent (RequestTime, epoch ms)."),
    Column(
        "latency_ms",
        BigInteger,
        comment="Delivery latency: EndTime - StartTime in milliseconds (exact, from the epoch values).",
    ),
    Column("type", Integer, comment="Push type (Type, 1..29); see core.dim_push_type."),
    Column(
        "type_str",
        Text,
        comment="The vendor's label of the type (TypeStr); can disagree with type (check type_str_matches_type).",
    ),
    Column("result", Integer, comment="Push result (Result): 1 success, 0 failure."),
    Column("url", Text, comment="Target URL of the push (Url)."),
    Column("method", Text, comment="HTTP method of the push (Method)."),
    Column("status_code", Integer, comment="HTTP status the receiver answered (StatusCode; 0: no answer)."),
    Column("content_type", Integer, comment="Body type of the push (ContentType, a code)."),
    Column("position", Integer, comment="Push position (Position)."),
    Column("timeout", Integer, comment="Timeout of the push in seconds (Timeout)."),
    Column("delay", Integer, comment="Delayed-push time (Delay)."),
    Column("level", Integer, comment="Push level (Level, 推送登记)."),
    Column("retry", Integer, comment="Number of retries (Retry)."),
    Column("unique_id", Text, comment='Call unique id (UniqueId); NULL when the vendor sends "".'),
    Column("current_month", Text, comment='The vendor\'s month label (CurrentMonth); NULL when it sends "".'),
    Column(
        "params",
        JSONB,
        comment="Push parameters (Params), JSON decoded however many times the vendor escaped it; "
        "NULL when it never decodes to an object or array (see params_text).",
    ),
    Column("params_text", Text, comment="Params as sent, only when it is not JSON."),
    Column(
        "result_text",
        JSONB,
        comment="The receiver's answer (ResultText) decoded to JSON; NULL when it is not JSON "
        "(see result_text_text).",
    ),
    Column(
        "result_text_text", Text, comment="ResultText as sent, only when it is not JSON (e.g. 'success')."
    ),
    Column("headers", JSONB, comment="Request headers of the push (Headers) decoded to JSON."),
    Column("headers_text", Text, comment="Headers as sent, only when it is not JSON."),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Push (webhook) logs of the call center (Alibaba Cloud VMS CloudListCurlLog), "
    "one row per (enterprise_id, id).",
)
Index("ix_fact_push_log_create_time", fact_push_log.c.create_time)

dim_push_type = Table(
    "dim_push_type",
    metadata,
    Column("type", Integer, primary_key=True, autoincrement=False, comment="Push type code (Type)."),
    Column("name", Text, nullable=False, comment="The documented name (seed 001's list)."),
    loaded_at(),
    schema="core",
    comment="The 29 push types of CloudListCurlLog, static (loaded by migration 0004 from seed 001).",
)
# The mart's hourly job finds the reporting days that loads touched since its watermark.
Index("ix_fact_push_log_loaded_at", fact_push_log.c._loaded_at)
Index(
    "ix_fact_push_log_gone_at",
    fact_push_log.c._gone_at,
    postgresql_where=fact_push_log.c._gone_at.isnot(None),
)
