"""Issue 11 for the CRM: a reload never loses what the vendor stopped returning, one bad record
never blocks a day, no request wasted. Simulator over real HTTP -> assets -> PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from datetime import date

import httpx
import pytest

from pipelines.sources.crm.client import CrmResource
from tests.test_crm_pipeline import WINDOW

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
