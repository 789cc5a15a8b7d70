"""Bounded concurrent fetching: many requests in flight, few results held."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class _Failed:
    """A fetch's exception, handed to the consumer to raise there."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # one item's fetch has no more results


async def bounded(
    items: Iterable[T],
    fetch: Callable[[T], Awaitable[Any] | AsyncIterator[Any]],
    limit: int,
    *,
    ordered: bool = False,
) -> AsyncIterator[Any]:
    """Run ``fetch`` over ``items``, at most ``limit`` at once, and yield what it gives: one
    result per item (an awaitable) or a stream of them (an async iterator, e.g. one
    sub-window's pages). Results come as they arrive, so one slow answer never holds the
    others back and the number in flight stays at ``limit`` (what sustains a rate under
    latency); or, ``ordered``, every result of an item before those of the next.

    A running item waits while its results are not taken, so at most about ``2 * limit``
    results are held whatever the number of items. An exception in any fetch
    stops them all and is raised here."""
    iterator = iter(items)
    shared: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, limit))
    running: deque[tuple[asyncio.Task, asyncio.Queue[Any]]] = deque()

    async def drive(item: T, box: asyncio.Queue[Any]) -> None:
        try:
            produced = fetch(item)
            if hasattr(produced, "__aiter__"):
                async for result in produced:  # type: ignore[union-attr]
                    await box.put(result)
            else:
                await box.put(await produced)  # type: ignore[misc]
            await box.put(_END)
        except Exception as error:  # noqa: BLE001 (raised again by the consumer)
            await box.put(_Failed(error))

    def start() -> bool:
        for item in iterator:
            box = asyncio.Queue(maxsize=1) if ordered else shared
            running.append((asyncio.ensure_future(drive(item, box)), box))
            return True
        return False

    try:
        for _ in range(max(1, limit)):
            if not start():
                break
        active = len(running)
        while active:
            result = await (running[0][1] if ordered else shared).get()
            if isinstance(result, _Failed):
                raise result.error
            if result is _END:
                while running and running[0][0].done():  # forget what has finished
                    running.popleft()
                active -= 1
                active += start()
                continue
            yield result
    finally:
        tasks = [task for task, _ in running if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
