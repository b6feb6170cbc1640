"""A clock that moves only when told to."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Manual time: ``await clock.advance(5)`` wakes every sleeper whose deadline has come.

    Sleepers wake in deadline order, each with a chance to run (and schedule more sleeps) before
    time moves past the next deadline.
    """

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self._wall_origin = start
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self._wall_origin + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._ids), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            # let the woken task run before moving time again
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return sum(1 for _, _, f in self._sleepers if not f.done())
