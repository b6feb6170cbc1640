"""The driver that turns the traffic model into live facts, on the emulator's clock.

Facts that fall before the emulator started (``history``) only reach analytics; live facts are
handed, in time order, to every registered listener (Event Streams, Notifications) and to the
ledger.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable

from ivrstream.clock import Clock
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.ledger import Ledger
from ivrstream.emulator.traffic import Call, Fact, TrafficConfig, TrafficModel

Listener = Callable[[Fact], None]
PUBLISH_LIMIT = 2_000  # facts per turn of the event loop


class World:
    """Owns the traffic model, the record of every call (for analytics) and the fact listeners."""

    def __init__(self, config: EmulatorConfig, clock: Clock, ledger: Ledger) -> None:
        self.config = config
        self.clock = clock
        self.ledger = ledger
        self.started_ms = round(clock.time() * 1000)
        origin = self.started_ms - round(config.history * 1000)
        self.model = TrafficModel(
            TrafficConfig(
                seed=config.seed, rate=config.rate, time_scale=config.time_scale, start_ms=origin
            )
        )
        self.calls: list[Call] = []  # in start order
        self._call_starts: list[int] = []
        self._listeners: list[Listener] = []
        self.facts_published = 0
        self.paused = False  # True: publish nothing (facts wait in the model until resumed)
        if config.traffic and config.history > 0:
            for fact in self.model.facts_until(self.started_ms):
                self._remember(fact)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _remember(self, fact: Fact) -> None:
        if fact.kind == "customer.start":
            self.calls.append(fact.call)
            self._call_starts.append(fact.time_ms)
            overflow = len(self.calls) - self.config.retained_calls
            if overflow > 0:
                del self.calls[:overflow]
                del self._call_starts[:overflow]

    def calls_started_between(self, start_ms: int, end_ms: int) -> list[Call]:
        """Calls whose first fact lies in ``[start_ms, end_ms)``, in start order."""
        lo = bisect.bisect_left(self._call_starts, start_ms)
        hi = bisect.bisect_left(self._call_starts, end_ms)
        return self.calls[lo:hi]

    def publish_due(self, now_ms: int, limit: int | None = None) -> int:
        """Publish facts due by ``now_ms`` (at most ``limit``); returns how many."""
        count = 0
        for fact in self.model.facts_until(now_ms):
            self._remember(fact)
            self.ledger.record(
                "generated",
                fact=fact.fact_id,
                conversationId=fact.conversation_id,
                type=fact.kind,
                time=fact.time_ms,
            )
            for listener in self._listeners:
                listener(fact)
            count += 1
            if limit is not None and count >= limit:
                break
        self.facts_published += count
        return count

    async def run(self) -> None:
        """Publish facts as their time comes, until cancelled."""
        if not self.config.traffic:
            return
        tick = self.config.tick
        while True:
            now_ms = round(self.clock.time() * 1000)
            if not self.paused and self.publish_due(now_ms, PUBLISH_LIMIT) >= PUBLISH_LIMIT:
                await asyncio.sleep(0)  # behind: catch up, but let the sockets breathe
                continue
            wait = (self.model.next_due_ms() - now_ms) / 1000.0
            await self.clock.sleep(min(max(wait, tick), 0.25))
