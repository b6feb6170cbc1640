"""Run the emulator as a process: start, announce, serve until SIGINT/SIGTERM, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.console import watch
from ivrstream.emulator.server import Emulator


def write_port_file(path: Path, port: int) -> None:
    """Write the port atomically, so a reader polling the file never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    partial.replace(path)


async def serve(
    config: EmulatorConfig,
    *,
    port_file: Path | None = None,
    show: bool = False,
    duration: float | None = None,
) -> None:
    """Serve until a signal arrives or ``duration`` seconds pass."""
    console = Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(config) as emulator:
        if port_file is not None:
            write_port_file(port_file, emulator.port)
        console.print(f"ivrstream emulator listening on {emulator.base_url}", highlight=False)
        console.print(
            f"  OAuth client id {config.clients[0].client_id} · "
            f"seed {config.seed} · {config.rate:g} calls/s · time scale {config.time_scale:g}",
            highlight=False,
        )
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if show:
            waits.append(asyncio.ensure_future(watch(emulator, duration, console)))
        elif duration is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(duration)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    console.print("emulator stopped")
