"""Which calls' recordings a pull asks for: ``/v1/callLogs/view`` costs one request per call,
so a call is asked about once, not on every refresh.

A call of the window is asked when it has no live recording row and either
- it was never answered (no ``raw.crm_call_detail`` record for it),
- its recordings were marked gone (the call came back, or its recordings went), or
- its answer held no recording, it was talked in (``duration > 0``: a call nobody talked in
  has nothing to record), it is young (created within ``CRM_RECORDING_LOOKBACK_HOURS``:
  recordings can appear a while after the call) and the window has closed: such calls wait
  for the hourly late-data pass over the previous day, not the 15-minute refreshes of the
  open one, so each is asked again at most about once an hour, and never once it is old.
Everything else is skipped. Calls marked gone are not asked: their recordings are gone with them.

A pull that skips calls cannot tell which recordings went, so it marks none gone itself;
the recordings of a call marked gone are marked gone with it (``_FOLLOW_CALLS``), and come
back when the call does (it is then asked again).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from pipelines.defs.sources.crm import normalize
from pipelines.defs.sources.crm.partitions import crm_daily
from pipelines.lib import refresh
from pipelines.lib.http import bounded
from pipelines.lib.ingest import Load, RunContext

# A call marked gone (a complete pull of its day no longer lists it) takes its recordings
# with it: /view would not find it either. That call's marking passed the
# mass-disappearance guard already.
_FOLLOW_CALLS = """
UPDATE core.fact_crm_call_recording r SET _gone_at = c._gone_at
FROM core.fact_crm_call c
WHERE c.call_id = r.call_id AND c._gone_at IS NOT NULL AND r._gone_at IS NULL
  AND r.call_created_at >= %(lo)s AND r.call_created_at < %(hi)s
"""

SPEC = normalize.RECORDINGS

_PLAN = """
SELECT c.call_id,
       NOT EXISTS (SELECT FROM core.fact_crm_call_recording r
                   WHERE r.call_id = c.call_id AND r._gone_at IS NULL)
       AND (NOT EXISTS (SELECT FROM raw.crm_call_detail d WHERE d.record_key = c.call_id)
            OR EXISTS (SELECT FROM core.fact_crm_call_recording r WHERE r.call_id = c.call_id)
            OR (%(closed)s AND c.created_at >= %(young)s AND coalesce(c.duration, 0) > 0)) AS ask
FROM core.fact_crm_call c
WHERE c.created_at >= %(lo)s AND c.created_at < %(hi)s AND c._gone_at IS NULL
ORDER BY c.id
"""

_WAITING = """
SELECT count(*) FROM core.fact_crm_call c
WHERE c.created_at >= %(lo)s AND c.created_at < %(hi)s AND c.created_at >= %(young)s AND c._gone_at IS NULL
  AND coalesce(c.duration, 0) > 0
  AND NOT EXISTS (SELECT FROM core.fact_crm_call_recording r WHERE r.call_id = c.call_id AND r._gone_at IS NULL)
"""


def recording_loads(run: RunContext) -> Iterator[Load]:
    """The recordings load of the run's day."""
    lookback = run.resource.duration("recording_lookback_hours", "hours")

    def where() -> dict[str, Any]:
        now = refresh.utc_now()
        return {
            "lo": run.window[0],
            "hi": run.window[1],
            "young": now - lookback,
            "closed": now >= run.window[1],
        }

    async def fetch(conn, tally):  # noqa: ANN001, ANN202
        # Planned under the partition's lock: a concurrent run of the day waits, then sees
        # this one's recordings and asks about none of them again.
        cur = await conn.execute(_PLAN, where())
        rows = await cur.fetchall()
        asked = [call_id for call_id, ask in rows if ask]
        tally.extra.update(calls=len(rows), calls_asked=len(asked), calls_skipped=len(rows) - len(asked))
        async for page in bounded(asked, run.client.call_detail, run.client.http.concurrency):
            yield page

    async def after(conn, tally, load) -> None:  # noqa: ANN001
        cur = await conn.execute(_FOLLOW_CALLS, where())
        table = SPEC.targets[0].table
        load.result.rows_gone[table] = load.result.rows_gone.get(table, 0) + cur.rowcount
        cur = await conn.execute(_WAITING, where())
        row = await cur.fetchone()
        # Young calls still without a recording: the next pulls ask about them again.
        tally.extra["calls_waiting"] = int(row[0]) if row else 0
        tally.extra["recording_lookback_hours"] = lookback / timedelta(hours=1)

    yield Load(
        SPEC,
        run.partition_key,
        fetch,
        params={"tz": crm_daily.timezone},
        after=after,
        marks_gone=False,  # it asks about some calls only; recordings follow their calls
    )
