"""What the emulator is generating, for a terminal (live table) or a log file (status lines)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ivrstream.emulator.server import Emulator
from ivrstream.emulator.traffic import Fact

OUTCOME_COLUMNS = ("contained", "answered", "abandoned_in_queue", "abandoned_in_ivr")
HEADINGS = {
    "contained": "served",
    "answered": "answered",
    "abandoned_in_queue": "q-aband",
    "abandoned_in_ivr": "ivr-aband",
}


def traffic_table(status: dict[str, Any]) -> Table:
    traffic = status["traffic"]
    table = Table(
        title="IVR traffic (emulated)", title_justify="left", box=box.SIMPLE_HEAD, expand=False
    )
    table.add_column("flow")
    table.add_column("active", justify="right")
    table.add_column("calls", justify="right")
    for key in OUTCOME_COLUMNS:
        table.add_column(HEADINGS[key], justify="right")
    for name, flow in traffic["flows"].items():
        outcomes = flow["outcomes"]
        table.add_row(
            name,
            str(flow["active"]),
            str(flow["started"]),
            *(str(outcomes.get(key, 0)) for key in OUTCOME_COLUMNS),
        )
    return table


def summary_line(status: dict[str, Any]) -> str:
    traffic = status["traffic"]
    containment = traffic["containment"]
    contained = f"{containment:.0%}" if containment is not None else "–"
    es = status["eventstreams"]["connections"]
    return (
        f"calls {status['callsStarted']} · active {status['callsInProgress']} · "
        f"events {traffic['facts']} · containment {contained} · Event Streams sockets {es}"
    )


def describe(fact: Fact) -> str:
    call = fact.call
    return f"{fact.kind:<15} {call.flow.name:<16} {call.conversation_id[:8]}  {call.ani[-4:]:>4}"


def view(emulator: Emulator) -> Group:
    status = emulator.status()
    recent = Text("\n".join(describe(f) for f in emulator.tally.recent), style="dim")
    return Group(
        Text(f"Genesys Cloud emulator at {emulator.base_url}", style="bold"),
        traffic_table(status),
        Text(summary_line(status)),
        Text("latest events:"),
        recent,
    )


async def watch(emulator: Emulator, duration: float | None, console: Console | None = None) -> None:
    """Show the traffic until ``duration`` seconds pass (or forever): live on a terminal,
    a status line every few seconds otherwise."""
    console = console or Console()
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    if console.is_terminal:
        with Live(view(emulator), console=console, refresh_per_second=4) as live:
            while deadline is None or loop.time() < deadline:
                await asyncio.sleep(0.25)
                live.update(view(emulator))
    else:
        while deadline is None or loop.time() < deadline:
            await asyncio.sleep(min(5.0, max(0.0, (deadline or 1e18) - loop.time())))
            console.print(summary_line(emulator.status()))
            sys.stdout.flush()
    console.print(traffic_table(emulator.status()))
