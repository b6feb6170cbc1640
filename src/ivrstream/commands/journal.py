"""``ivrstream journal stats | export | quarantine``: read a journal without disturbing it."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from ivrstream.journal import open_journal


def _when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def stats(path: str) -> dict[str, Any]:
    with open_journal(path) as journal:
        return journal.stats()


def render_stats(data: dict[str, Any], console: Console) -> None:
    table = Table(title=f"journal {data['path']}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events", f"{data['events']:,}")
    table.add_row("size", f"{data['bytes'] / 1e6:,.1f} MB")
    table.add_row("first event", data["first_event_time"] or "–")
    table.add_row("last event", data["last_event_time"] or "–")
    for source, count in sorted(data["by_source"].items()):
        table.add_row(f"from {source}", f"{count:,}")
    table.add_row("recovered (late or backfilled)", f"{data['recovered']:,}")
    table.add_row("quarantined frames", f"{data['quarantined']:,}")
    for state, count in sorted(data["gaps"].items()):
        table.add_row(f"gaps {state}", f"{count:,}")
    console.print(table)
    if data["by_type"]:
        types = Table(title="events by type", title_justify="left")
        types.add_column("type")
        types.add_column("events", justify="right")
        for name, count in sorted(data["by_type"].items(), key=lambda kv: -kv[1]):
            types.add_row(name, f"{count:,}")
        console.print(types)


EXPORT_PROGRESS_EVERY = 10_000  # events between progress reports


def export(
    path: str,
    out: IO[bytes],
    after: int = 0,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write canonical events as JSON lines, in journal order; returns how many.
    ``on_progress(done, total)`` hears how far it got, every few thousand events and at the
    end (the total is what the journal held after ``after`` when the export began)."""
    count = 0
    with open_journal(path) as journal:
        total = journal.count_after(after) if on_progress else 0
        for body in journal.iter_bodies(after):
            out.write(body)
            out.write(b"\n")
            count += 1
            if on_progress is not None and count % EXPORT_PROGRESS_EVERY == 0:
                on_progress(count, max(total, count))
    out.flush()
    if on_progress is not None:
        on_progress(count, max(total, count))
    return count


def quarantine(path: str, limit: int, with_raw: bool) -> list[dict[str, Any]]:
    with open_journal(path) as journal:
        entries = journal.quarantined(limit, with_raw=with_raw)
    for entry in entries:
        entry["received_at"] = _when(entry["received_at"])
        if with_raw:
            entry["raw_base64"] = base64.b64encode(entry.pop("raw")).decode()
    return entries


def render_quarantine(entries: list[dict[str, Any]], console: Console) -> None:
    if not entries:
        console.print("no quarantined frames")
        return
    table = Table(title="quarantined frames (newest first)", title_justify="left")
    for column in ("id", "received", "from", "bytes", "reason"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["received_at"],
            str(e["connection"] or e["source"]),
            f"{e['size']:,}",
            e["reason"],
        )
    console.print(table)


def stdout_bytes() -> IO[bytes]:
    return sys.stdout.buffer


def dead_letters(path: str, sink: str | None, limit: int) -> list[dict[str, Any]]:
    with open_journal(path) as journal:
        entries = journal.dead_letters(sink, limit=limit)
    for entry in entries:
        entry["failed_at"] = _when(entry["failed_at"])
    return entries


def render_dead_letters(entries: list[dict[str, Any]], console: Console) -> None:
    if not entries:
        console.print("no dead letters")
        return
    table = Table(title="dead letters (oldest first)", title_justify="left")
    for column in ("sink", "pos", "event id", "tries", "failed", "state", "error"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e["sink"],
            str(e["pos"]),
            e["event_id"],
            str(e["attempts"]),
            e["failed_at"],
            e["state"],
            e["error"],
        )
    console.print(table)


def retry_dead_letters(path: str, sink: str | None) -> int:
    """Queue dead letters for another try; the running service's dispatcher delivers them."""
    with open_journal(path, readonly=False) as journal:
        count = journal.queue_dead_letters(sink)
        journal.record_operation("dlq_retry", {"sink": sink, "count": count})
        return count


def purge_dead_letters(path: str, sink: str | None) -> int:
    with open_journal(path, readonly=False) as journal:
        count = journal.purge_dead_letters(sink)
        journal.record_operation("dlq_purge", {"sink": sink, "count": count})
        return count
