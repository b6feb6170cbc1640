"""Cross-check an audit trail against the journal it records.

Rules this module keeps:

- Every journaled event has exactly one ``event`` record whose ``event_sha256`` is the SHA-256 of
  the journaled body, and every ``event`` record names an event the journal holds.
- It reads event records from every line that decodes, whether or not the chain verifies:
  chain integrity is :func:`ivrstream.audit.verify`'s question, this one is completeness.
- Run it on a stopped service (or accept that the newest events may not be audited yet: the
  audit follows the journal).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from ivrstream.audit.records import EVENT, parse_record, sha256_hex
from ivrstream.audit.report import expand
from ivrstream.journal import open_journal

NO_AUDIT_RECORD = "NO_AUDIT_RECORD"
DUPLICATE = "DUPLICATE"
HASH_MISMATCH = "HASH_MISMATCH"
NOT_IN_JOURNAL = "NOT_IN_JOURNAL"

_EVENT_MARK = b'"kind":"event"'


class JournalFinding(msgspec.Struct, kw_only=True):
    reason: str
    event_id: str
    file: str | None = None
    line: int | None = None
    detail: str


class JournalReport(msgspec.Struct, kw_only=True):
    ok: bool
    journal: str
    journal_events: int
    audit_events: int
    counts: dict[str, int]  # reason → how many
    findings: list[JournalFinding]  # the first ``limit``, in journal then audit order


def _audit_events(paths: list[Path]) -> dict[str, list[tuple[str, int, object]]]:
    """event_id → [(file, line, event_sha256)] for every event record."""
    found: dict[str, list[tuple[str, int, object]]] = {}
    for path in paths:
        for no, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if _EVENT_MARK not in raw:
                continue
            record, _ = parse_record(raw)
            if record is None or record["kind"] != EVENT:
                continue
            event_id = str(record.get("event_id"))
            found.setdefault(event_id, []).append((path.name, no, record.get("event_sha256")))
    return found


def against_journal(
    paths: Iterable[str | Path], journal_db: str | Path, *, limit: int = 100
) -> JournalReport:
    """Compare the event records under ``paths`` with the events in ``journal_db``."""
    audit = _audit_events(expand(paths))
    counts = {NO_AUDIT_RECORD: 0, DUPLICATE: 0, HASH_MISMATCH: 0, NOT_IN_JOURNAL: 0}
    findings: list[JournalFinding] = []

    def found(finding: JournalFinding) -> None:
        counts[finding.reason] += 1
        if len(findings) < limit:
            findings.append(finding)

    journaled: set[str] = set()
    with open_journal(journal_db) as journal:
        pos = 0
        while rows := journal.deliveries_after(pos, 5_000):
            for pos, event_id, _, _, body, *_ in rows:
                journaled.add(event_id)
                entries = audit.get(event_id, [])
                if not entries:
                    found(
                        JournalFinding(
                            reason=NO_AUDIT_RECORD,
                            event_id=event_id,
                            detail=f"journal position {pos} has no audit record",
                        )
                    )
                    continue
                if len(entries) > 1:
                    where = ", ".join(f"{name}:{no}" for name, no, _ in entries)
                    found(
                        JournalFinding(
                            reason=DUPLICATE,
                            event_id=event_id,
                            file=entries[1][0],
                            line=entries[1][1],
                            detail=f"{len(entries)} audit records ({where})",
                        )
                    )
                digest = sha256_hex(bytes(body))
                for name, no, recorded in entries:
                    if recorded != digest:
                        found(
                            JournalFinding(
                                reason=HASH_MISMATCH,
                                event_id=event_id,
                                file=name,
                                line=no,
                                detail=f"event_sha256 is not the SHA-256 of journal position {pos}",
                            )
                        )
    for event_id, entries in audit.items():
        if event_id not in journaled:
            for name, no, _ in entries:
                found(
                    JournalFinding(
                        reason=NOT_IN_JOURNAL,
                        event_id=event_id,
                        file=name,
                        line=no,
                        detail="the audit records an event the journal does not hold",
                    )
                )
    return JournalReport(
        ok=not any(counts.values()),
        journal=str(journal_db),
        journal_events=len(journaled),
        audit_events=sum(len(entries) for entries in audit.values()),
        counts=counts,
        findings=findings,
    )
