"""The columns of the mart views as the Dagster UI shows them: name, type and the same text
as the view's ``COMMENT ON COLUMN`` (migrations 0011 and 0013; tests/test_mart.py keeps the two
equal).
"""

from dagster import TableColumn, TableSchema

VIEWS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "agent_daily": (
        "Calls per day and agent (calls with a known agent: the CRM's).",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
            ),
            ("source", "text", "crm or trtc (mart.calls.source)."),
            ("agent", "text", "The agent's display name (mart.calls.agent)."),
            ("calls", "bigint", "Calls that their source still returns (mart.calls with is_deleted false)."),
            ("answered", "bigint", "Calls answered (answered_at set: outcome answered or interrupted)."),
            ("answer_rate", "numeric", "answered / calls, 0..1, four decimals."),
            ("talk_s", "bigint", "Total talk time of answered calls, seconds."),
            ("avg_duration_s", "numeric", "Average talk time of answered calls, seconds, one decimal."),
            ("avg_ring_s", "numeric", "Average ring time, seconds, one decimal."),
        ],
    ),
    "api_usage_daily": (
        "Huawei CC-iSales open-API calls per day, VDN and endpoint: volume, errors and result codes.",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai). Of operTime.",
            ),
            ("vdn_id", "integer", "Virtual call center (VDN)."),
            (
                "url_pattern",
                "text",
                "The endpoint: the URL path with the VDN as {vdnId} and other ids as {id}; the query string is dropped.",
            ),
            ("calls", "bigint", "API calls logged (deleted rows left out)."),
            ("errors", "bigint", "Calls whose result code is not 0200000."),
            ("error_rate", "numeric", "errors / calls, 0..1, four decimals."),
            (
                "result_codes",
                "jsonb",
                'Calls per result code, e.g. {"0200000": 120, "02000001": 3} (mart.map_isales_result_code; \'none\' when the log had no code).',
            ),
        ],
    ),
    "call_daily": (
        "Calls per day, source and direction: volume, answer rate, talk time and ring time.",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
            ),
            ("source", "text", "crm or trtc (mart.calls.source)."),
            ("direction", "text", "mart.calls.direction."),
            ("calls", "bigint", "Calls that their source still returns (mart.calls with is_deleted false)."),
            ("answered", "bigint", "Calls answered (answered_at set: outcome answered or interrupted)."),
            ("answer_rate", "numeric", "answered / calls, 0..1, four decimals."),
            ("avg_duration_s", "numeric", "Average talk time of answered calls, seconds, one decimal."),
            (
                "p50_duration_s",
                "numeric",
                "Median talk time of answered calls, seconds (interpolated), one decimal.",
            ),
            (
                "p90_duration_s",
                "numeric",
                "90th percentile of talk time of answered calls, seconds (interpolated), one decimal.",
            ),
            ("avg_ring_s", "numeric", "Average ring time of the calls that have one, seconds, one decimal."),
        ],
    ),
    "call_hourly": (
        "Calls per hour of the day (reporting zone), source and direction: the load curve.",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
            ),
            ("hour", "integer", "Hour of the day in the reporting zone, 0..23."),
            ("source", "text", "crm or trtc (mart.calls.source)."),
            ("direction", "text", "mart.calls.direction."),
            ("calls", "bigint", "Calls that their source still returns (mart.calls with is_deleted false)."),
            ("answered", "bigint", "Calls answered (answered_at set: outcome answered or interrupted)."),
            ("answer_rate", "numeric", "answered / calls, 0..1, four decimals."),
        ],
    ),
    "calls": (
        "One row per call across the call sources (CRM phone calls, TRTC in-app calls), with unified direction and outcome (see the mart.map_* tables). Times are timestamptz. Includes calls the source no longer returns (is_deleted); the KPI views leave those out.",
        [
            (
                "source",
                "text",
                "Where the call comes from: crm (Udesk CRM) or trtc (Tencent TRTC in-app calls).",
            ),
            (
                "source_call_id",
                "text",
                "The call's id in its source (CRM call log id, TRTC callId); unique with source.",
            ),
            (
                "started_at",
                "timestamp with time zone",
                "When the call was placed (CRM createTime, TRTC startCallTs).",
            ),
            (
                "answered_at",
                "timestamp with time zone",
                "When it was answered; NULL when it was not. CRM: started_at + ring_s (derived).",
            ),
            (
                "ended_at",
                "timestamp with time zone",
                "When it ended. CRM: started_at + ring_s + duration_s (derived); TRTC: endTs.",
            ),
            ("duration_s", "integer", "Talk time in seconds; 0 when the call was not answered."),
            (
                "ring_s",
                "integer",
                "Seconds from placing the call to the answer (or to giving up when unanswered); NULL when unknown.",
            ),
            (
                "direction",
                "text",
                "inbound, outbound, auto_outbound (CRM, mart.map_crm_direction) or in_app (TRTC, mart.map_trtc_direction); NULL for a code no mapping lists.",
            ),
            (
                "outcome",
                "text",
                "answered, interrupted, no_answer_customer, no_answer_agent, rejected, cancelled, busy or other (mart.map_outcome; per source mart.map_crm_outcome, mart.map_trtc_outcome).",
            ),
            ("agent", "text", "The agent's display name (CRM agentName); NULL when unknown and for TRTC."),
            (
                "hangup_side",
                "text",
                "Who hung up: customer or agent (CRM, mart.map_crm_hangup_side); NULL otherwise.",
            ),
            (
                "hangup_cause",
                "text",
                "Why an outbound call failed, the CRM hangup-reason name (e.g. 关机, 空号); NULL when none or when the reason id is not in the CRM's list.",
            ),
            (
                "recordings",
                "integer",
                "Number of recordings the CRM lists for the call (0 also when not yet fetched); NULL for TRTC.",
            ),
            (
                "customer_key",
                "text",
                "The customer, pseudonymous: a keyed hash (HMAC) of the normalized phone number, the same across sources. TRTC: the caller; an app user id mapped to a phone number by the operator's identity file gets that number's key, another app user id its own key. NULL until the pipeline has keyed a new customer.",
            ),
            (
                "customer_last4",
                "text",
                "Last four digits of the customer's phone number; NULL for an app user without a known number.",
            ),
            (
                "is_deleted",
                "boolean",
                "The source no longer returns the call (a complete pull of its window did not list it); the row is kept, KPI views leave it out.",
            ),
        ],
    ),
    "customers": (
        "One row per pseudonymous customer (customer_key) with their calls across sources: count and join customers without any phone number.",
        [
            ("customer_key", "text", "mart.calls.customer_key."),
            (
                "customer_last4",
                "text",
                "Last four digits of the customer's number; NULL for an app user without one.",
            ),
            ("calls", "bigint", "The customer's calls, all sources (not deleted)."),
            ("crm_calls", "bigint", "Of which CRM calls."),
            ("trtc_calls", "bigint", "Of which TRTC calls (as the caller)."),
            ("sources", "text[]", "The sources the customer called through, sorted (e.g. {crm,trtc})."),
            ("first_call_at", "timestamp with time zone", "The customer's first call."),
            ("last_call_at", "timestamp with time zone", "The customer's last call."),
        ],
    ),
    "hangup_cause_daily": (
        "Calls per day, source, outcome, hangup side and hangup cause: why calls fail.",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
            ),
            ("source", "text", "crm or trtc (mart.calls.source)."),
            ("outcome", "text", "mart.calls.outcome."),
            ("hangup_side", "text", "mart.calls.hangup_side."),
            ("hangup_cause", "text", "mart.calls.hangup_cause."),
            ("calls", "bigint", "Calls that their source still returns (mart.calls with is_deleted false)."),
        ],
    ),
    "push_deliveries": (
        "One row per webhook (push) delivery, without its URL, parameters or answer (they carry customer numbers): for percentiles and filters over any period.",
        [
            ("enterprise_id", "bigint", "Call-center (enterprise) id."),
            ("push_id", "bigint", "Push log id; unique with enterprise_id."),
            ("logged_at", "timestamp with time zone", "When the push was logged (CreateTime)."),
            ("push_type", "integer", "Push type code (1..29, mart.map_push_type)."),
            ("push_type_name_en", "text", "The type's name in English (mart.map_push_type.name_en)."),
            ("succeeded", "boolean", "The push succeeded (Result 1)."),
            ("status_code", "integer", "HTTP status the receiver answered (0: no answer)."),
            ("latency_ms", "bigint", "Delivery latency (EndTime - StartTime), milliseconds."),
            ("retries", "integer", "Retries the push needed."),
            (
                "is_deleted",
                "boolean",
                "The vendor no longer returns this log (a complete pull of its month did not list it); push_delivery_daily leaves such rows out.",
            ),
        ],
    ),
    "push_delivery_daily": (
        "Webhook (push) deliveries of the call center per day and push type: success and latency (Alibaba Cloud VMS push logs; deleted rows left out).",
        [
            (
                "day",
                "date",
                "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai). Of the push's CreateTime.",
            ),
            ("push_type", "integer", "Push type code (1..29, mart.map_push_type)."),
            ("push_type_name", "text", "The type's documented name, Chinese (mart.map_push_type.name)."),
            ("push_type_name_en", "text", "The type's name in English (mart.map_push_type.name_en)."),
            ("deliveries", "bigint", "Pushes logged."),
            ("succeeded", "bigint", "Pushes with Result 1 (success)."),
            ("success_rate", "numeric", "succeeded / deliveries, 0..1, four decimals."),
            (
                "latency_p50_ms",
                "numeric",
                "Median delivery latency (EndTime - StartTime), milliseconds (interpolated), one decimal.",
            ),
            (
                "latency_p95_ms",
                "numeric",
                "95th percentile of delivery latency, milliseconds (interpolated), one decimal.",
            ),
            ("retries", "bigint", "Retries spent (sum of the pushes' Retry counts)."),
        ],
    ),
}


def schema(view: str) -> TableSchema:
    """The column schema of ``mart.<view>``."""
    return TableSchema(
        columns=[TableColumn(name, type=kind, description=text) for name, kind, text in VIEWS[view][1]]
    )


def description(view: str) -> str:
    return VIEWS[view][0]
