-- mart.push_deliveries: one row per webhook delivery, without URL, parameters or answer.
-- Applied by the mart/push_deliveries asset when this file changes.

CREATE OR REPLACE VIEW mart.push_deliveries AS
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
LEFT JOIN mart.map_push_type m ON m.push_type = p.type;

COMMENT ON VIEW mart.push_deliveries IS
  'One row per webhook (push) delivery, without its URL, parameters or answer (they carry customer numbers): for percentiles and filters over any period.';
COMMENT ON COLUMN mart.push_deliveries.enterprise_id IS
  'Call-center (enterprise) id.';
COMMENT ON COLUMN mart.push_deliveries.push_id IS
  'Push log id; unique with enterprise_id.';
COMMENT ON COLUMN mart.push_deliveries.logged_at IS
  'When the push was logged (CreateTime).';
COMMENT ON COLUMN mart.push_deliveries.push_type IS
  'Push type code (1..29, mart.map_push_type).';
COMMENT ON COLUMN mart.push_deliveries.push_type_name_en IS
  'The type''s name in English (mart.map_push_type.name_en).';
COMMENT ON COLUMN mart.push_deliveries.succeeded IS
  'The push succeeded (Result 1).';
COMMENT ON COLUMN mart.push_deliveries.status_code IS
  'HTTP status the receiver answered (0: no answer).';
COMMENT ON COLUMN mart.push_deliveries.latency_ms IS
  'Delivery latency (EndTime - StartTime), milliseconds.';
COMMENT ON COLUMN mart.push_deliveries.retries IS
  'Retries the push needed.';
COMMENT ON COLUMN mart.push_deliveries.is_deleted IS
  'The vendor no longer returns this log (a complete pull of its month did not list it); push_delivery_daily leaves such rows out.';
