"""``ivrstream audit keygen | verify``: the work behind the commands, and how results look.

Rules this module keeps:

- ``verify`` is read-only: it never writes to the trail it checks.
- A result is intact only when every file is valid and, with ``--against-journal``, the audit
  and the journal record the same events; anything the user named wrongly (a path, a key, a
  journal) is a :class:`UsageProblem` (exit 2), never a verdict.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from ivrstream.audit import (
    AuditKeyError,
    AuditPathError,
    against_journal,
    load_public_key,
    verify,
)

STYLE = {"valid": "green", "INVALID": "bold red", "gap": "yellow"}


class UsageProblem(Exception):
    """A path, key or journal the user named cannot be used; the message says which."""


def verify_paths(
    paths: Sequence[str | Path],
    public_key: str | Path | None,
    journal: str | Path | None,
    *,
    on_file: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """``{"ok", "chain": Report, "journal": JournalReport | None}`` as plain data."""
    try:
        key = load_public_key(public_key) if public_key is not None else None
        report = verify(paths, key, on_file=on_file)
        checked = against_journal(paths, journal) if journal is not None else None
    except (AuditPathError, AuditKeyError, OSError) as exc:
        raise UsageProblem(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise UsageProblem(f"{journal}: not a journal ({exc})") from None
    return {
        "ok": report.ok and (checked is None or checked.ok),
        "chain": msgspec.to_builtins(report),
        "journal": None if checked is None else msgspec.to_builtins(checked),
    }


def _detail(file: dict[str, Any]) -> str:
    finding = file["finding"]
    parts = []
    if finding is not None:
        where = f"line {finding['line']}" if finding["line"] is not None else "end of file"
        seq = f", seq {finding['seq']}" if finding["seq"] is not None else ""
        parts.append(f"{finding['reason']} at {where}{seq}: {finding['detail']}")
    parts.extend(file["notes"])
    return "\n".join(parts)


def render(result: dict[str, Any], console: Console) -> None:
    chain = result["chain"]
    table = Table(title="audit trail", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("records", justify="right")
    table.add_column("seq", justify="right")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for file in chain["files"]:
        seqs = f"{file['first_seq']}–{file['last_seq']}" if file["first_seq"] is not None else "–"
        status = file["status"]
        table.add_row(
            file["name"],
            f"{file['records']:,}",
            seqs,
            f"[{STYLE[status]}]{status}[/]",
            _detail(file),
        )
    console.print(table)
    for note in chain["notes"]:
        console.print(f"note: {note}")
    journal = result["journal"]
    if journal is not None:
        _render_journal(journal, console)
    first = chain["first_failure"]
    if result["ok"]:
        console.print("[green]intact[/]")
    elif first is not None:
        console.print(
            f"[bold red]NOT INTACT[/]: {first['reason']} in {first['file']}"
            + (f" line {first['line']}" if first["line"] is not None else "")
        )
    else:
        console.print("[bold red]NOT INTACT[/]: the audit and the journal disagree")


def _render_journal(journal: dict[str, Any], console: Console) -> None:
    console.print(
        f"against journal {journal['journal']}: {journal['journal_events']:,} journaled events, "
        f"{journal['audit_events']:,} event records"
    )
    if journal["ok"]:
        return
    table = Table(title="audit vs journal", title_justify="left")
    for column in ("problem", "event id", "where", "detail"):
        table.add_column(column, overflow="fold")
    for finding in journal["findings"]:
        where = f"{finding['file']}:{finding['line']}" if finding["file"] else "–"
        table.add_row(finding["reason"], finding["event_id"], where, finding["detail"])
    console.print(table)
    counts = ", ".join(f"{reason} {n:,}" for reason, n in journal["counts"].items() if n)
    console.print(f"problems: {counts}")
