"""Huawei CC-iSales open API (seeds 000 and 003): raw landing and core tables.

Every row carries the VDN (virtual call center) it was pulled from: a deployment has several
(ISALES_VDN_IDS), and the records themselves do not name it.
"""

from sqlalchemy import Column, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from models.base import gone_at, loaded_at, metadata, raw_table, tstz

raw_isales_api_call = raw_table(
    "isales_api_call",
    "Huawei CC-iSales /campaigns/{vdnId}/calllogs records (open-API call audit log), verbatim; "
    "record_key is '<vdnId>:<id>'.",
)
raw_isales_file_server = raw_table(
    "isales_file_server",
    "Huawei CC-iSales /campaigns/{vdnId}/file/queryServer records, verbatim; "
    "record_key is '<vdnId>:<serverId>'.",
)

fact_isales_api_call = Table(
    "fact_isales_api_call",
    metadata,
    Column(
        "vdn_id", Integer, primary_key=True, comment="Virtual call center (VDN, 1..9999) the log belongs to."
    ),
    Column(
        "id",
        Text,
        primary_key=True,
        comment="Log id (日志id): a 30-digit string whose first 13 digits are epoch milliseconds.",
    ),
    tstz(
        "oper_time",
        "When the API was called (operTime), stored at the offset the vendor sends. The seed's sample "
        "labels what looks like Shanghai wall time '+00:00' (its id says 8 hours earlier): if the "
        "vendor does that, these times are 8 hours late.",
        nullable=False,
    ),
    Column("type", Text, comment="HTTP method of the logged call (请求类型): GET, POST, PUT or DELETE."),
    Column("url", Text, comment="Path of the logged call (调用url)."),
    Column(
        "request",
        JSONB,
        comment="Input parameters of the logged call (输入参数), parsed from the JSON string the API "
        "sends; NULL when it does not parse (see request_raw).",
    ),
    Column(
        "request_raw",
        Text,
        comment="The request string as sent, only when it is not valid JSON (the log can cut it off).",
    ),
    Column("http_status", Integer, comment="HTTP status the logged call answered (接口调用状态码)."),
    Column(
        "result_code",
        Text,
        comment="Result code of the logged call (原因码), text: codes have 7 or 8 digits with a leading "
        "zero; 0200000 is success, others per seed 003's table.",
    ),
    Column("result_desc", Text, comment="Result description of the logged call (描述)."),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Huawei CC-iSales open-API call logs (/campaigns/{vdnId}/calllogs), one row per VDN and log id.",
)
Index("ix_fact_isales_api_call_oper_time", fact_isales_api_call.c.oper_time)

dim_isales_file_server = Table(
    "dim_isales_file_server",
    metadata,
    Column(
        "vdn_id",
        Integer,
        primary_key=True,
        comment="Virtual call center (VDN, 1..9999) the server belongs to.",
    ),
    Column("server_id", Text, primary_key=True, comment="File server id (文件服务器ID)."),
    Column("ip", Text, comment="Server address (ip); NULL for a placeholder server."),
    Column("port", Text, comment="Server port, text as the API sends it; NULL for a placeholder server."),
    Column("file_path", Text, comment="Default directory on the server (文件服务器默认路径); can be NULL."),
    Column("user_name", Text, comment="Login user name (用户名)."),
    loaded_at(),
    gone_at(),
    schema="core",
    comment="Huawei CC-iSales file servers per VDN (/campaigns/{vdnId}/file/queryServer), a daily snapshot: "
    "servers no longer listed are marked gone (_gone_at), never deleted.",
)
# The mart's hourly job finds the reporting days that loads touched since its watermark.
Index("ix_fact_isales_api_call_loaded_at", fact_isales_api_call.c._loaded_at)
Index(
    "ix_fact_isales_api_call_gone_at",
    fact_isales_api_call.c._gone_at,
    postgresql_where=fact_isales_api_call.c._gone_at.isnot(None),
)
