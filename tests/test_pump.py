"""The pump between a vendor's pages and the loader: bounded memory, errors propagate."""

import asyncio

import pytest

from pipelines.lib.http import Page
from pipelines.lib.loading import pump


class SlowLoad:
    """Stands in for PartitionLoad.add only: consumes slowly, so the queue fills."""

    def __init__(self) -> None:
        self.consumed = 0
        self.pages = 0

    async def add(self, text: str, records: int) -> None:
        self.consumed += len(text)
        self.pages += 1
        await asyncio.sleep(0.001)


def test_queue_is_bounded_by_bytes_and_every_page_arrives() -> None:
    load = SlowLoad()
    produced = 0
    ahead = 0

    async def pages():  # noqa: ANN202
        nonlocal produced, ahead
        for _ in range(200):
            produced += 1000
            ahead = max(ahead, produced - load.consumed)
            yield Page(b"x" * 1000, 10)

    asyncio.run(pump(pages(), load, max_bytes=10_000))  # type: ignore[arg-type]
    assert load.pages == 200
    assert ahead <= 10_000 + 2_000  # the bound, plus the page in hand on each side


def test_a_fetch_error_propagates() -> None:
    load = SlowLoad()

    async def pages():  # noqa: ANN202
        yield Page(b"{}", 1)
        raise RuntimeError("vendor went away")

    with pytest.raises(RuntimeError, match="vendor went away"):
        asyncio.run(pump(pages(), load))  # type: ignore[arg-type]
