-- mart.customers, the rows of the customers in pg_temp.mart_touched (subjects), from
-- core.customer_day: a customer is keyed (core.customer_key) before they show.
SELECT k.customer_key,
       k.last4 AS customer_last4,
       sum(d.calls)::bigint AS calls,
       sum(d.crm_calls)::bigint AS crm_calls,
       sum(d.trtc_calls)::bigint AS trtc_calls,
       array_remove(ARRAY[CASE WHEN sum(d.crm_calls) > 0 THEN 'crm' END,
                          CASE WHEN sum(d.trtc_calls) > 0 THEN 'trtc' END], NULL) AS sources,
       min(d.first_call_at) AS first_call_at,
       max(d.last_call_at) AS last_call_at
FROM core.customer_day d
JOIN core.customer_key k ON k.subject = d.subject
WHERE d.subject IN (SELECT subject FROM pg_temp.mart_touched)
GROUP BY k.customer_key, k.last4
