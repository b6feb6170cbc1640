"""Waiting on the clock: an event or a timeout, in the clock's own time."""

from __future__ import annotations

import asyncio
import time

from ivrstream.clock import ScaledClock, wait_event


async def test_wait_event_times_out_in_clock_time():
    clock = ScaledClock(1_000.0)  # 5 clock seconds are 5 ms
    started = time.monotonic()
    assert await wait_event(asyncio.Event(), 5.0, clock) is False
    assert time.monotonic() - started < 1.0


async def test_wait_event_returns_as_soon_as_the_event_is_set():
    clock = ScaledClock(1.0)
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    started = time.monotonic()
    assert await wait_event(event, 60.0, clock) is True
    assert time.monotonic() - started < 1.0
    assert await wait_event(event, 60.0, clock) is True  # already set: at once
