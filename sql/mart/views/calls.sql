-- mart.calls: one row per call, CRM and TRTC. Applied by the mart/calls asset when this file
-- changes (CREATE OR REPLACE VIEW: columns may be added at the end, not changed or dropped).

CREATE OR REPLACE VIEW mart.calls AS
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
            WHEN o.outcome IN ('cancelled', 'rejected', 'busy', 'no_answer_agent', 'no_answer_customer')
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
  ON k.subject = coalesce(core.normalize_phone(ci.phone_number), core.normalize_phone(t.caller), 'app:' || t.caller);

COMMENT ON VIEW mart.calls IS
  'One row per call across the call sources (CRM phone calls, TRTC in-app calls), with unified direction and outcome (see the mart.map_* tables). Times are timestamptz. Includes calls the source no longer returns (is_deleted); the KPI views leave those out.';
COMMENT ON COLUMN mart.calls.source IS
  'Where the call comes from: crm (Udesk CRM) or trtc (Tencent TRTC in-app calls).';
COMMENT ON COLUMN mart.calls.source_call_id IS
  'The call''s id in its source (CRM call log id, TRTC callId); unique with source.';
COMMENT ON COLUMN mart.calls.started_at IS
  'When the call was placed (CRM createTime, TRTC startCallTs).';
COMMENT ON COLUMN mart.calls.answered_at IS
  'When it was answered; NULL when it was not. CRM: started_at + ring_s (derived).';
COMMENT ON COLUMN mart.calls.ended_at IS
  'When it ended. CRM: started_at + ring_s + duration_s (derived); TRTC: endTs.';
COMMENT ON COLUMN mart.calls.duration_s IS
  'Talk time in seconds; 0 when the call was not answered.';
COMMENT ON COLUMN mart.calls.ring_s IS
  'Seconds from placing the call to the answer (or to giving up when unanswered); NULL when unknown.';
COMMENT ON COLUMN mart.calls.direction IS
  'inbound, outbound, auto_outbound (CRM, mart.map_crm_direction) or in_app (TRTC, mart.map_trtc_direction); NULL for a code no mapping lists.';
COMMENT ON COLUMN mart.calls.outcome IS
  'answered, interrupted, no_answer_customer, no_answer_agent, rejected, cancelled, busy or other (mart.map_outcome; per source mart.map_crm_outcome, mart.map_trtc_outcome).';
COMMENT ON COLUMN mart.calls.agent IS
  'The agent''s display name (CRM agentName); NULL when unknown and for TRTC.';
COMMENT ON COLUMN mart.calls.hangup_side IS
  'Who hung up: customer or agent (CRM, mart.map_crm_hangup_side); NULL otherwise.';
COMMENT ON COLUMN mart.calls.hangup_cause IS
  'Why an outbound call failed, the CRM hangup-reason name (e.g. 关机, 空号); NULL when none or when the reason id is not in the CRM''s list.';
COMMENT ON COLUMN mart.calls.recordings IS
  'Number of recordings the CRM lists for the call (0 also when not yet fetched); NULL for TRTC.';
COMMENT ON COLUMN mart.calls.customer_key IS
  'The customer, pseudonymous: a keyed hash (HMAC) of the normalized phone number, the same across sources. TRTC: the caller; an app user id mapped to a phone number by the operator''s identity file gets that number''s key, another app user id its own key. NULL until the pipeline has keyed a new customer.';
COMMENT ON COLUMN mart.calls.customer_last4 IS
  'Last four digits of the customer''s phone number; NULL for an app user without a known number.';
COMMENT ON COLUMN mart.calls.is_deleted IS
  'The source no longer returns the call (a complete pull of its window did not list it); the row is kept, KPI views leave it out.';
