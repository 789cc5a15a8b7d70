-- mart.call_daily, one reporting day: %(day)s, the calls started in [%(lo)s, %(hi)s).
SELECT %(day)s::date AS day,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY c.duration_s)
              FILTER (WHERE c.answered_at IS NOT NULL))::numeric, 1) AS p50_duration_s,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY c.duration_s)
              FILTER (WHERE c.answered_at IS NOT NULL))::numeric, 1) AS p90_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted AND c.started_at >= %(lo)s AND c.started_at < %(hi)s
GROUP BY c.source, c.direction
