"""The analysts' warehouse (issue 13): roles ``analyst`` and ``loader``, the ``mart`` code
mappings, views and settings, and the two ``core`` tables behind pseudonymous customers.

- Roles are cluster-wide and every test database runs this migration, so they are created
  only if absent (and a concurrent creation elsewhere is not an error). Both are NOLOGIN: a
  person's login is granted ``analyst``; the pipeline's login is ``loader`` or a superuser.
  Downgrade leaves the roles (other databases of the server may use them).
- ``loader`` owns the schemas ``raw``, ``core``, ``mart`` and everything in them; ``analyst``
  has USAGE on ``mart`` and SELECT on its tables and views, nothing on ``raw`` or ``core``.
  The views read ``core`` with their owner's rights (``loader``), so analysts see only what
  a view exposes.
- ``mart.calls`` and the KPI views are plain views: always as current as ``core``, nothing
  to refresh; the planner drops the joins a query does not use (every lookup join is on a
  unique key), so the daily views aggregate ``core`` directly. ``customer_key`` comes from
  ``core.customer_key``, which only the pipeline can fill (the key is never in the warehouse).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("raw", "core", "mart")

# ------------------------------------------------------------------------------------------
# functions (core: analysts cannot call them directly; the views use them)

FUNCTIONS = {
    # One form for '+86 138 1234 5678', '0086-13812345678', '8613812345678', '13812345678' and
    # '013812345678' ('+8613812345678'); landlines with their trunk 0 or after +86 ('+86' and
    # the number without the 0). Anything else (an app user id, a short code) is not a number.
    "core.normalize_phone(v text)": (
        # One expression, no FROM, so the planner inlines it: as a function with a FROM clause it
        # cost 30 us a call against 7 us inlined (200k CRM numbers), and core/customer_key over
        # 3M fact rows took 427 s instead of 16-44 s.
        r"""
        RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT '+86' || coalesce(
          substring(regexp_replace(v, '[[:space:]().-]', '', 'g') FROM '^(?:\+86|0086|86)?0?(1[3-9][0-9]{9})$'),
          substring(regexp_replace(v, '[[:space:]().-]', '', 'g') FROM '^0([1-9][0-9]{8,10})$'),
          substring(regexp_replace(v, '[[:space:]().-]', '', 'g') FROM '^(?:\+86|0086)([2-9][0-9]{8,10})$')) $$""",
        "A phone number in one form ('+8613812345678'); NULL when the text is not a Chinese mobile or "
        "landline number.",
    ),
    "core.app_user_subject(user_id text, mapped_phone text)": (
        r"""
        RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN user_id IS NOT NULL THEN
                 coalesce(core.normalize_phone(mapped_phone), core.normalize_phone(user_id), 'app:' || user_id)
               END $$""",
        "The core.customer_key subject of an app user: its mapped phone number (core.customer_identity), "
        "else the id itself when it is a phone number, else 'app:<id>'.",
    ),
}

# ------------------------------------------------------------------------------------------
# mapping data

CRM_DIRECTION = [
    (1, "inbound", "1 呼入: the customer called the call center."),
    (2, "outbound", "2 外呼: an agent dialled the customer."),
    (
        3,
        "auto_outbound",
        "3 自动外呼: the system dialled the customer (a campaign), then an agent took over.",
    ),
]
CRM_OUTCOME = [
    (1, "answered", "1 客户接听: the customer answered (outbound)."),
    (2, "no_answer_customer", "2 客户未接: the customer did not answer (outbound)."),
    (3, "no_answer_agent", "3 座席未接: no agent answered (inbound)."),
    (4, "rejected", "4 座席拒接: the agent rejected the call (inbound)."),
    (5, "answered", "5 座席接听: an agent answered (inbound)."),
]
CRM_HANGUP_SIDE = [
    (1, "customer", "1: the customer hung up first."),
    (2, "agent", "2: the agent hung up first."),
]
TRTC_DIRECTION = [
    ("single", "in_app", "A one-to-one call placed in the app."),
    ("group", "in_app", "A group call placed in the app."),
]
TRTC_OUTCOME = [
    ("normal_end", "answered", True, "The callee answered and the call ended normally."),
    ("interrupt", "interrupted", True, "The callee answered, then the call broke off (network, app killed)."),
    ("not_answer", "no_answer_agent", False, "The callee (the answering side) did not answer in time."),
    ("reject", "rejected", False, "The callee rejected the call."),
    ("cancel", "cancelled", False, "The caller hung up before the callee answered."),
    ("call_busy", "busy", False, "The callee was busy in another call."),
    ("offline", "other", False, "Undocumented value seen in the wild: the callee was offline."),
]
OUTCOMES = [
    ("answered", True, "The call was answered and ended normally."),
    ("interrupted", True, "The call was answered, then broke off (TRTC interrupt)."),
    ("no_answer_customer", False, "The customer did not answer."),
    ("no_answer_agent", False, "The call-center side (an agent, a TRTC callee) did not answer."),
    ("rejected", False, "The called side rejected the call."),
    ("cancelled", False, "The caller hung up before an answer."),
    ("busy", False, "The called side was busy."),
    ("other", False, "Anything else, including codes no mapping table lists yet."),
]
PUSH_TYPES = [
    (1, "来电推送", "Inbound call"),
    (2, "来电响铃推送", "Inbound ringing"),
    (3, "外呼响铃推送", "Outbound ringing"),
    (4, "webcall 转座席响铃推送", "Webcall ringing at the agent"),
    (5, "来电接通推送", "Inbound answered"),
    (6, "外呼接通推送", "Outbound answered"),
    (7, "来电挂机推送", "Inbound hangup"),
    (8, "外呼挂机推送", "Outbound hangup"),
    (9, "座席状态推送", "Agent status"),
    (10, "按键推送", "Keypress (DTMF)"),
    (11, "号码状态识别推送", "Number status detection"),
    (12, "录音状态推送", "Recording status"),
    (13, "HTTP 交互推送", "HTTP interaction"),
    (14, "预测式外呼任务推送", "Predictive dialling task"),
    (15, "ASR 语音转换结果推送", "ASR transcription result"),
    (16, "webcall 客户侧响铃推送", "Webcall ringing at the customer"),
    (17, "满意度调查推送", "Satisfaction survey"),
    (18, "预测外呼客户接听状态推送", "Predictive dialling: customer answer status"),
    (19, "NLU 推送", "NLU result"),
    (20, "预测外呼双方接听推送", "Predictive dialling: both sides connected"),
    (21, "IVR 交互结束推送", "IVR interaction ended"),
    (22, "外呼客户响铃推送", "Outbound ringing at the customer"),
    (23, "webcall 客户接听推送", "Webcall answered by the customer"),
    (24, "webcall 转接响铃推送", "Webcall transfer ringing"),
    (25, "webcall 转接接通推送", "Webcall transfer answered"),
    (26, "主叫外呼分机响铃推送", "Click-to-call: extension ringing"),
    (27, "主叫外呼分机接听推送", "Click-to-call: extension answered"),
    (28, "主叫外呼客户响铃推送", "Click-to-call: customer ringing"),
    (29, "主叫外呼双方接通推送", "Click-to-call: both sides connected"),
]
ISALES_CODES = [
    ("0200000", True, "成功", "Success."),
    ("0200001", False, "参数异常,异常详情在resultDesc中描述。", "Parameter exception."),
    ("0200033", False, "外呼数据不存在。", "The outbound call data does not exist."),
    ("0200034", False, "子状态与业务结果不匹配。", "The sub-status does not match the business result."),
    ("02000001", False, "参数值为空", "The parameter value is empty."),
    ("02000002", False, "参数包含非法字符", "The parameter contains invalid characters."),
    ("02000003", False, "参数长度不能大于规定长度", "The parameter is longer than allowed."),
    ("02000004", False, "参数长度不能小于规定长度", "The parameter is shorter than allowed."),
    ("02000005", False, "参数长度需要介于规定长度之间", "The parameter length is out of range."),
    ("02000006", False, "参数值类型不正确", "The parameter type is incorrect."),
    ("02000007", False, "参数值大小不正确", "The parameter value is out of range."),
    ("02000008", False, "参数转换异常,请检查请求参数", "Parameter conversion failed."),
    ("02000009", False, "参数组合不正确,请检查请求参数", "Invalid parameter combination."),
    ("02000010", False, "hour和minute必须同时存在", "hour and minute must both be present."),
    ("02000011", False, "参数个数不能大于规定个数", "Too many parameters."),
]
SETTINGS = [
    (
        "reporting_timezone",
        "Asia/Shanghai",
        "The zone of every day and hour column of the mart views (REPORTING_TIMEZONE).",
    ),
]

# ------------------------------------------------------------------------------------------
# views: SQL, then a comment for the view and each column

TZ = "coalesce((SELECT value FROM mart.settings WHERE name = 'reporting_timezone'), 'Asia/Shanghai')"
NOT_ANSWERED_RING = "('cancelled', 'rejected', 'busy', 'no_answer_agent', 'no_answer_customer')"

VIEWS: dict[str, str] = {
    "mart.calls": f"""
SELECT 'crm'::text AS source,
       c.id::text AS source_call_id,
       c.created_at AS started_at,
       CASE WHEN mo.answered THEN c.created_at + make_interval(secs => coalesce(c.ringing_duration, 0)) END
         AS answered_at,
       CASE WHEN c.duration IS NOT NULL
            THEN c.created_at + make_interval(secs => coalesce(c.ringing_duration, 0) + c.duration) END AS ended_at,
       c.duration AS duration_s,
       c.ringing_duration AS ring_s,
       d.direction,
       coalesce(o.outcome, 'other') AS outcome,
       c.agent_name AS agent,
       h.hangup_side,
       hr.name AS hangup_cause,
       coalesce(rc.recordings, 0) AS recordings,
       k.customer_key,
       k.last4 AS customer_last4,
       c._gone_at IS NOT NULL AS is_deleted
FROM core.fact_crm_call c
LEFT JOIN mart.map_crm_direction d ON d.call_type = c.call_type
LEFT JOIN mart.map_crm_outcome o ON o.result = c.result
LEFT JOIN mart.map_outcome mo ON mo.outcome = coalesce(o.outcome, 'other')
LEFT JOIN mart.map_crm_hangup_side h ON h.drop_side = c.drop_side
LEFT JOIN core.dim_crm_hangup_reason hr ON hr.id = c.hangup_cause_id
LEFT JOIN (SELECT call_id, count(*)::integer AS recordings FROM core.fact_crm_call_recording
           WHERE _gone_at IS NULL GROUP BY call_id) rc ON rc.call_id = c.call_id
LEFT JOIN core.customer_key k ON k.subject = core.normalize_phone(c.customer_number)
UNION ALL
SELECT 'trtc'::text,
       t.call_id,
       t.started_at,
       CASE WHEN mo.answered THEN t.accepted_at END,
       t.ended_at,
       CASE WHEN mo.answered THEN greatest(0, extract(epoch FROM t.ended_at - t.accepted_at))::integer ELSE 0 END,
       CASE WHEN mo.answered THEN extract(epoch FROM t.accepted_at - t.started_at)::integer
            WHEN o.outcome IN {NOT_ANSWERED_RING}
            THEN extract(epoch FROM t.ended_at - t.started_at)::integer END,
       dir.direction,
       coalesce(o.outcome, 'other'),
       NULL::text,
       NULL::text,
       NULL::text,
       NULL::integer,
       k.customer_key,
       k.last4,
       t._gone_at IS NOT NULL
FROM core.fact_trtc_call t
LEFT JOIN mart.map_trtc_direction dir ON dir.call_type = t.call_type
LEFT JOIN mart.map_trtc_outcome o ON o.call_result = t.call_result
LEFT JOIN mart.map_outcome mo ON mo.outcome = coalesce(o.outcome, 'other')
LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
-- core.app_user_subject written out: inlining it would look up core.normalize_phone by name,
-- as the analyst, who has no USAGE on core
LEFT JOIN core.customer_key k
  ON k.subject = coalesce(core.normalize_phone(ci.phone_number), core.normalize_phone(t.caller), 'app:' || t.caller)
""",
    "mart.call_daily": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL)
         AS p50_duration_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL)
         AS p90_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted
GROUP BY 1, 2, 3
""",
    "mart.call_hourly": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       extract(hour FROM c.started_at AT TIME ZONE {TZ})::integer AS hour,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate
FROM mart.calls c
WHERE NOT c.is_deleted
GROUP BY 1, 2, 3, 4
""",
    "mart.agent_daily": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       c.source,
       c.agent,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       coalesce(sum(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 0) AS talk_s,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted AND c.agent IS NOT NULL
GROUP BY 1, 2, 3
""",
    "mart.hangup_cause_daily": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       c.source,
       c.outcome,
       c.hangup_side,
       c.hangup_cause,
       count(*) AS calls
FROM mart.calls c
WHERE NOT c.is_deleted
GROUP BY 1, 2, 3, 4, 5
""",
    "mart.customers": """
SELECT c.customer_key,
       min(c.customer_last4) AS customer_last4,
       count(*) AS calls,
       count(*) FILTER (WHERE c.source = 'crm') AS crm_calls,
       count(*) FILTER (WHERE c.source = 'trtc') AS trtc_calls,
       array_agg(DISTINCT c.source ORDER BY c.source) AS sources,
       min(c.started_at) AS first_call_at,
       max(c.started_at) AS last_call_at
FROM mart.calls c
WHERE NOT c.is_deleted AND c.customer_key IS NOT NULL
GROUP BY c.customer_key
""",
    "mart.push_delivery_daily": f"""
SELECT (p.create_time AT TIME ZONE {TZ})::date AS day,
       p.type AS push_type,
       m.name AS push_type_name,
       m.name_en AS push_type_name_en,
       count(*) AS deliveries,
       count(*) FILTER (WHERE p.result = 1) AS succeeded,
       round(count(*) FILTER (WHERE p.result = 1)::numeric / count(*), 4) AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms) AS latency_p95_ms,
       coalesce(sum(p.retry) FILTER (WHERE p.retry > 0), 0) AS retries
FROM core.fact_push_log p
LEFT JOIN mart.map_push_type m ON m.push_type = p.type
WHERE p._gone_at IS NULL
GROUP BY 1, 2, 3, 4
""",
    "mart.push_deliveries": """
SELECT p.enterprise_id,
       p.id AS push_id,
       p.create_time AS logged_at,
       p.type AS push_type,
       m.name_en AS push_type_name_en,
       p.result = 1 AS succeeded,
       p.status_code,
       p.latency_ms,
       greatest(p.retry, 0) AS retries,
       p._gone_at IS NOT NULL AS is_deleted
FROM core.fact_push_log p
LEFT JOIN mart.map_push_type m ON m.push_type = p.type
""",
    # Path only (a query string can carry anything), the VDN segment named, and every other
    # segment that is a number or holds five digits or more replaced: no id, no phone number.
    "mart.api_usage_daily": f"""
WITH a AS (
  SELECT (a.oper_time AT TIME ZONE {TZ})::date AS day,
         a.vdn_id,
         regexp_replace(
           regexp_replace(split_part(split_part(coalesce(a.url, ''), '?', 1), '#', 1),
                          '/campaigns/[0-9]+', '/campaigns/{{vdnId}}'),
           '/(?:[0-9]+|[^/]*(?:[0-9][^/]*){{5,}})(?=/|$)', '/{{id}}', 'g') AS url_pattern,
         coalesce(a.result_code, 'none') AS result_code
  FROM core.fact_isales_api_call a
  WHERE a._gone_at IS NULL
), codes AS (
  SELECT day, vdn_id, url_pattern, result_code, count(*) AS n FROM a GROUP BY 1, 2, 3, 4
)
SELECT c.day,
       c.vdn_id,
       c.url_pattern,
       sum(c.n)::bigint AS calls,
       coalesce(sum(c.n) FILTER (WHERE c.result_code <> '0200000'), 0)::bigint AS errors,
       round(coalesce(sum(c.n) FILTER (WHERE c.result_code <> '0200000'), 0) / sum(c.n), 4) AS error_rate,
       jsonb_object_agg(c.result_code, c.n) AS result_codes
FROM codes c
GROUP BY 1, 2, 3
""",
}

DAY = "Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai)."
CALLS_NOT_DELETED = "Calls that their source still returns (mart.calls with is_deleted false)."
ANSWERED = "Calls answered (answered_at set: outcome answered or interrupted)."
ANSWER_RATE = "answered / calls, 0..1, four decimals."

COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "mart.calls": (
        "One row per call across the call sources (CRM phone calls, TRTC in-app calls), with unified "
        "direction and outcome (see the mart.map_* tables). Times are timestamptz. Includes calls the "
        "source no longer returns (is_deleted); the KPI views leave those out.",
        {
            "source": "Where the call comes from: crm (Udesk CRM) or trtc (Tencent TRTC in-app calls).",
            "source_call_id": "The call's id in its source (CRM call log id, TRTC callId); unique with source.",
            "started_at": "When the call was placed (CRM createTime, TRTC startCallTs).",
            "answered_at": "When it was answered; NULL when it was not. CRM: started_at + ring_s (derived).",
            "ended_at": "When it ended. CRM: started_at + ring_s + duration_s (derived); TRTC: endTs.",
            "duration_s": "Talk time in seconds; 0 when the call was not answered.",
            "ring_s": "Seconds from placing the call to the answer (or to giving up when unanswered); "
            "NULL when unknown.",
            "direction": "inbound, outbound, auto_outbound (CRM, mart.map_crm_direction) or in_app (TRTC, "
            "mart.map_trtc_direction); NULL for a code no mapping lists.",
            "outcome": "answered, interrupted, no_answer_customer, no_answer_agent, rejected, cancelled, busy "
            "or other (mart.map_outcome; per source mart.map_crm_outcome, mart.map_trtc_outcome).",
            "agent": "The agent's display name (CRM agentName); NULL when unknown and for TRTC.",
            "hangup_side": "Who hung up: customer or agent (CRM, mart.map_crm_hangup_side); NULL otherwise.",
            "hangup_cause": "Why an outbound call failed, the CRM hangup-reason name (e.g. 关机, 空号); NULL "
            "when none or when the reason id is not in the CRM's list.",
            "recordings": "Number of recordings the CRM lists for the call (0 also when not yet fetched); "
            "NULL for TRTC.",
            "customer_key": "The customer, pseudonymous: a keyed hash (HMAC) of the normalized phone number, "
            "the same across sources. TRTC: the caller; an app user id mapped to a phone number by the "
            "operator's identity file gets that number's key, another app user id its own key. NULL until "
            "the pipeline has keyed a new customer.",
            "customer_last4": "Last four digits of the customer's phone number; NULL for an app user "
            "without a known number.",
            "is_deleted": "The source no longer returns the call (a complete pull of its window did not "
            "list it); the row is kept, KPI views leave it out.",
        },
    ),
    "mart.call_daily": (
        "Calls per day, source and direction: volume, answer rate, talk time and ring time.",
        {
            "day": DAY,
            "source": "crm or trtc (mart.calls.source).",
            "direction": "mart.calls.direction.",
            "calls": CALLS_NOT_DELETED,
            "answered": ANSWERED,
            "answer_rate": ANSWER_RATE,
            "avg_duration_s": "Average talk time of answered calls, seconds.",
            "p50_duration_s": "Median talk time of answered calls, seconds (interpolated).",
            "p90_duration_s": "90th percentile of talk time of answered calls, seconds (interpolated).",
            "avg_ring_s": "Average ring time of the calls that have one, seconds.",
        },
    ),
    "mart.call_hourly": (
        "Calls per hour of the day (reporting zone), source and direction: the load curve.",
        {
            "day": DAY,
            "hour": "Hour of the day in the reporting zone, 0..23.",
            "source": "crm or trtc (mart.calls.source).",
            "direction": "mart.calls.direction.",
            "calls": CALLS_NOT_DELETED,
            "answered": ANSWERED,
            "answer_rate": ANSWER_RATE,
        },
    ),
    "mart.agent_daily": (
        "Calls per day and agent (calls with a known agent: the CRM's).",
        {
            "day": DAY,
            "source": "crm or trtc (mart.calls.source).",
            "agent": "The agent's display name (mart.calls.agent).",
            "calls": CALLS_NOT_DELETED,
            "answered": ANSWERED,
            "answer_rate": ANSWER_RATE,
            "talk_s": "Total talk time of answered calls, seconds.",
            "avg_duration_s": "Average talk time of answered calls, seconds.",
            "avg_ring_s": "Average ring time, seconds.",
        },
    ),
    "mart.hangup_cause_daily": (
        "Calls per day, source, outcome, hangup side and hangup cause: why calls fail.",
        {
            "day": DAY,
            "source": "crm or trtc (mart.calls.source).",
            "outcome": "mart.calls.outcome.",
            "hangup_side": "mart.calls.hangup_side.",
            "hangup_cause": "mart.calls.hangup_cause.",
            "calls": CALLS_NOT_DELETED,
        },
    ),
    "mart.customers": (
        "One row per pseudonymous customer (customer_key) with their calls across sources: count and "
        "join customers without any phone number.",
        {
            "customer_key": "mart.calls.customer_key.",
            "customer_last4": "Last four digits of the customer's number; NULL for an app user without one.",
            "calls": "The customer's calls, all sources (not deleted).",
            "crm_calls": "Of which CRM calls.",
            "trtc_calls": "Of which TRTC calls (as the caller).",
            "sources": "The sources the customer called through, sorted (e.g. {crm,trtc}).",
            "first_call_at": "The customer's first call.",
            "last_call_at": "The customer's last call.",
        },
    ),
    "mart.push_delivery_daily": (
        "Webhook (push) deliveries of the call center per day and push type: success and latency "
        "(Alibaba Cloud VMS push logs; deleted rows left out).",
        {
            "day": DAY + " Of the push's CreateTime.",
            "push_type": "Push type code (1..29, mart.map_push_type).",
            "push_type_name": "The type's documented name, Chinese (mart.map_push_type.name).",
            "push_type_name_en": "The type's name in English (mart.map_push_type.name_en).",
            "deliveries": "Pushes logged.",
            "succeeded": "Pushes with Result 1 (success).",
            "success_rate": "succeeded / deliveries, 0..1, four decimals.",
            "latency_p50_ms": "Median delivery latency (EndTime - StartTime), milliseconds.",
            "latency_p95_ms": "95th percentile of delivery latency, milliseconds.",
            "retries": "Retries spent (sum of the pushes' Retry counts).",
        },
    ),
    "mart.push_deliveries": (
        "One row per webhook (push) delivery, without its URL, parameters or answer (they carry customer "
        "numbers): for percentiles and filters over any period.",
        {
            "enterprise_id": "Call-center (enterprise) id.",
            "push_id": "Push log id; unique with enterprise_id.",
            "logged_at": "When the push was logged (CreateTime).",
            "push_type": "Push type code (1..29, mart.map_push_type).",
            "push_type_name_en": "The type's name in English (mart.map_push_type.name_en).",
            "succeeded": "The push succeeded (Result 1).",
            "status_code": "HTTP status the receiver answered (0: no answer).",
            "latency_ms": "Delivery latency (EndTime - StartTime), milliseconds.",
            "retries": "Retries the push needed.",
            "is_deleted": "The vendor no longer returns this log (a complete pull of its month did not list "
            "it); push_delivery_daily leaves such rows out.",
        },
    ),
    "mart.api_usage_daily": (
        "Huawei CC-iSales open-API calls per day, VDN and endpoint: volume, errors and result codes.",
        {
            "day": DAY + " Of operTime.",
            "vdn_id": "Virtual call center (VDN).",
            "url_pattern": "The endpoint: the URL path with the VDN as {vdnId} and other ids as {id}; the "
            "query string is dropped.",
            "calls": "API calls logged (deleted rows left out).",
            "errors": "Calls whose result code is not 0200000.",
            "error_rate": "errors / calls, 0..1, four decimals.",
            "result_codes": 'Calls per result code, e.g. {"0200000": 120, "02000001": 3} '
            "(mart.map_isales_result_code; 'none' when the log had no code).",
        },
    ),
}

GRANTS_NOTE = "Analysts (role analyst) read mart only; the pipeline (role loader) owns raw, core and mart."


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _create_roles() -> None:
    for role in ("analyst", "loader"):
        op.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                BEGIN
                  CREATE ROLE {role} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                  NULL;  -- another database of this server created it just now
                END;
              END IF;
            END $$"""
        )
    op.execute("COMMENT ON ROLE analyst IS 'Reads the mart schema only (grant it to a person''s login).'")
    op.execute("COMMENT ON ROLE loader IS 'Owns and writes raw, core and mart (the pipeline).'")


def _grant() -> None:
    # loader owns the schemas and every table, view and function in them (sequences of identity
    # columns follow their table).
    op.execute(
        """
        DO $$ DECLARE r record; BEGIN
          FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspname IN ('raw', 'core', 'mart') LOOP
            EXECUTE format('ALTER SCHEMA %I OWNER TO loader', r.nspname);
          END LOOP;
          FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname IN ('raw', 'core', 'mart') AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO loader', r.rel);
          END LOOP;
          FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname IN ('raw', 'core', 'mart') LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO loader', r.fn);
          END LOOP;
          EXECUTE format('GRANT CONNECT ON DATABASE %I TO analyst, loader', current_database());
        END $$"""
    )
    for schema in ("raw", "core"):
        op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC")
    # Nothing anyone can create that a superuser's session might run (PostgreSQL 15+ already).
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    op.execute("GRANT USAGE ON SCHEMA mart TO analyst")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA mart TO analyst")
    # Objects later migrations create: whoever runs them (a superuser or loader itself).
    for grantor in ("loader", "CURRENT_USER"):
        op.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA mart GRANT SELECT ON TABLES TO analyst"
        )
        for schema in SCHEMAS:
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} GRANT ALL ON TABLES TO loader"
            )


def _revoke() -> None:
    for grantor in ("loader", "CURRENT_USER"):
        op.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA mart REVOKE SELECT ON TABLES FROM analyst"
        )
        for schema in SCHEMAS:
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} REVOKE ALL ON TABLES FROM loader"
            )
    op.execute(
        """
        DO $$ DECLARE r record; BEGIN
          FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspname IN ('raw', 'core', 'mart') LOOP
            EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, current_user);
          END LOOP;
          FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname IN ('raw', 'core', 'mart') AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO %I', r.rel, current_user);
          END LOOP;
          FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname IN ('raw', 'core', 'mart') LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO %I', r.fn, current_user);
          END LOOP;
          EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM analyst, loader', current_database());
        END $$"""
    )
    op.execute("REVOKE ALL ON SCHEMA mart FROM analyst")


def _insert_mappings() -> None:
    def rows(table: str, columns: tuple[str, ...], values: list[tuple]) -> None:
        t = sa.table(table, *(sa.column(c) for c in columns), schema="mart")
        op.bulk_insert(t, [dict(zip(columns, v, strict=True)) for v in values])

    rows("map_crm_direction", ("call_type", "direction", "description"), CRM_DIRECTION)
    rows("map_crm_outcome", ("result", "outcome", "description"), CRM_OUTCOME)
    rows("map_crm_hangup_side", ("drop_side", "hangup_side", "description"), CRM_HANGUP_SIDE)
    rows("map_trtc_direction", ("call_type", "direction", "description"), TRTC_DIRECTION)
    rows("map_trtc_outcome", ("call_result", "outcome", "answered", "description"), TRTC_OUTCOME)
    rows("map_outcome", ("outcome", "answered", "description"), OUTCOMES)
    rows("map_push_type", ("push_type", "name", "name_en"), PUSH_TYPES)
    rows("map_isales_result_code", ("result_code", "is_success", "meaning", "meaning_en"), ISALES_CODES)
    rows("settings", ("name", "value", "description"), SETTINGS)


def upgrade() -> None:
    _create_tables()
    _insert_mappings()
    for signature, (body, comment) in FUNCTIONS.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {signature} {body}")
        op.execute(f"COMMENT ON FUNCTION {signature} IS {_literal(comment)}")
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
        comment, columns = COMMENTS[name]
        op.execute(f"COMMENT ON VIEW {name} IS {_literal(comment)}")
        for column, text in columns.items():
            op.execute(f"COMMENT ON COLUMN {name}.{column} IS {_literal(text)}")
    op.execute(
        f"COMMENT ON SCHEMA mart IS {_literal('The analysts schema: views and code mappings. ' + GRANTS_NOTE)}"
    )
    _create_roles()
    _grant()


def downgrade() -> None:
    _revoke()
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for signature in reversed(list(FUNCTIONS)):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    _drop_tables()


def _create_tables() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "customer_identity",
        sa.Column("app_user_id", sa.Text(), nullable=False, comment="An app user id (TRTC userId)."),
        sa.Column(
            "phone_number",
            sa.Text(),
            nullable=False,
            comment="The user's phone number, as the file gives it.",
        ),
        sa.Column(
            "_loaded_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the pipeline last wrote this row (for a dimension: when the vendor last listed it).",
        ),
        sa.PrimaryKeyConstraint("app_user_id", name=op.f("pk_customer_identity")),
        schema="core",
        comment="Optional identity map from the operator's CSV (CUSTOMER_IDENTITY_FILE): app user id -> phone number. Replaced as a whole by each load of core/customer_identity; it lets mart.calls give an app user the same customer_key as their phone calls.",
    )
    op.create_table(
        "customer_key",
        sa.Column(
            "subject",
            sa.Text(),
            nullable=False,
            comment="What is keyed: a phone number normalized by core.normalize_phone ('+8613812345678'), or 'app:<user id>' for an app user id that is neither a number nor in core.customer_identity.",
        ),
        sa.Column(
            "customer_key",
            sa.Text(),
            nullable=False,
            comment="HMAC-SHA256 of subject under PII_HASH_KEY, first 16 bytes in URL-safe Base64 (22 characters). The key itself is never stored.",
        ),
        sa.Column(
            "last4",
            sa.Text(),
            nullable=True,
            comment="Last four digits of a phone subject; NULL for an app user id.",
        ),
        sa.Column(
            "key_id",
            sa.Text(),
            nullable=False,
            comment="Which key made customer_key (an HMAC of a fixed label under the key, 8 bytes hex): rows of another key are recomputed.",
        ),
        sa.Column(
            "_loaded_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the pipeline last wrote this row (for a dimension: when the vendor last listed it).",
        ),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_customer_key")),
        schema="core",
        comment="The pseudonym of every customer seen in the call facts, written by the core/customer_key asset (the only place the key is known). mart.calls joins it on subject.",
    )
    op.create_table(
        "map_crm_direction",
        sa.Column(
            "call_type",
            sa.SmallInteger(),
            nullable=False,
            comment="CRM callType (core.fact_crm_call.call_type).",
        ),
        sa.Column("direction", sa.Text(), nullable=False, comment="mart.calls.direction."),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("call_type", name=op.f("pk_map_crm_direction")),
        schema="mart",
        comment="CRM callType -> mart.calls.direction.",
    )
    op.create_table(
        "map_crm_hangup_side",
        sa.Column(
            "drop_side",
            sa.SmallInteger(),
            nullable=False,
            comment="CRM dropSide (core.fact_crm_call.drop_side).",
        ),
        sa.Column("hangup_side", sa.Text(), nullable=False, comment="mart.calls.hangup_side."),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("drop_side", name=op.f("pk_map_crm_hangup_side")),
        schema="mart",
        comment="CRM dropSide -> mart.calls.hangup_side (who hung up).",
    )
    op.create_table(
        "map_crm_outcome",
        sa.Column(
            "result", sa.SmallInteger(), nullable=False, comment="CRM result (core.fact_crm_call.result)."
        ),
        sa.Column("outcome", sa.Text(), nullable=False, comment="mart.calls.outcome."),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("result", name=op.f("pk_map_crm_outcome")),
        schema="mart",
        comment="CRM result -> mart.calls.outcome. A result not listed here becomes 'other'.",
    )
    op.create_table(
        "map_isales_result_code",
        sa.Column(
            "result_code",
            sa.Text(),
            nullable=False,
            comment="iSales result code, text (7 or 8 digits with a leading zero).",
        ),
        sa.Column("is_success", sa.Boolean(), nullable=False, comment="Only 0200000 is success."),
        sa.Column(
            "meaning",
            sa.Text(),
            nullable=False,
            comment="The documented meaning (seed 003, table 6), Chinese.",
        ),
        sa.Column("meaning_en", sa.Text(), nullable=False, comment="Our English translation of meaning."),
        sa.PrimaryKeyConstraint("result_code", name=op.f("pk_map_isales_result_code")),
        schema="mart",
        comment="Huawei CC-iSales result codes (mart.api_usage_daily.result_codes). A code not listed here is an error of unknown meaning.",
    )
    op.create_table(
        "map_outcome",
        sa.Column("outcome", sa.Text(), nullable=False, comment="A value of mart.calls.outcome."),
        sa.Column(
            "answered",
            sa.Boolean(),
            nullable=False,
            comment="Calls with this outcome were answered (counted in answered).",
        ),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("outcome", name=op.f("pk_map_outcome")),
        schema="mart",
        comment="The unified outcomes of mart.calls, whatever the source.",
    )
    op.create_table(
        "map_push_type",
        sa.Column(
            "push_type", sa.Integer(), nullable=False, comment="Push type code (core.fact_push_log.type)."
        ),
        sa.Column("name", sa.Text(), nullable=False, comment="The documented name (seed 001), Chinese."),
        sa.Column("name_en", sa.Text(), nullable=False, comment="Our English translation of name."),
        sa.PrimaryKeyConstraint("push_type", name=op.f("pk_map_push_type")),
        schema="mart",
        comment="Push (webhook) types of the call center, with English names (mart.push_delivery_daily).",
    )
    op.create_table(
        "map_trtc_direction",
        sa.Column(
            "call_type", sa.Text(), nullable=False, comment="TRTC callType (core.fact_trtc_call.call_type)."
        ),
        sa.Column("direction", sa.Text(), nullable=False, comment="mart.calls.direction."),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("call_type", name=op.f("pk_map_trtc_direction")),
        schema="mart",
        comment="TRTC callType -> mart.calls.direction: every TRTC call is placed in the app.",
    )
    op.create_table(
        "map_trtc_outcome",
        sa.Column(
            "call_result",
            sa.Text(),
            nullable=False,
            comment="TRTC callResult (core.fact_trtc_call.call_result).",
        ),
        sa.Column("outcome", sa.Text(), nullable=False, comment="mart.calls.outcome."),
        sa.Column(
            "answered",
            sa.Boolean(),
            nullable=False,
            comment="The callee accepted the call (answered_at is set).",
        ),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("call_result", name=op.f("pk_map_trtc_outcome")),
        schema="mart",
        comment="TRTC callResult -> mart.calls.outcome. mart.calls takes the TRTC caller as the customer, so the callee is the answering side. A value not listed here becomes 'other'.",
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.Text(), nullable=False, comment="Setting name."),
        sa.Column("value", sa.Text(), nullable=False, comment="Its value."),
        sa.Column("description", sa.Text(), nullable=False, comment="What the code means, in words."),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")),
        schema="mart",
        comment="Settings the mart views read; reporting_timezone is written from REPORTING_TIMEZONE each time the mart assets run (default Asia/Shanghai).",
    )
    # ### end Alembic commands ###


def _drop_tables() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table("settings", schema="mart")
    op.drop_table("map_trtc_outcome", schema="mart")
    op.drop_table("map_trtc_direction", schema="mart")
    op.drop_table("map_push_type", schema="mart")
    op.drop_table("map_outcome", schema="mart")
    op.drop_table("map_isales_result_code", schema="mart")
    op.drop_table("map_crm_outcome", schema="mart")
    op.drop_table("map_crm_hangup_side", schema="mart")
    op.drop_table("map_crm_direction", schema="mart")
    op.drop_table("customer_key", schema="core")
    op.drop_table("customer_identity", schema="core")
    # ### end Alembic commands ###
