-- mart.push_delivery_daily, one reporting day: %(day)s, the pushes created in [%(lo)s, %(hi)s).
SELECT %(day)s::date AS day,
       p.type AS push_type,
       m.name AS push_type_name,
       m.name_en AS push_type_name_en,
       count(*) AS deliveries,
       count(*) FILTER (WHERE p.result = 1) AS succeeded,
       round(count(*) FILTER (WHERE p.result = 1)::numeric / count(*), 4) AS success_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms))::numeric, 1) AS latency_p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms))::numeric, 1) AS latency_p95_ms,
       coalesce(sum(p.retry) FILTER (WHERE p.retry > 0), 0) AS retries
FROM core.fact_push_log p
LEFT JOIN mart.map_push_type m ON m.push_type = p.type
WHERE p._gone_at IS NULL AND p.create_time >= %(lo)s AND p.create_time < %(hi)s
GROUP BY 2, 3, 4
