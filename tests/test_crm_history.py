"""Issue 11 for the CRM: a reload never loses what the vendor stopped returning, one bad record
never blocks a day, no request wasted. Simulator over real HTTP -> assets -> PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import date

import httpx
import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm.client import CrmResource
from simulator import crm as crm_sim
from tests import helpers
from tests.helpers import checks, metadata
from tests.test_crm_pipeline import WINDOW, resources, run

DAY_KEY = WINDOW[0].date().isoformat()
DAY_NUMBER = (WINDOW[0].date() - date(1970, 1, 1)).days  # the simulator's call id is day * 10^7 + index


def crm_id(index: int) -> int:
    """The id of call ``index`` (0 = the oldest) of the partition's day in the simulator."""
    return DAY_NUMBER * 10_000_000 + index


async def _pull_day(res: CrmResource) -> int:
    client = res.client()
    async with client.http:
        return sum([page.records async for page in client.call_log_pages(*WINDOW)])


@pytest.mark.parametrize(
    "volume,deleted", [(1, 0), (99, 0), (100, 0), (101, 0), (101, 1), (200, 0), (250, 0)]
)
def test_a_small_day_costs_at_most_the_paging_minimum_plus_one(simulator, sim, volume, deleted) -> None:  # noqa: ANN001
    """At pageSize 100 a day of n calls needs ceil(n / 100) pages (one at least); the walk may
    spend one more only to confirm a full last page, since ``total`` is not trusted to end it."""
    simulator.settings["crm"].volume = volume
    env = sim.env()
    if deleted:  # the vendor's total drops to a multiple of the page size
        httpx.post(f"{sim.url}/_sim/deleted", json={"ids": [f"crm:{crm_id(k)}" for k in range(deleted)]})
    res = CrmResource(
        base_url=env["CRM_BASE_URL"], email=env["CRM_EMAIL"], secret_key=env["CRM_SECRET_KEY"], rate_per_s=0
    )
    n = volume - deleted
    assert asyncio.run(_pull_day(res)) == n
    requests = sim.sim.state.requests["crm /v1/callLogs"]
    minimum = max(1, math.ceil(n / 100))
    assert requests <= minimum + 1
    if n % 100:  # a short last page ends the walk: nothing to confirm
        assert requests == minimum


# ---- the pipeline: soft deletes, the guard, poison ------------------------------------------

CALLS = [crm.fact_crm_call, crm.fact_crm_call_recording]


@pytest.fixture
def env(simulator, sim) -> dict[str, str]:  # noqa: ANN001
    simulator.settings["crm"].volume = 250  # three pages of at most 100
    return sim.env()


def gone(db, table: str = "core.fact_crm_call", key: str = "id") -> dict:  # noqa: ANN001
    return dict(db.execute(f"SELECT {key}, _gone_at FROM {table} WHERE _gone_at IS NOT NULL").fetchall())


def count(db, table: str) -> int:  # noqa: ANN001
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def evaluation(result, name: str):  # noqa: ANN001, ANN201
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_a_call_the_vendor_deletes_stays_marked_gone_and_is_cleared_when_it_comes_back(
    env, warehouse_url, db, sim
) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run(CALLS, res)
    victim, call_id = db.execute(
        "SELECT c.id, c.call_id FROM core.fact_crm_call c "
        "WHERE EXISTS (SELECT 1 FROM core.fact_crm_call_recording r WHERE r.crm_call_id = c.id) ORDER BY c.id LIMIT 1"
    ).fetchone()
    recordings = db.execute(
        "SELECT call_id, record_url FROM core.fact_crm_call_recording ORDER BY 1, 2"
    ).fetchall()
    assert len(recordings) > 0

    httpx.post(f"{sim.url}/_sim/deleted", json={"ids": [f"crm:{victim}"]})
    result = run(CALLS, res)
    assert checks(result)["no_mass_disappearance"] is True
    meta = metadata(result, "core/fact_crm_call")
    assert meta["api_total"] == 249 and meta["rows_gone core.fact_crm_call"] == 1
    assert list(gone(db)) == [victim]
    assert count(db, "core.fact_crm_call") == 250  # the row stays, its values too
    assert count(db, "raw.crm_call") == 250
    assert (
        db.execute("SELECT count(*) FROM raw.crm_call WHERE record_key = %s", (str(victim),)).fetchone()[0]
        == 1
    )
    # its recordings stay: /view no longer finds the call, so they are marked gone, not deleted
    assert db.execute(
        "SELECT call_id, record_url FROM core.fact_crm_call_recording ORDER BY 1, 2"
    ).fetchall() == (recordings)
    assert {k[0] for k in gone(db, "core.fact_crm_call_recording", "(call_id, record_url)")} == {call_id}
    first_gone = gone(db)[victim]
    run(CALLS, res)  # still missing: the time it first went missing is kept
    assert gone(db) == {victim: first_gone}

    httpx.delete(f"{sim.url}/_sim/deleted")  # the vendor has it again
    result = run(CALLS, res)
    assert gone(db) == {} and gone(db, "core.fact_crm_call_recording", "call_id") == {}
    assert count(db, "core.fact_crm_call") == 250
    assert metadata(result, "core/fact_crm_call")["rows_gone core.fact_crm_call"] == 0


def test_a_vendor_that_answers_empty_for_the_day_loses_nothing_and_the_check_says_why(
    env, warehouse_url, db, sim
) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run(CALLS, res)
    tables = ["core.fact_crm_call", "raw.crm_call", "core.fact_crm_call_recording", "raw.crm_call_detail"]
    before = {t: count(db, t) for t in tables}
    assert before["core.fact_crm_call"] == 250 and before["core.fact_crm_call_recording"] > 0

    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "empty", "times": -1})
    result = run([crm.fact_crm_call], res, raise_on_error=False)
    assert not result.success  # the blocking check fails the run, after the commit
    check = evaluation(result, "no_mass_disappearance")
    assert check.passed is False and check.severity == AssetCheckSeverity.ERROR
    assert "crm core.fact_crm_call" in check.description
    assert "returned 0 of 250 known rows" in check.description
    assert WINDOW[0].isoformat() in check.description
    assert metadata(result, "core/fact_crm_call")["rows_gone core.fact_crm_call"] == 0
    assert {t: count(db, t) for t in tables} == before and gone(db) == {}

    # the recordings: /view answers nothing for every call of the day, but every call that
    # has a recording is not asked again (issue 20), so nothing can look gone
    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs/view", "mode": "empty", "times": -1})
    result = run([crm.fact_crm_call_recording], res, raise_on_error=False)
    assert evaluation(result, "no_mass_disappearance").passed is True
    meta = metadata(result, "core/fact_crm_call_recording")
    with_recording = db.execute(
        "SELECT count(DISTINCT call_id) FROM core.fact_crm_call_recording"
    ).fetchone()[0]
    assert meta["calls_skipped"] >= with_recording and meta["calls_asked"] == 250 - meta["calls_skipped"]
    assert {t: count(db, t) for t in tables} == before
    assert gone(db, "core.fact_crm_call_recording", "call_id") == {}


@pytest.mark.parametrize(
    "deleted,share,applied",
    [(2, None, True), (3, None, False), (3, "0.5", True), (6, "0.5", False)],
    ids=["2of10-default", "3of10-default", "3of10-share0.5", "6of10-share0.5"],
)
def test_the_share_setting_decides_what_is_refused(
    simulator, sim, warehouse_url, db, monkeypatch, deleted, share, applied
) -> None:  # noqa: ANN001
    simulator.settings["crm"].volume = 10
    if share is not None:
        monkeypatch.setenv("CRM_MAX_GONE_SHARE", share)  # read by the resource's from_env
    helpers.run([crm.fact_crm_call], DAY_KEY)
    ids = [crm_id(i) for i in range(deleted)]
    httpx.post(f"{sim.url}/_sim/deleted", json={"ids": [f"crm:{i}" for i in ids]})
    result = helpers.run([crm.fact_crm_call], DAY_KEY, raise_on_error=False)
    assert result.success is applied
    assert checks(result)["no_mass_disappearance"] is applied
    assert sorted(gone(db)) == (ids if applied else [])
    assert count(db, "core.fact_crm_call") == count(db, "raw.crm_call") == 10
    if not applied:
        description = evaluation(result, "no_mass_disappearance").description
        assert f"returned {10 - deleted} of 10 known rows" in description


POISONED = {
    "nul": ("customerName", "\\u0000"),
    "surrogate": ("customerName", "surrogate"),
    "bignum": ("duration", "range"),
}


@pytest.mark.parametrize("variant", sorted(POISONED))
def test_a_poison_record_is_rejected_alone_and_its_values_never_logged(
    simulator, env, warehouse_url, db, sim, caplog, capfd, variant
) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    field, kind = POISONED[variant]
    # page 1 newest first: its middle record (position 50) is call 199 of the day's 250
    victim = crm_sim.make_call(simulator.settings["crm"], DAY_NUMBER, 199)
    httpx.post(
        f"{sim.url}/_sim/faults",
        json={"endpoint": "/v1/callLogs", "mode": "poison", "variant": variant, "times": 1},
    )
    instance = DagsterInstance.ephemeral()
    result = run([crm.fact_crm_call], resources(env, warehouse_url), instance=instance)
    assert checks(result)["no_rejects"] is False
    rejects = db.execute("SELECT source_table, record_key, reason, record FROM raw.rejects").fetchall()
    assert len(rejects) == 1
    table, key, reason, record = rejects[0]
    # the reject names the record's key (its record_key) and the field (its reason)
    assert table == "raw.crm_call" and key == str(victim["id"]) == str(crm_id(199))
    assert f"field '{field}'" in reason and kind in reason
    assert record["callId"] == victim["callId"]  # the made-safe copy
    # the rest of the day lands
    assert count(db, "core.fact_crm_call") == 249 and count(db, "raw.crm_call") == 249
    assert (
        db.execute("SELECT count(*) FROM core.fact_crm_call WHERE id = %s", (victim["id"],)).fetchone()[0]
        == 0
    )
    # no customer value in the reason or in any log line
    values = [victim["customerNumber"], victim["customerName"] or crm_sim.CUSTOMER_NAMES[3]]
    out, err = capfd.readouterr()
    events = [str(e) for e in instance.all_logs(result.run_id)]
    for text in [reason, caplog.text, out, err, *events]:
        for value in values:
            assert value not in text

    result = run([crm.fact_crm_call], resources(env, warehouse_url))  # the vendor sends it clean again
    assert checks(result)["no_rejects"] is True
    assert count(db, "raw.rejects") == 0 and count(db, "core.fact_crm_call") == 250


def test_a_poison_record_of_a_loaded_day_is_returned_so_not_gone(
    simulator, env, warehouse_url, db, sim
) -> None:  # noqa: ANN001
    victim = crm_sim.make_call(simulator.settings["crm"], DAY_NUMBER, 199)
    run([crm.fact_crm_call], resources(env, warehouse_url))
    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "poison", "times": 1})
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    assert checks(result)["no_rejects"] is False and count(db, "raw.rejects") == 1
    # its row keeps the values of the last pull that could store them
    assert db.execute(
        "SELECT customer_number, duration FROM core.fact_crm_call WHERE id = %s", (victim["id"],)
    ).fetchone() == (victim["customerNumber"], victim["duration"])
    assert gone(db) == {}  # the vendor returned it: it is not gone
