"""Overlap fetching with loading: a vendor's pages flow into a ``PartitionLoad`` through a
queue bounded by bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pipelines.lib.http import Page
from pipelines.lib.loading.partition import PartitionLoad


async def pump(pages: AsyncIterator[Page], load: PartitionLoad, max_bytes: int = 4 << 20) -> None:
    """Feed ``pages`` into ``load`` through a queue bounded by the bytes of the pages it holds
    (one vendor's page is 40 KB, another's 1 MB), so fetching goes on while PostgreSQL works
    on the previous batch and memory stays bounded whatever the vendor's page size.

    4 MB holds about two batches of 40 KB pages: enough to keep fetching through a flush. A deeper
    queue fetches no faster; it only fills further the longer a pull runs, so peak memory
    would grow with the partition's size (bench/README.md).

    An error on either side cancels the other and is raised as it was (the load then rolls
    back).
    """
    queue: asyncio.Queue[Page | None] = asyncio.Queue()
    held = 0
    room = asyncio.Condition()

    async def produce() -> None:
        nonlocal held
        async for page in pages:
            async with room:
                await room.wait_for(lambda: held < max_bytes)  # noqa: B023 (reads the current value on purpose)
                held += len(page.body)
            queue.put_nowait(page)
        queue.put_nowait(None)

    async def take(page: Page) -> None:
        nonlocal held
        async with room:
            held -= len(page.body)
            room.notify()
        await load.add(page.body, page.records)

    async def consume() -> None:
        while (page := await queue.get()) is not None:
            await take(page)
            # Take what is already queued without yielding: page by page, the producer would
            # refill each freed slot, find the queue full when a flush starts, and sit idle
            # for the whole flush instead of fetching the next batch.
            while not queue.empty():
                if (page := queue.get_nowait()) is None:
                    return
                await take(page)

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(produce())
            tasks.create_task(consume())
    except* Exception as group:
        # One side failed and the other was cancelled: raise the failure itself, so callers
        # and the run's error name the vendor or the table, not a group.
        raise group.exceptions[0] from None
