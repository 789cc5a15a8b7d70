"""Which calls' recordings a pull asks for: ``/v1/callLogs/view`` costs one request per call,
so a call is asked about once, not on every refresh.

A call of the window is asked when it has no live recording row and either
- it was never answered (no ``raw.crm_call_detail`` record for it),
- its answer held no recording and it is young (created within
  ``CRM_RECORDING_LOOKBACK_HOURS``: recordings appear a while after the call), or
- its recordings were marked gone (the call came back, or its recordings went).
Everything else is skipped. Calls marked gone are not asked: their recordings are gone with them.

The load answers, for gone-marking, only for the recordings of the calls it asked about and
of the calls marked gone (``scope_sql``), so skipping a call never makes its recordings look gone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg

from pipelines.defs.sources.crm import normalize
from pipelines.defs.sources.crm.partitions import crm_daily
from pipelines.lib import refresh
from pipelines.lib.http import bounded
from pipelines.lib.ingest import Load, RunContext

# The recordings the load answers for: those of the calls asked about, and of the window's
# calls marked gone (a complete pull of their day no longer lists them).
SCOPE = (
    "(call_id = ANY(%(asked_calls)s::text[]) OR call_id IN (SELECT c.call_id FROM core.fact_crm_call c "
    "WHERE c._gone_at IS NOT NULL AND c.created_at >= %(lo)s AND c.created_at < %(hi)s))"
)
SPEC = dataclasses.replace(
    normalize.RECORDINGS,
    targets=tuple(dataclasses.replace(t, scope_sql=SCOPE) for t in normalize.RECORDINGS.targets),
)

_PLAN = """
SELECT c.call_id,
       NOT EXISTS (SELECT FROM core.fact_crm_call_recording r
                   WHERE r.call_id = c.call_id AND r._gone_at IS NULL)
       AND (NOT EXISTS (SELECT FROM raw.crm_call_detail d WHERE d.record_key = c.call_id)
            OR c.created_at >= %(young)s
            OR EXISTS (SELECT FROM core.fact_crm_call_recording r WHERE r.call_id = c.call_id)) AS ask,
       c.created_at >= %(young)s AS young
FROM core.fact_crm_call c
WHERE c.created_at >= %(lo)s AND c.created_at < %(hi)s AND c._gone_at IS NULL
ORDER BY c.id
"""

_WAITING = """
SELECT count(*) FROM core.fact_crm_call c
WHERE c.created_at >= %(lo)s AND c.created_at < %(hi)s AND c.created_at >= %(young)s AND c._gone_at IS NULL
  AND NOT EXISTS (SELECT FROM core.fact_crm_call_recording r WHERE r.call_id = c.call_id AND r._gone_at IS NULL)
"""


def recording_loads(run: RunContext) -> Iterator[Load]:
    """The recordings load of the run's day."""
    lookback = run.resource.duration("recording_lookback_hours", "hours")
    asked: list[str] = []
    plan: dict[str, Any] = {}

    def where() -> dict[str, Any]:
        return {"lo": run.window[0], "hi": run.window[1], "young": refresh.utc_now() - lookback}

    async def prepare(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        cur = await conn.execute(_PLAN, where())
        rows = await cur.fetchall()
        asked[:] = [call_id for call_id, ask, _ in rows if ask]
        plan.update(calls=len(rows), calls_asked=len(asked), calls_skipped=len(rows) - len(asked))
        return {"asked_calls": list(asked)}

    async def fetch(conn, tally):  # noqa: ANN001, ANN202
        tally.extra.update(plan)
        async for page in bounded(asked, run.client.call_detail, run.client.http.concurrency):
            yield page

    async def after(conn, tally, load) -> None:  # noqa: ANN001
        cur = await conn.execute(_WAITING, where())
        row = await cur.fetchone()
        # Young calls still without a recording: the next pulls ask about them again.
        tally.extra["calls_waiting"] = int(row[0]) if row else 0
        tally.extra["recording_lookback_hours"] = lookback / timedelta(hours=1)

    yield Load(
        SPEC, run.partition_key, fetch, params={"tz": crm_daily.timezone}, after=after, prepare=prepare
    )
