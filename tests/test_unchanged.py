"""A re-pull of unchanged data asks no recording it already has and writes no row version
(issue 20), measured in PostgreSQL's own counters (``pg_stat_user_tables``) and in the rows'
physical versions (``ctid``, ``xmin``); a changed record writes exactly its rows, and a row
that had gone and comes back is cleared."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from pipelines.defs.sources.crm import assets as crm
from tests.helpers import metadata
from tests.test_crm_pipeline import resources, run

CALLS = [crm.fact_crm_call, crm.fact_crm_call_recording]
TABLES = ("raw.crm_call", "raw.crm_call_detail", "core.fact_crm_call", "core.fact_crm_call_recording")


@pytest.fixture
def env(simulator, sim) -> dict[str, str]:  # noqa: ANN001
    simulator.settings["crm"].volume = 250  # a closed day (the wall clock is past it)
    return sim.env()


def written(db: psycopg.Connection, until: Callable[[dict[str, int]], bool] | None = None) -> dict[str, int]:
    """Row versions each table has had written (inserted, updated, deleted), once the
    pipeline's backends have flushed their counters (they do when their connection ends):
    the counts stable over a second, or ``until`` they show what is expected."""
    last: dict[str, int] | None = None
    stable = 0
    for _ in range(100):
        db.execute("SELECT pg_stat_clear_snapshot()")
        now = dict(
            db.execute(
                "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                "WHERE schemaname || '.' || relname = ANY(%s)",
                (list(TABLES),),
            ).fetchall()
        )
        stable = stable + 1 if now == last else 0
        if (until is None and stable == 3) or (until is not None and until(now)):
            return now
        last = now
        time.sleep(0.3)
    raise AssertionError("the statistics did not settle")


def versions(db: psycopg.Connection) -> dict[str, set]:
    """Every row's physical version: a rewritten row gets a new (ctid, xmin)."""
    return {t: set(db.execute(f"SELECT ctid::text, xmin::text FROM {t}").fetchall()) for t in TABLES}  # noqa: S608


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before.get(t, 0) for t in TABLES}


def test_a_repull_of_an_unchanged_closed_day_asks_nothing_and_writes_nothing(
    simulator, env, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    first = run(CALLS, res)
    calls = db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0]
    first_meta = metadata(first, "core/fact_crm_call_recording")
    assert first_meta["calls_asked"] == calls == 250 and first_meta["calls_skipped"] == 0
    loaded = written(db)
    assert loaded["core.fact_crm_call"] == 250 and loaded["core.fact_crm_call_recording"] > 0
    rows = versions(db)

    simulator.state.requests.clear()
    again = run(CALLS, res)
    meta = metadata(again, "core/fact_crm_call_recording")
    # Every call has its answer already (with or without a recording, and older than the
    # lookback): /view is asked for none.
    assert meta["calls_asked"] == 0 and meta["calls_skipped"] == 250 and meta["calls_waiting"] == 0
    assert simulator.state.requests["crm /v1/callLogs/view"] == 0
    assert metadata(again, "core/fact_crm_call")["complete_pull"] is True  # a full pull, marking gone
    assert delta(written(db), loaded) == dict.fromkeys(TABLES, 0)
    assert versions(db) == rows
    assert metadata(again, "core/fact_crm_call")["rows_landed"] == 250  # raw has every record


def test_a_changed_record_writes_its_rows_only_and_a_returning_row_is_cleared(
    env, warehouse_url: str, db: psycopg.Connection
) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run(CALLS, res)
    changed, back = (r[0] for r in db.execute("SELECT id FROM core.fact_crm_call ORDER BY id LIMIT 2"))
    base = written(db)
    # What we hold of one call differs from the vendor's (as after a change at the vendor), and
    # another had been marked gone.
    with psycopg.connect(warehouse_url, autocommit=True) as other:  # its counters flush as it ends
        other.execute(
            "UPDATE raw.crm_call SET record = record || '{\"duration\": -1}' WHERE record_key = %s",
            (str(changed),),
        )
        other.execute("UPDATE core.fact_crm_call SET duration = -1 WHERE id = %s", (changed,))
        other.execute("UPDATE core.fact_crm_call SET _gone_at = now() WHERE id = %s", (back,))
    manual = {**dict.fromkeys(TABLES, 0), "raw.crm_call": 1, "core.fact_crm_call": 2}
    before = written(db, until=lambda now: delta(now, base) == manual)

    result = run([crm.fact_crm_call], res)
    assert delta(written(db), before) == {
        "raw.crm_call": 1,
        "raw.crm_call_detail": 0,
        "core.fact_crm_call": 2,  # the changed call, and the one that came back
        "core.fact_crm_call_recording": 0,
    }
    assert db.execute("SELECT count(*) FROM core.fact_crm_call WHERE _gone_at IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT duration <> -1 FROM core.fact_crm_call WHERE id = %s", (changed,)).fetchone()[0]
    assert metadata(result, "core/fact_crm_call")["rows_upserted core.fact_crm_call"] == 2
