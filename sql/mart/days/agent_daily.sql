-- mart.agent_daily, one reporting day: %(day)s, the calls started in [%(lo)s, %(hi)s).
SELECT %(day)s::date AS day,
       c.source,
       c.agent,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       coalesce(sum(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 0) AS talk_s,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted AND c.agent IS NOT NULL AND c.started_at >= %(lo)s AND c.started_at < %(hi)s
GROUP BY c.source, c.agent
