"""The mart's KPI tables (issue 21): kept by reporting day by the ``mart/<table>`` assets (one
transaction per day: delete the day, insert it again), and the state behind them.

Until 0015 they were views over ``core`` (migration 0011): same names, columns, types and
comments, so the analysts' queries did not change; their rows are what the views returned.
``customers`` is one row per customer, rebuilt for the customers of each day written from
``core.customer_day``.
"""

from sqlalchemy import ARRAY, BigInteger, Column, Date, DateTime, Index, Integer, Numeric, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, tstz


# Every KPI table's shared columns, one definition each (a Column belongs to one table: these
# make a new one per table).
def _day(of: str = "") -> Column:
    zone = "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai)."
    return Column("day", Date, comment=f"{zone} Of {of}." if of else zone)


def _source() -> Column:
    return Column("source", Text, comment="crm or trtc (mart.calls.source).")


def _live_calls() -> Column:
    return Column(
        "calls",
        BigInteger,
        comment="Calls that their source still returns (mart.calls with is_deleted false).",
    )


def _answered_calls() -> list[Column]:
    return [
        _live_calls(),
        Column(
            "answered",
            BigInteger,
            comment="Calls answered (answered_at set: outcome answered or interrupted).",
        ),
        Column("answer_rate", Numeric, comment="answered / calls, 0..1, four decimals."),
    ]


call_daily = Table(
    "call_daily",
    metadata,
    _day(),
    _source(),
    Column("direction", Text, comment="mart.calls.direction."),
    *_answered_calls(),
    Column("avg_duration_s", Numeric, comment="Average talk time of answered calls, seconds, one decimal."),
    Column(
        "p50_duration_s",
        Numeric,
        comment="Median talk time of answered calls, seconds (interpolated), one decimal.",
    ),
    Column(
        "p90_duration_s",
        Numeric,
        comment="90th percentile of talk time of answered calls, seconds (interpolated), one decimal.",
    ),
    Column(
        "avg_ring_s", Numeric, comment="Average ring time of the calls that have one, seconds, one decimal."
    ),
    schema="mart",
    comment="Calls per day, source and direction: volume, answer rate, talk time and ring time.",
)
Index("ix_call_daily_day", call_daily.c.day)

call_hourly = Table(
    "call_hourly",
    metadata,
    _day(),
    Column("hour", Integer, comment="Hour of the day in the reporting zone, 0..23."),
    _source(),
    Column("direction", Text, comment="mart.calls.direction."),
    *_answered_calls(),
    schema="mart",
    comment="Calls per hour of the day (reporting zone), source and direction: the load curve.",
)
Index("ix_call_hourly_day", call_hourly.c.day)

agent_daily = Table(
    "agent_daily",
    metadata,
    _day(),
    _source(),
    Column("agent", Text, comment="The agent's display name (mart.calls.agent)."),
    *_answered_calls(),
    Column("talk_s", BigInteger, comment="Total talk time of answered calls, seconds."),
    Column("avg_duration_s", Numeric, comment="Average talk time of answered calls, seconds, one decimal."),
    Column("avg_ring_s", Numeric, comment="Average ring time, seconds, one decimal."),
    schema="mart",
    comment="Calls per day and agent (calls with a known agent: the CRM's).",
)
Index("ix_agent_daily_day", agent_daily.c.day)

hangup_cause_daily = Table(
    "hangup_cause_daily",
    metadata,
    _day(),
    _source(),
    Column("outcome", Text, comment="mart.calls.outcome."),
    Column("hangup_side", Text, comment="mart.calls.hangup_side."),
    Column("hangup_cause", Text, comment="mart.calls.hangup_cause."),
    _live_calls(),
    schema="mart",
    comment="Calls per day, source, outcome, hangup side and hangup cause: why calls fail.",
)
Index("ix_hangup_cause_daily_day", hangup_cause_daily.c.day)

customers = Table(
    "customers",
    metadata,
    Column("customer_key", Text, primary_key=True, comment="mart.calls.customer_key."),
    Column(
        "customer_last4",
        Text,
        comment="Last four digits of the customer's number; NULL for an app user without one.",
    ),
    Column("calls", BigInteger, comment="The customer's calls, all sources (not deleted)."),
    Column("crm_calls", BigInteger, comment="Of which CRM calls."),
    Column("trtc_calls", BigInteger, comment="Of which TRTC calls (as the caller)."),
    Column(
        "sources", ARRAY(Text), comment="The sources the customer called through, sorted (e.g. {crm,trtc})."
    ),
    Column("first_call_at", DateTime(timezone=True), comment="The customer's first call."),
    Column("last_call_at", DateTime(timezone=True), comment="The customer's last call."),
    schema="mart",
    comment="One row per pseudonymous customer (customer_key) with their calls across sources: count and join customers without any phone number.",
)

push_delivery_daily = Table(
    "push_delivery_daily",
    metadata,
    _day("the push's CreateTime"),
    Column("push_type", Integer, comment="Push type code (1..29, mart.map_push_type)."),
    Column("push_type_name", Text, comment="The type's documented name, Chinese (mart.map_push_type.name)."),
    Column("push_type_name_en", Text, comment="The type's name in English (mart.map_push_type.name_en)."),
    Column("deliveries", BigInteger, comment="Pushes logged."),
    Column("succeeded", BigInteger, comment="Pushes with Result 1 (success)."),
    Column("success_rate", Numeric, comment="succeeded / deliveries, 0..1, four decimals."),
    Column(
        "latency_p50_ms",
        Numeric,
        comment="Median delivery latency (EndTime - StartTime), milliseconds (interpolated), one decimal.",
    ),
    Column(
        "latency_p95_ms",
        Numeric,
        comment="95th percentile of delivery latency, milliseconds (interpolated), one decimal.",
    ),
    Column("retries", BigInteger, comment="Retries spent (sum of the pushes' Retry counts)."),
    schema="mart",
    comment="Webhook (push) deliveries of the call center per day and push type: success and latency (Alibaba Cloud VMS push logs; deleted rows left out).",
)
Index("ix_push_delivery_daily_day", push_delivery_daily.c.day)

api_usage_daily = Table(
    "api_usage_daily",
    metadata,
    _day("operTime"),
    Column("vdn_id", Integer, comment="Virtual call center (VDN)."),
    Column(
        "url_pattern",
        Text,
        comment="The endpoint: the URL path with the VDN as {vdnId} and other ids as {id}; the query string is dropped.",
    ),
    Column("calls", BigInteger, comment="API calls logged (deleted rows left out)."),
    Column("errors", BigInteger, comment="Calls whose result code is not 0200000."),
    Column("error_rate", Numeric, comment="errors / calls, 0..1, four decimals."),
    Column(
        "result_codes",
        JSONB,
        comment='Calls per result code, e.g. {"0200000": 120, "02000001": 3} (mart.map_isales_result_code; \'none\' when the log had no code).',
    ),
    schema="mart",
    comment="Huawei CC-iSales open-API calls per day, VDN and endpoint: volume, errors and result codes.",
)
Index("ix_api_usage_daily_day", api_usage_daily.c.day)
# "Customers who called through both sources" reads this index alone, not every customer.
Index(
    "ix_customers_both_sources",
    customers.c.customer_key,
    postgresql_where=text("sources @> ARRAY['crm'::text, 'trtc'::text]"),
)

customer_day = Table(
    "customer_day",
    metadata,
    Column("day", Date, primary_key=True, comment="Reporting day (mart.settings reporting_timezone)."),
    Column(
        "subject",
        Text,
        primary_key=True,
        comment="The customer as core.customer_key.subject (a normalized number or 'app:<user id>').",
    ),
    Column(
        "calls",
        BigInteger,
        nullable=False,
        comment="The customer's calls that day, all sources (not deleted).",
    ),
    Column("crm_calls", BigInteger, nullable=False, comment="Of which CRM calls."),
    Column("trtc_calls", BigInteger, nullable=False, comment="Of which TRTC calls (as the caller)."),
    tstz("first_call_at", "The customer's first call that day.", nullable=False),
    tstz("last_call_at", "The customer's last call that day.", nullable=False),
    schema="core",
    comment="Per reporting day and customer, their calls: written with the day's KPI rows (mart/<table> "
    "assets) and summed into mart.customers for the customers of the days written.",
)
Index("ix_customer_day_subject", customer_day.c.subject)

mart_state = Table(
    "mart_state",
    metadata,
    Column("name", Text, primary_key=True, comment="What is remembered (a watermark, a fingerprint)."),
    Column("value", Text, nullable=False, comment="Its value, as text."),
    tstz("updated_at", "When the pipeline last wrote it.", nullable=False),
    schema="core",
    comment="What the mart's hourly assets remember between runs: the facts' load watermarks they read "
    "from, the fingerprint of the PII key the customer keys were made under (never the key) and the "
    "hash of each applied view file.",
)
