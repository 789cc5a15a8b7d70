-- mart.hangup_cause_daily, one reporting day: %(day)s, the calls started in [%(lo)s, %(hi)s).
SELECT %(day)s::date AS day,
       c.source,
       c.outcome,
       c.hangup_side,
       c.hangup_cause,
       count(*) AS calls
FROM mart.calls c
WHERE NOT c.is_deleted AND c.started_at >= %(lo)s AND c.started_at < %(hi)s
GROUP BY c.source, c.outcome, c.hangup_side, c.hangup_cause
