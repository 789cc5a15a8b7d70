"""The one helper for bounded concurrent fetching (pipelines.lib.http.bounded)."""

import asyncio
import random

import pytest

from pipelines.lib.http import bounded


def collect(gen) -> list:  # noqa: ANN001
    async def go() -> list:
        return [x async for x in gen]

    return asyncio.run(go())


def test_single_results_in_order_or_as_they_come_never_more_than_the_limit_at_once() -> None:
    in_flight = peak = 0

    async def fetch(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(random.Random(i).random() / 200)
        in_flight -= 1
        return i

    assert collect(bounded(range(40), fetch, 4, ordered=True)) == list(range(40))
    assert peak == 4
    peak = 0
    unordered = collect(bounded(range(40), fetch, 4))
    assert sorted(unordered) == list(range(40)) and unordered != list(range(40)) and peak == 4


def test_streams_are_drained_each_in_order_and_hold_one_result_at_a_time() -> None:
    produced: list[int] = []

    async def walk(i: int):  # noqa: ANN202
        for j in range(5):
            produced.append(i)
            yield (i, j)

    seen = []

    async def go() -> None:
        async for item in bounded(range(6), walk, 3):
            seen.append(item)
            # a result queued and one more made per running stream, at the most
            assert len(produced) - len(seen) <= 2 * 3

    asyncio.run(go())
    assert sorted(seen) == [(i, j) for i in range(6) for j in range(5)]
    for i in range(6):
        assert [j for k, j in seen if k == i] == list(range(5))


def test_an_error_in_any_fetch_is_raised_and_the_others_are_cancelled() -> None:
    cancelled = 0

    async def fetch(i: int) -> int:
        nonlocal cancelled
        if i == 3:
            raise RuntimeError("page 3 failed")
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return i

    with pytest.raises(RuntimeError, match="page 3 failed"):
        collect(bounded(range(10), fetch, 4))
    assert cancelled == 3
