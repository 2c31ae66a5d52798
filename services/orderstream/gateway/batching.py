"""Group commit for small MongoDB writes: whatever was asked while the last call ran goes in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Calls `flush` with every item submitted while the previous call ran, one call at a time.

    At light load that is one call per item, as without it; under load one round trip serves many
    requests. `flush` answers one result per item, in order; its exception goes to each of them.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self.flush = flush
        self.queue: list[tuple[T, asyncio.Future[R]]] = []
        self.running = False

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.queue.append((item, future))
        if not self.running:
            self.running = True
            await self._run()
        return await future

    async def _run(self) -> None:
        """Flush what is queued; the caller's own answer is ready after the first call, so what queued
        meanwhile is flushed by a task of its own instead of delaying it."""
        try:
            batch, self.queue = self.queue, []
            try:
                results = await self.flush([item for item, _ in batch])
            except Exception as exc:  # each request of the batch answers with it
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
        finally:
            if self.queue:
                asyncio.get_running_loop().create_task(self._run())
            else:
                self.running = False
