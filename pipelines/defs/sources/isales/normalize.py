"""How iSales records become typed rows: the fields of each endpoint's records (pipelines/lib/typed_select.py).

The records do not name their VDN: each load passes it as ``%(vdn_id)s``, and it is part of
the raw key (``<vdnId>:<id>``) and of the core key, so two VDNs' logs never collide.

Call logs: ``request`` is JSON inside a string; it is decoded into jsonb (like the push logs'
fields: however many times it was escaped), and the string is kept in ``request_raw`` only
when it never decodes to an object or array (the log cuts bodies off now and then).
``operTime`` carries an offset and is stored at that offset; a naive value is read in
ISALES_TIMEZONE (``%(tz)s``). ``resultCode`` stays text: ``0200000`` and ``02000001`` need
their leading zero. An unreadable id or operTime, or a non-integer httpStatus, rejects the
record (raw.rejects names the field) rather than nulling it silently.
"""

from __future__ import annotations

from models import isales as models
from pipelines.lib.loading import SourceSpec
from pipelines.lib.schema import core_target
from pipelines.lib.typed_select import Field, Param

# finish() prunes (call logs) or marks gone (file servers) within the loaded VDN only.
_ONE_VDN = "vdn_id = %(vdn_id)s"

API_CALL_FIELDS = (
    Param("vdn_id", "vdn_id", "integer"),
    Field("id", "id", required=True),
    Field("oper_time", "operTime", "iso_ts", required=True),
    Field("type", "type"),
    Field("url", "url"),
    Field("request", "request", "json_text", raw_column="request_raw"),
    Field("http_status", "httpStatus", "int"),
    Field("result_code", "resultCode"),
    Field("result_desc", "resultDesc"),
)

API_CALLS = SourceSpec(
    raw_table="raw.isales_api_call",
    records_path=("result",),
    key_sql="%(vdn_id)s::text || ':' || NULLIF(rec->>'id', '')",
    targets=(
        core_target(
            models.fact_isales_api_call, API_CALL_FIELDS, time_column="oper_time", scope_sql=_ONE_VDN
        ),
    ),
)

# port stays text: a port sent as a number (drift) is kept as its text.
FILE_SERVER_FIELDS = (
    Param("vdn_id", "vdn_id", "integer"),
    Field("server_id", "serverId", required=True),
    Field("ip", "ip"),
    Field("port", "port"),
    Field("file_path", "filePath"),
    Field("user_name", "userName"),
)

FILE_SERVERS = SourceSpec(
    raw_table="raw.isales_file_server",
    records_path=("server",),
    key_sql="%(vdn_id)s::text || ':' || NULLIF(rec->>'serverId', '')",
    targets=(
        core_target(
            models.dim_isales_file_server, FILE_SERVER_FIELDS, on_missing="mark_gone", scope_sql=_ONE_VDN
        ),
    ),
)
