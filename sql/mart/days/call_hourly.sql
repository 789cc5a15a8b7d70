-- mart.call_hourly, one reporting day: %(day)s, the calls started in [%(lo)s, %(hi)s); hours in %(tz)s.
SELECT %(day)s::date AS day,
       extract(hour FROM c.started_at AT TIME ZONE %(tz)s)::integer AS hour,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate
FROM mart.calls c
WHERE NOT c.is_deleted AND c.started_at >= %(lo)s AND c.started_at < %(hi)s
GROUP BY 2, 3, 4
