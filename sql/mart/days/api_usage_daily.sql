-- mart.api_usage_daily, one reporting day: %(day)s, the API calls of [%(lo)s, %(hi)s).
-- Path only (a query string can carry anything), the VDN segment named, and every other
-- segment that is a number or holds five digits or more replaced: no id, no phone number.
WITH a AS (
  SELECT a.vdn_id,
         regexp_replace(
           regexp_replace(split_part(split_part(coalesce(a.url, ''), '?', 1), '#', 1),
                          '/campaigns/[0-9]+', '/campaigns/{vdnId}'),
           '/(?:[0-9]+|[^/]*(?:[0-9][^/]*){5,})(?=/|$)', '/{id}', 'g') AS url_pattern,
         coalesce(a.result_code, 'none') AS result_code
  FROM core.fact_isales_api_call a
  WHERE a._gone_at IS NULL AND a.oper_time >= %(lo)s AND a.oper_time < %(hi)s
), codes AS (
  SELECT vdn_id, url_pattern, result_code, count(*) AS n FROM a GROUP BY 1, 2, 3
)
SELECT %(day)s::date AS day,
       c.vdn_id,
       c.url_pattern,
       sum(c.n)::bigint AS calls,
       coalesce(sum(c.n) FILTER (WHERE c.result_code <> '0200000'), 0)::bigint AS errors,
       round(coalesce(sum(c.n) FILTER (WHERE c.result_code <> '0200000'), 0) / sum(c.n), 4) AS error_rate,
       jsonb_object_agg(c.result_code, c.n) AS result_codes
FROM codes c
GROUP BY c.vdn_id, c.url_pattern
