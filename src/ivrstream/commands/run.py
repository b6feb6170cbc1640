"""``ivrstream run``: the long-running service (a thin layer over :class:`Subscriber`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from ivrstream.aio.notifications import NotificationsSource
from ivrstream.aio.subscriber import Subscriber
from ivrstream.config import Config
from ivrstream.errors import AuthError, GiveUp, IvrstreamError, SubscriptionRejected
from ivrstream.journal import JournalError

log = logging.getLogger("ivrstream.run")


async def run(config: Config, *, duration: float | None, max_events: int | None) -> int:
    """Run until a signal, ``duration`` seconds, ``max_events`` committed, or a fatal error.
    Returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(name: str) -> None:
        received.append(name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    subscriber = Subscriber(config)
    monitor = None
    if config.metrics.listen is not None:
        from ivrstream.aio.monitor import Monitor

        monitor = Monitor(subscriber, listen=config.metrics.listen)
    code = 0
    await subscriber.start()
    log.info("journal %s (resuming after position %d)", config.journal.path, subscriber.start_pos)
    if monitor is not None:
        try:
            await monitor.start()
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics.listen, exc)
            await monitor.stop()
            await subscriber.stop()
            return 1
    waits: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(stop.wait()): "signal",
        asyncio.ensure_future(subscriber.wait()): "source ended",
    }
    if duration is not None:
        waits[asyncio.ensure_future(asyncio.sleep(duration))] = f"--duration {duration:g}"
    if max_events is not None:
        waits[asyncio.ensure_future(_until_committed(subscriber, max_events))] = (
            f"--max-events {max_events}"
        )
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            subscriber.stop_reason = received[0] if received else waits[task]
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    except (AuthError, SubscriptionRejected, GiveUp, JournalError) as exc:
        log.error("%s", exc)
        subscriber.stop_reason = f"failed: {type(exc).__name__}"
        code = 1
    except IvrstreamError as exc:
        log.error("stopped: %s", exc)
        subscriber.stop_reason = f"failed: {type(exc).__name__}"
        code = 1
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if monitor is not None:
            await monitor.stop()
        await subscriber.stop()
        summary(subscriber)
    return code


async def _until_committed(subscriber: Subscriber, count: int) -> None:
    target = subscriber.intake.stats.committed + count
    position = subscriber.start_pos
    while subscriber.intake.stats.committed < target:
        position = await subscriber.intake.wait_committed(position)


def summary(subscriber: Subscriber) -> None:
    stats = subscriber.intake.statistics()
    streams = stats["streams"].values()
    gaps = sum(s["gaps_opened"] for s in streams)
    open_gaps = sum(s["open_gaps"] for s in streams)
    duplicates = sum(s["duplicate"] for s in streams)
    latency = stats["latency"]
    print(
        f"ivrstream: {stats['committed']} events committed, {duplicates} duplicate frames"
        f" dropped, {stats['quarantined']} quarantined, {gaps} gaps ({open_gaps} open);"
        f" receive→commit p99 {latency['p99_ms']} ms",
        file=sys.stderr,
    )
    tokens = subscriber.tokens
    if tokens is not None and tokens.refreshes == 0 and tokens.last_error:
        print(f"ivrstream: never connected: {tokens.last_error}", file=sys.stderr)
    source = subscriber.source
    if isinstance(source, NotificationsSource):
        shown = source.statistics()
        coverage = shown["coverage"] or {}
        print(
            f"ivrstream: notifications: {coverage.get('discovered', 0)} conversations seen,"
            f" {coverage.get('covered_total', 0)} given topics live,"
            f" {coverage.get('seen_late', 0)} seen too late for their first events;"
            f" {shown['loss_windows']} loss windows, {shown['sweeps']} analytics sweeps",
            file=sys.stderr,
        )
    backfill = subscriber.backfill
    if backfill is not None and backfill.outcomes:
        states = backfill.statistics()["outcomes"]
        closed = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(states.items()))
        print(f"ivrstream: backfill passes: {closed}", file=sys.stderr)
