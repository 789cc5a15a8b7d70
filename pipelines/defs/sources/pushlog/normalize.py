"""How CloudListCurlLog records become ``core.fact_push_log`` rows: their fields (pipelines/lib/typed_select.py).

The documented types are not the wire's: times are epoch milliseconds as strings, ids and
codes numeric strings, and Params / ResultText / Headers JSON escaped once or twice inside a
string (``core.decode_json_text`` unwraps it). ``UniqueId`` and ``CurrentMonth`` send the two
characters ``""`` for "empty".
"""

from __future__ import annotations

from models import pushlog as models
from pipelines.lib.loading import SourceSpec
from pipelines.lib.schema import core_target
from pipelines.lib.typed_select import Derived, Field

_EMPTY = ("",)
# UniqueId and CurrentMonth send the two characters "" for "empty".
_QUOTES = ("", '""')

FIELDS = (
    Field("enterprise_id", "EnterpriseId", "bigint", required=True, empty=_EMPTY),
    Field("id", "Id", "bigint", required=True, empty=_EMPTY),
    Field("create_time", "CreateTime", "epoch_ms", required=True, empty=_EMPTY),
    Field("start_time", "StartTime", "epoch_ms", empty=_EMPTY),
    Field("end_time", "EndTime", "epoch_ms", empty=_EMPTY),
    Field("request_time", "RequestTime", "epoch_ms", empty=_EMPTY),
    # Exact: the times are whole milliseconds, and the interval's epoch is numeric.
    Derived("latency_ms", "(extract(epoch FROM {end_time} - {start_time}) * 1000)::bigint"),
    Field("type", "Type", "int", empty=_EMPTY),
    Field("type_str", "TypeStr"),
    Field("result", "Result", "int", empty=_EMPTY),
    Field("url", "Url", empty=_EMPTY),
    Field("method", "Method", empty=_EMPTY),
    Field("status_code", "StatusCode", "int", empty=_EMPTY),
    Field("content_type", "ContentType", "int", empty=_EMPTY),
    Field("position", "Position", "int", empty=_EMPTY),
    Field("timeout", "Timeout", "int", empty=_EMPTY),
    Field("delay", "Delay", "int", empty=_EMPTY),
    Field("level", "Level", "int", empty=_EMPTY),
    Field("retry", "Retry", "int", empty=_EMPTY),
    Field("unique_id", "UniqueId", empty=_QUOTES),
    Field("current_month", "CurrentMonth", empty=_QUOTES),
    Field("params", "Params", "json_text", raw_column="params_text"),
    Field("result_text", "ResultText", "json_text", raw_column="result_text_text"),
    Field("headers", "Headers", "json_text", raw_column="headers_text"),
)

PUSH_LOGS = SourceSpec(
    raw_table="raw.pushlog",
    records_path=("Data", "List"),
    # NULL (a keyless reject) unless both parts are there.
    key_sql="(rec->>'EnterpriseId') || ':' || (rec->>'Id')",
    targets=(core_target(models.fact_push_log, FIELDS, time_column="create_time"),),
)
