"""How the demo looks: a live frame for a terminal, plain lines for a log file, the summary.

Rules this module keeps:

- Everything here is a pure function of a :class:`~ivrstream.demo.probe.Snapshot` or of the
  summary dict: no I/O, so any frame can be rendered to a file.
- It fits 80 columns: the live frame, every log line and the summary table.
- Nothing it shows can carry a secret: it only ever sees counts, states and flow names.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ivrstream.demo.probe import Snapshot

WIDTH = 80
STATE_STYLE = {
    "streaming": "green",
    "idle": "green",
    "delivering": "green",
    "retrying": "yellow",
    "waiting": "yellow",
    "connecting": "yellow",
    "disabled": "bold red",
    "failed": "bold red",
}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _bar(elapsed: float, duration: float, width: int = 20) -> str:
    done = min(width, int(width * elapsed / duration)) if duration > 0 else width
    return "█" * done + "░" * (width - done)


def header(s: Snapshot) -> Text:
    text = Text("ivrstream demo ", style="bold")
    if s.phase == "running":
        text.append(f"{_bar(s.elapsed, s.duration)} {s.elapsed:5.1f} / {s.duration:g} s")
    else:
        text.append(f"{s.phase} · {s.elapsed:.1f} s", style="yellow")
    text.append("  source ")
    text.append_text(_state(s.connection))
    return text


def service_table(s: Snapshot) -> Table:
    """Intake figures, two label/value pairs a row."""
    table = Table.grid(padding=(0, 2))
    for justify in ("left", "right", "left", "right"):
        table.add_column(justify=justify, no_wrap=True)
    table.add_row("throughput", f"{s.rate:,.1f} ev/s", "reconnects", f"{s.reconnects}")
    table.add_row(
        "committed", f"{s.committed:,}", "gaps (open)", f"{s.gaps_opened} ({s.gaps_open})"
    )
    table.add_row("latency p50", _ms(s.p50_ms), "quarantined", f"{s.quarantined}")
    table.add_row(
        "latency p99", _ms(s.p99_ms), "dup / reord", f"{s.duplicates:,} / {s.reordered:,}"
    )
    return table


def sinks_table(s: Snapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    table.add_column("sink", no_wrap=True, min_width=8)
    table.add_column("state", no_wrap=True, min_width=10)
    table.add_column("delivered", justify="right", no_wrap=True)
    table.add_column("backlog", justify="right", no_wrap=True)
    table.add_column("retries", justify="right", no_wrap=True)
    for sink in s.sinks:
        table.add_row(
            sink.name,
            _state(sink.state),
            f"{sink.delivered:,}",
            f"{sink.backlog:,}",
            f"{sink.retries:,}",
        )
    return table


def receiver_line(s: Snapshot) -> Text:
    text = Text(
        f"receiver: {s.receiver_stored:,} stored · {s.receiver_failures:,} failed on purpose"
    )
    if s.outage_left > 0:
        text.append(f" · OUTAGE {s.outage_left:.1f} s left", style="bold red")
    return text


def flows_table(s: Snapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    table.add_column("IVR flow (as journaled)", no_wrap=True, min_width=24, max_width=32)
    table.add_column("in IVR now", justify="right")
    table.add_column("entered", justify="right")
    table.add_column("left", justify="right")
    for flow in s.flows:
        table.add_row(flow.name, f"{flow.in_ivr}", f"{flow.entered:,}", f"{flow.left:,}")
    if not s.flows:
        table.add_row("(no calls yet)", "", "", "")
    return table


def footer(s: Snapshot) -> Text:
    parts = []
    if s.last_injection:
        parts.append(f"last: {s.last_injection}")
    if s.next_injection:
        parts.append(f"next: {s.next_injection}")
    return Text(" · ".join(parts), style="dim", overflow="ellipsis", no_wrap=True)


def frame(s: Snapshot) -> RenderableType:
    """One frame of the live dashboard (about 20 lines)."""
    return Group(
        header(s),
        Text(),
        service_table(s),
        Text(),
        sinks_table(s),
        receiver_line(s),
        Text(),
        flows_table(s),
        footer(s),
    )


def log_lines(s: Snapshot) -> list[str]:
    """The same figures as a few plain lines (for a log file), each within 80 columns."""
    pad = " " * 10
    sinks = " · ".join(
        f"{x.name} {x.delivered:,}" + (f" (+{x.backlog:,})" if x.backlog else "") for x in s.sinks
    )
    lines = [
        f"[{s.elapsed:6.1f}s] {s.rate:,.0f} ev/s · {s.committed:,} committed"
        f" · p50 {_ms(s.p50_ms)} · p99 {_ms(s.p99_ms)}",
        f"{pad}source {s.connection} · reconnects {s.reconnects} · gaps {s.gaps_opened}"
        f" ({s.gaps_open} open) · in IVR {sum(f.in_ivr for f in s.flows)}",
        f"{pad}quarantined {s.quarantined} · duplicates {s.duplicates:,}"
        f" · reordered {s.reordered:,}",
        f"{pad}{sinks}",
    ]
    return [_fit(line) for line in lines]


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def injection_line(at: float, label: str, detail: str) -> str:
    return _fit(f"[{at:6.1f}s] >> {label}" + (f": {detail}" if detail else ""))


# -- the summary -----------------------------------------------------------------------------------


def _counts(items: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in items.items() if v) or "none"


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="ledger → journal → sinks", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("lost", justify="right", no_wrap=True)
    table.add_column("dup", justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold", max_width=42)
    generated = summary["generated"]
    table.add_row(
        "emulator",
        f"{generated['events']:,}",
        "",
        "",
        f"sequenced, of {generated['facts']:,} facts generated",
    )
    journal = summary["journal"]
    received = summary["received"]
    absorbed = received["frames_absorbed"]
    table.add_row(
        "journal",
        f"{journal['events']:,}",
        _bad(journal["lost"]),
        _bad(journal["duplicates"]),
        f"{absorbed.get('duplicate', 0):,} duplicate frames dropped,"
        f" {absorbed.get('early', 0):,} reordered, {journal['recovered']:,} recovered late",
    )
    for name, sink in summary["delivered"].items():
        notes = []
        if sink["retries"]:
            notes.append(f"{sink['retries']:,} deliveries retried")
        if sink["redeliveries_absorbed"]:
            notes.append(f"{sink['redeliveries_absorbed']:,} repeats de-duplicated")
        if sink["unexpected"]:
            notes.append(f"{sink['unexpected']:,} events the journal lacks")
        note = ", ".join(notes)
        table.add_row(
            name, f"{sink['delivered']:,}", _bad(sink["lost"]), _bad(sink["duplicates"]), note
        )
    return table


def _bad(count: int) -> Text:
    return Text(f"{count:,}", style="bold red" if count else "green")


def summary_lines(summary: dict[str, Any]) -> list[str]:
    quarantine = summary["quarantined"]
    gaps = summary["gaps"]
    reconnects = summary["reconnects"]
    latency = summary["latency_ms"]
    audit = summary["audit"]
    states = _counts(gaps["states"])
    signed = f"{audit['signed_checkpoints']} signed" if audit["signatures_checked"] else "unsigned"
    lines = [
        f"quarantined  {quarantine['frames']} frame(s) for {quarantine['injected']} malformed"
        f" injected ({'accounted for' if quarantine['accounted'] else 'MISMATCH'})",
        f"gaps         {gaps['opened']} opened ({states}); {gaps['missing_in_gaps']} event(s)"
        f" still missing",
        f"reconnects   {reconnects['total']} ({_counts(reconnects['by_reason'])})",
        f"latency      receive → commit p50 {_ms(latency.get('p50_ms'))},"
        f" p99 {_ms(latency.get('p99_ms'))}",
        f"audit        {'intact' if audit['intact'] else 'NOT INTACT'}: {audit['records']:,}"
        f" records, {audit['checkpoints']} checkpoint(s), {signed}",
    ]
    return lines


def verdict_line(summary: dict[str, Any]) -> Text:
    if summary["ok"]:
        return Text(
            f"OK: nothing lost ({summary['lost']}), nothing duplicated"
            f" ({summary['duplicates']}), audit intact",
            style="bold green",
        )
    return Text(f"FAILED: {len(summary['problems'])} problem(s)", style="bold red")


def summary_view(summary: dict[str, Any]) -> RenderableType:
    parts: list[RenderableType] = [summary_table(summary)]
    parts.extend(Text(line) for line in summary_lines(summary))
    parts.extend(Text(f"PROBLEM  {p}", style="red") for p in summary["problems"])
    parts.append(verdict_line(summary))
    return Group(*parts)
