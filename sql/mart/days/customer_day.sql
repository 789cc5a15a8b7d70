-- core.customer_day, one reporting day: %(day)s, each customer's calls started in [%(lo)s, %(hi)s).
-- The subjects are mart.calls' (core.customer_key.subject): the CRM number, normalized; the
-- TRTC caller through the identity map (core.app_user_subject).
SELECT %(day)s::date AS day,
       s.subject,
       count(*) AS calls,
       count(*) FILTER (WHERE s.source = 'crm') AS crm_calls,
       count(*) FILTER (WHERE s.source = 'trtc') AS trtc_calls,
       min(s.started_at) AS first_call_at,
       max(s.started_at) AS last_call_at
FROM (
  SELECT 'crm' AS source, c.created_at AS started_at, core.normalize_phone(c.customer_number) AS subject
  FROM core.fact_crm_call c
  WHERE c._gone_at IS NULL AND c.created_at >= %(lo)s AND c.created_at < %(hi)s
  UNION ALL
  SELECT 'trtc', t.started_at, core.app_user_subject(t.caller, ci.phone_number)
  FROM core.fact_trtc_call t
  LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
  WHERE t._gone_at IS NULL AND t.started_at >= %(lo)s AND t.started_at < %(hi)s
) s
WHERE s.subject IS NOT NULL
GROUP BY s.subject
