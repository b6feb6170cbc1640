"""Time as an object you pass in.

Everything that waits or timestamps takes a :class:`Clock`, so tests can run an hour of traffic in
seconds (:class:`ScaledClock`) or step time by hand (:class:`ivrstream.testing.FakeClock`).
The sans-I/O core never imports this module: it receives plain numbers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for durations, and a sleep that honours both."""

    def time(self) -> float:
        """Seconds since the Unix epoch, as this clock sees them."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


async def wait_event(event: asyncio.Event, seconds: float, clock: Clock) -> bool:
    """Wait until ``event`` is set or ``seconds`` of ``clock`` time pass; True if it was set."""
    if event.is_set():
        return True
    sleep = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    woken = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleep.cancel()
        woken.cancel()
    return event.is_set()


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """A clock that runs ``factor`` times faster than real time, from ``start`` (epoch seconds).

    Share one instance between an in-process emulator and client to compress hours into seconds;
    both then agree on "now".
    """

    def __init__(self, factor: float, start: float | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self._origin_real = time.monotonic()
        self._origin_wall = time.time() if start is None else start

    def time(self) -> float:
        return self._origin_wall + (time.monotonic() - self._origin_real) * self.factor

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin_real) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)
