"""The demo's verdict: what the emulator generated against what the journal and every sink hold.

Rules this module keeps:

- :func:`build_summary` is a pure function of plain data (:class:`Evidence`): no I/O, no clock.
- An event is identified by its subscription and sequence id at the source (the emulator's
  ``assigned`` ledger entries) and by its event id downstream (journal → sinks).
- **lost**: sequenced by the server but not journaled, or journaled but missing from a sink.
  **duplicates**: a sequence id journaled twice, or an event id stored twice by one sink.
  **unexpected**: journaled but never sequenced (or for another conversation), stored by a sink
  but not journaled. Any of these, an audit trail that does not verify, a quarantined frame that
  was not injected or an injected one that was not quarantined, or a missing event outside any
  recorded gap, is a problem; the summary is ``ok`` only without problems.
- Duplicate and reordered *frames* the service absorbed, and deliveries a sink repeated and the
  receiver de-duplicated, are counted and shown — they are the guarantees at work, not faults.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any


@dataclass(frozen=True)
class Assigned:
    """One event the server sequenced for a subscription (a ledger ``assigned`` entry)."""

    subscription: str
    seq: int
    conversation_id: str


@dataclass(frozen=True)
class Journaled:
    """One journal row, in journal order."""

    event_id: str
    subscription: str | None
    seq: int | None
    conversation_id: str
    recovered: bool = False


@dataclass(frozen=True)
class GapInfo:
    state: str  # open | filled | partly_filled | lost
    missing: list[list[int]] = field(default_factory=list)  # [first, last] ranges still missing
    stream: str | None = None


@dataclass
class Evidence:
    """Everything the verdict is built from, gathered once the demo has stopped."""

    facts_generated: int
    assigned: list[Assigned]
    journal: list[Journaled]
    gaps: list[GapInfo]
    quarantined: dict[str, int]  # reason → frames
    malformed_sent: int  # malformed frames the emulator wrote on a socket
    frames: dict[str, int]  # absorbed by the service: duplicate, early (reordered), late
    injected: dict[str, int]  # frame faults the emulator fired: duplicate, reorder, skip, …
    sinks: dict[str, list[str]]  # sink → event ids in the order it stored them
    redeliveries: dict[str, int]  # sink → deliveries it got again and de-duplicated
    audit: dict[str, Any]  # what ``audit verify --against-journal`` reports (as plain data)
    retries: dict[str, int] = field(default_factory=dict)  # sink → deliveries tried again
    reconnects: dict[str, int] = field(default_factory=dict)  # reason → count
    latency_ms: dict[str, Any] = field(default_factory=dict)
    injections: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # duration, elapsed, seed, rate, …


def _journal_section(ev: Evidence) -> tuple[dict[str, Any], set[tuple[str, int]]]:
    expected = {(a.subscription, a.seq): a.conversation_id for a in ev.assigned}
    keys = [(j.subscription or "", j.seq) for j in ev.journal if j.seq is not None]
    counts = Counter(keys)
    journaled = set(keys)
    unexpected = sum(
        1
        for j in ev.journal
        if j.seq is None or expected.get((j.subscription or "", j.seq)) != j.conversation_id
    )
    in_order = [j.seq for j in ev.journal if j.seq is not None and not j.recovered]
    out_of_order = sum(1 for a, b in pairwise(in_order) if b < a)
    missing = set(expected) - journaled
    section = {
        "events": len(ev.journal),
        "recovered": sum(1 for j in ev.journal if j.recovered),
        "lost": len(missing),
        # the same sequence id twice (whatever the event ids), or the same event id twice
        "duplicates": max(
            sum(n - 1 for n in counts.values()),
            len(ev.journal) - len({j.event_id for j in ev.journal}),
        ),
        "unexpected": unexpected,
        "out_of_order": out_of_order,
    }
    return section, missing


def _gap_section(ev: Evidence, missing: set[tuple[str, int]]) -> dict[str, Any]:
    recorded: set[int] = set()
    for gap in ev.gaps:
        if gap.state != "filled":
            for first, last in gap.missing:
                recorded.update(range(first, last + 1))
    unrecorded = sum(1 for _, seq in missing if seq not in recorded)
    states = Counter(gap.state for gap in ev.gaps)
    return {
        "opened": len(ev.gaps),
        "states": dict(sorted(states.items())),
        "missing_in_gaps": len(missing) - unrecorded,
        "missing_outside_gaps": unrecorded,
        "accounted": unrecorded == 0,
    }


def _sink_section(
    stored: list[str], journal_ids: set[str], redelivered: int, retries: int
) -> dict[str, Any]:
    unique = set(stored)
    return {
        "delivered": len(unique & journal_ids),
        "lost": len(journal_ids - unique),
        "duplicates": len(stored) - len(unique),
        "unexpected": len(unique - journal_ids),
        "redeliveries_absorbed": redelivered,
        "retries": retries,
    }


def _audit_sections(audit: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    chain = audit.get("chain") or {}
    against = audit.get("journal")
    verdict = {
        "intact": bool(audit.get("ok")),
        "records": chain.get("records", 0),
        "checkpoints": chain.get("checkpoints", 0),
        "signed_checkpoints": chain.get("signed_checkpoints", 0),
        "signatures_checked": bool(chain.get("signatures_checked")),
        "first_failure": chain.get("first_failure"),
    }
    if against is None:
        return verdict, None
    counts = against.get("counts", {})
    as_sink = {
        "delivered": against.get("audit_events", 0) - counts.get("DUPLICATE", 0),
        "lost": counts.get("NO_AUDIT_RECORD", 0),
        "duplicates": counts.get("DUPLICATE", 0),
        "unexpected": counts.get("NOT_IN_JOURNAL", 0) + counts.get("HASH_MISMATCH", 0),
        "redeliveries_absorbed": 0,
        "retries": 0,
    }
    return verdict, as_sink


def build_summary(ev: Evidence) -> dict[str, Any]:
    """The verdict as plain data (``--json`` prints it as is); ``ok`` is the exit status."""
    journal, missing = _journal_section(ev)
    gaps = _gap_section(ev, missing)
    journal_ids = {j.event_id for j in ev.journal}
    delivered = {
        name: _sink_section(ids, journal_ids, ev.redeliveries.get(name, 0), ev.retries.get(name, 0))
        for name, ids in ev.sinks.items()
    }
    audit, audit_as_sink = _audit_sections(ev.audit)
    if audit_as_sink is not None:
        delivered["audit"] = audit_as_sink
    quarantined = sum(ev.quarantined.values())
    quarantine = {
        "frames": quarantined,
        "injected": ev.malformed_sent,
        "reasons": dict(sorted(ev.quarantined.items())),
        "accounted": quarantined == ev.malformed_sent,
    }
    lost = journal["lost"] + sum(s["lost"] for s in delivered.values())
    duplicates = journal["duplicates"] + sum(s["duplicates"] for s in delivered.values())
    problems = _problems(journal, gaps, delivered, quarantine, audit)
    return {
        "ok": not problems,
        "problems": problems,
        "run": ev.run,
        "generated": {"facts": ev.facts_generated, "events": len(ev.assigned)},
        "received": {
            "events": journal["events"],
            "recovered": journal["recovered"],
            "frames_absorbed": dict(sorted(ev.frames.items())),
            "faults_injected": dict(sorted(ev.injected.items())),
        },
        "journal": journal,
        "delivered": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "quarantined": quarantine,
        "gaps": gaps,
        "reconnects": {"total": sum(ev.reconnects.values()), "by_reason": ev.reconnects},
        "latency_ms": ev.latency_ms,
        "injections": ev.injections,
        "audit": audit,
    }


def _problems(
    journal: dict[str, Any],
    gaps: dict[str, Any],
    delivered: dict[str, dict[str, Any]],
    quarantine: dict[str, Any],
    audit: dict[str, Any],
) -> list[str]:
    problems: list[str] = []
    if journal["events"] == 0:
        problems.append("the journal is empty: no event went through")
    if journal["lost"]:
        problems.append(f"journal: {journal['lost']} sequenced event(s) never journaled")
    if not gaps["accounted"]:
        problems.append(
            f"journal: {gaps['missing_outside_gaps']} missing event(s) outside any recorded gap"
        )
    for key in ("duplicates", "unexpected", "out_of_order"):
        if journal[key]:
            problems.append(f"journal: {journal[key]} {key.replace('_', ' ')}")
    for name, sink in delivered.items():
        for key in ("lost", "duplicates", "unexpected"):
            if sink[key]:
                problems.append(f"{name}: {sink[key]} {key}")
    if not quarantine["accounted"]:
        problems.append(
            f"quarantine: {quarantine['frames']} frame(s) quarantined,"
            f" {quarantine['injected']} malformed frame(s) injected"
        )
    if not audit["intact"]:
        problems.append("audit: the trail does not verify against the journal")
    return problems
