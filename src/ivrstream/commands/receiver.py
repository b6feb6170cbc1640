"""Run the webhook receiver as a process: start, announce, serve until SIGINT/SIGTERM, stop cleanly.

Rules this module keeps: the port file is written atomically once the port is bound; what it
prints names the URL and the storage, never the secret or the DSN.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from ivrstream.emulator.runner import write_port_file
from ivrstream.receiver import Receiver


async def serve(
    receiver: Receiver,
    *,
    port_file: Path | None = None,
    duration: float | None = None,
) -> None:
    """Serve until a signal arrives or ``duration`` seconds pass."""
    console = Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with receiver:
        if port_file is not None:
            write_port_file(port_file, receiver.port)
        console.print(f"ivrstream receiver listening on {receiver.url}", highlight=False)
        storage = "PostgreSQL" if receiver.storage == "postgresql" else receiver.storage
        faults = receiver.faults
        console.print(
            f"  storing in {storage} · tolerance {receiver.tolerance:g} s · "
            f"fail rate {faults.fail_rate:g} · latency {faults.latency:g} s",
            highlight=False,
        )
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if duration is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(duration)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        stats = receiver.stats()
    console.print(
        f"receiver stopped: {stats['events']} events stored, {stats['duplicates']} duplicates, "
        f"{stats['rejected_signatures']} rejected, {stats['injected_failures']} injected failures",
        highlight=False,
    )
