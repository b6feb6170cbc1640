"""What verification reports: reasons, per-file status, the first bad record, notes.

Rules this module keeps:

- A file is ``valid``, ``INVALID`` (with its first bad record: file, line, seq, reason, detail)
  or ``gap`` (a file or checkpoint is missing; the rest of the file verified). INVALID outranks
  gap; a gap found in a file that later turns INVALID stays in its notes.
- A report is ok only when every file is valid. Reports are msgspec Structs: ``--json`` is
  ``msgspec.to_builtins(report)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from ivrstream.audit.records import FILE_GLOB, operational

EDITED = "EDITED"
DELETED = "DELETED"
INSERTED = "INSERTED"
REORDERED = "REORDERED"
TRUNCATED = "TRUNCATED"
REPLACED = "REPLACED"
MISSING = "MISSING"
BAD_SIGNATURE = "BAD_SIGNATURE"
UNSIGNED = "UNSIGNED"

VALID, INVALID, GAP = "valid", "INVALID", "gap"
UNSIGNED_NOTE = "checkpoints unsigned: integrity rests on the hash chain only"


class AuditPathError(ValueError):
    """A path to verify does not exist or holds no audit files."""


class Finding(msgspec.Struct, kw_only=True):
    reason: str
    file: str
    line: int | None
    seq: int | None
    detail: str


class FileReport(msgspec.Struct, kw_only=True):
    path: str
    name: str
    status: str = VALID
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    signed_checkpoints: int = 0
    finding: Finding | None = None
    notes: list[str] = msgspec.field(default_factory=list)


class Report(msgspec.Struct, kw_only=True):
    ok: bool
    files: list[FileReport]
    records: int
    checkpoints: int
    signed_checkpoints: int
    signatures_checked: bool
    key_id: str | None
    first_failure: Finding | None
    notes: list[str]


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files and directories → the audit files, in chain (name) order."""
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            matches = sorted(path.glob(FILE_GLOB))
            if not matches:
                raise AuditPathError(f"no {FILE_GLOB} files in {path}")
            for match in matches:
                found.setdefault(match.resolve(), match)
        elif path.is_file():
            found.setdefault(path.resolve(), path)
        else:
            raise AuditPathError(f"no such file or directory: {path}")
    if not found:
        raise AuditPathError("no audit files given")
    return sorted(found.values(), key=lambda p: (p.name, str(p)))


def verification_record(report: Report) -> dict[str, Any]:
    """The ``verification`` record to append after a verification run."""
    failure = report.first_failure
    return operational(
        "verification",
        ok=report.ok,
        files=len(report.files),
        records=report.records,
        signatures_checked=report.signatures_checked,
        first_failure=None if failure is None else msgspec.to_builtins(failure),
    )
