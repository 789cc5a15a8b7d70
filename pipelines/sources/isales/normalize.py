"""How iSales records become typed rows: SQL over ``_stage_records (record_key, rec)``.

The records do not name their VDN: each load passes it as ``%(vdn_id)s``, and it is part of
the raw key (``<vdnId>:<id>``) and of the core key, so two VDNs' logs never collide.

Call logs: ``request`` is JSON inside a string; it is parsed into jsonb, and the string is
kept in ``request_raw`` only when it does not parse (the log cuts bodies off now and then).
``operTime`` carries an offset and is stored at that offset; a naive value is read in
ISALES_TIMEZONE (``%(tz)s``). ``resultCode`` stays text: ``0200000`` and ``02000001`` need
their leading zero. An unreadable id or operTime, or a non-integer httpStatus, rejects the
record (raw.rejects names the field) rather than nulling it silently.
"""

from __future__ import annotations

from pipelines.loader import CoreTarget, SourceSpec

# finish() prunes (call logs) or marks gone (file servers) within the loaded VDN only.
_ONE_VDN = "vdn_id = %(vdn_id)s"

API_CALL_COLUMNS = (
    "vdn_id",
    "id",
    "oper_time",
    "type",
    "url",
    "request",
    "request_raw",
    "http_status",
    "result_code",
    "result_desc",
)

API_CALLS = SourceSpec(
    raw_table="raw.isales_api_call",
    records_path=("result",),
    key_sql="%(vdn_id)s::text || ':' || NULLIF(rec->>'id', '')",
    targets=(
        CoreTarget(
            table="core.fact_isales_api_call",
            key=("vdn_id", "id"),
            columns=API_CALL_COLUMNS,
            select_sql="""
SELECT %(vdn_id)s::integer AS vdn_id,
       rec->>'id' AS id,
       t.oper_time,
       rec->>'type' AS type,
       rec->>'url' AS url,
       -- a string is parsed; an object (schema drift) is already JSON; null stays null
       CASE WHEN jsonb_typeof(rec->'request') = 'string' THEN p.parsed
            WHEN jsonb_typeof(rec->'request') <> 'null' THEN rec->'request' END AS request,
       CASE WHEN jsonb_typeof(rec->'request') = 'string' AND p.parsed IS NULL
            THEN rec->>'request' END AS request_raw,
       core.try_int(rec->'httpStatus') AS http_status,
       rec->>'resultCode' AS result_code,
       rec->>'resultDesc' AS result_desc,
       s.record_key AS _record_key,
       NULLIF(concat_ws('; ',
         CASE WHEN NULLIF(rec->>'id', '') IS NULL THEN 'id missing' END,
         CASE WHEN t.oper_time IS NULL THEN 'operTime missing or malformed' END,
         CASE WHEN core.is_bad(rec->'httpStatus', core.try_int(rec->'httpStatus'))
              THEN 'httpStatus is not an integer' END), '') AS _reject
FROM _stage_records s
CROSS JOIN LATERAL (SELECT core.try_iso_timestamp(s.rec->'operTime', %(tz)s) AS oper_time) t
CROSS JOIN LATERAL (
  SELECT CASE WHEN jsonb_typeof(s.rec->'request') = 'string'
              THEN core.try_jsonb(s.rec->>'request') END AS parsed
) p""",
            time_column="oper_time",
            scope_sql=_ONE_VDN,
        ),
    ),
)

FILE_SERVER_COLUMNS = ("vdn_id", "server_id", "ip", "port", "file_path", "user_name")

FILE_SERVERS = SourceSpec(
    raw_table="raw.isales_file_server",
    records_path=("server",),
    key_sql="%(vdn_id)s::text || ':' || NULLIF(rec->>'serverId', '')",
    targets=(
        CoreTarget(
            table="core.dim_isales_file_server",
            key=("vdn_id", "server_id"),
            columns=FILE_SERVER_COLUMNS,
            # ->> keeps a port sent as a number (drift) as its text.
            select_sql="""
SELECT %(vdn_id)s::integer AS vdn_id,
       rec->>'serverId' AS server_id,
       rec->>'ip' AS ip,
       rec->>'port' AS port,
       rec->>'filePath' AS file_path,
       rec->>'userName' AS user_name,
       s.record_key AS _record_key,
       CASE WHEN NULLIF(rec->>'serverId', '') IS NULL THEN 'serverId missing' END AS _reject
FROM _stage_records s""",
            on_missing="mark_gone",
            scope_sql=_ONE_VDN,
        ),
    ),
)
