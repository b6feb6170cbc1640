"""The chain as read from one file, and what a broken link means.

Rules this module keeps:

- A line is reduced to what judging it needs (number, hash, seq, prev, kind); the record itself is
  kept only for the kinds whose fields are checked, so a 64 MiB file costs little memory.
- :func:`classify` names the tamper from the chain alone, looking one record ahead and at the
  seqs and links of the whole file: an intact link with the wrong seq is an edit; a record the
  next one skips over, or a repeated seq, is an insertion; a seq that jumps ahead is a
  reordering when the missing seq comes later in the file, else a deletion; a broken link with
  the right seq is an edit of the record before it (or of this one, when the next record does
  not link to it either).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivrstream.audit.records import (
    CHECKPOINT,
    FILE_OPENED,
    TORN_LINE_REPAIRED,
    parse_record,
    sha256_hex,
)
from ivrstream.audit.report import DELETED, EDITED, INSERTED, REORDERED, FileReport

_KEPT = frozenset({FILE_OPENED, CHECKPOINT, TORN_LINE_REPAIRED})


@dataclass(slots=True)
class Line:
    """One line, reduced to what judging it needs; ``record`` is kept only for the kinds whose
    fields are checked (file_opened, checkpoint, torn_line_repaired)."""

    no: int
    hash: str
    seq: int | None = None
    prev: str | None = None
    kind: str | None = None
    record: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class File:
    path: Path
    report: FileReport
    lines: list[Line]
    torn: bytes
    successors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hashes: set[str] = field(default_factory=set)
    seq_at: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    closed: bool = False  # a rotation checkpoint has been accepted in it

    @property
    def name(self) -> str:
        return self.path.name


def read_file(path: Path) -> File:
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    lines = []
    for no, raw in enumerate(data[:cut].split(b"\n")[:-1] if cut else [], start=1):
        record, error = parse_record(raw)
        line = Line(no, sha256_hex(raw), error=error)
        if record is not None:
            line.seq, line.prev = int(record["seq"]), str(record["prev"])
            line.kind = sys.intern(str(record["kind"]))
            line.record = record if line.kind in _KEPT else None
        lines.append(line)
    f = File(
        path, FileReport(path=str(path), name=path.name, records=len(lines)), lines, data[cut:]
    )
    for index, line in enumerate(lines):
        f.hashes.add(line.hash)
        if line.seq is not None and line.prev is not None:
            f.successors[line.prev] += 1
            f.seq_at[line.seq].append(index)
    seqs = [line.seq for line in lines if line.seq is not None]
    if seqs:
        f.report.first_seq, f.report.last_seq = seqs[0], seqs[-1]
    return f


def first_prev(path: Path) -> str | None:
    """The ``prev`` of a file's first record (what the file claims to follow), if it has one."""
    with path.open("rb") as handle:
        first = handle.readline()
    record = parse_record(first.rstrip(b"\n"))[0] if first.endswith(b"\n") else None
    return None if record is None else str(record["prev"])


def classify(
    f: File,
    i: int,
    want_hash: str,
    want: int,
    fault: Callable[[Line], tuple[str, str] | None],
    sealed: Callable[[Line], bool],
) -> tuple[str, int, str]:
    """Why line ``i`` breaks the chain that wanted seq ``want`` linked to ``want_hash``:
    (reason, index of the bad record, detail). ``fault`` says what is wrong with a checkpoint
    on its own; ``sealed`` whether a line is a checkpoint whose signature verified."""
    lines = f.lines
    line = lines[i]
    s, p = int(line.seq or 0), line.prev
    after = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].error is None else None
    skipped = after is not None and after.prev == want_hash
    outside = "not part of the chain: the next record links to the record before it"
    if p == want_hash:
        if skipped:
            return INSERTED, i, outside
        return EDITED, i, f"seq is {s} where {want} belongs: the record was altered"
    others = [k for k in f.seq_at.get(s, []) if k != i]
    if others or s < want:
        for k in others:
            # two records claim the same place: the one nothing links to is the outsider
            if (
                k < i
                and lines[k].prev == p
                and f.successors.get(lines[k].hash, 0) == 0
                and f.successors.get(line.hash, 0) > 0
            ):
                detail = f"not part of the chain: seq {s} repeats at line {line.no}"
                return INSERTED, k, detail
        if others:
            return INSERTED, i, f"seq {s} repeats (also at line {lines[others[0]].no})"
        return INSERTED, i, f"seq {s} does not belong here (expected {want})"
    if s == want:
        if skipped:
            return INSERTED, i, outside
        problem = fault(line)
        if problem is not None:
            return problem[0], i, problem[1]
        if after is not None and after.seq == s + 1 and after.prev != line.hash:
            return EDITED, i, "its link to the record before it was altered"
        if sealed(lines[i - 1]):
            detail = "its link to the (intact, signed) checkpoint before it was altered"
            return EDITED, i, detail
        return EDITED, i - 1, "the record was altered: the next record's prev does not match it"
    genuine = f.successors.get(line.hash, 0) > 0 or p in f.hashes
    if skipped and not genuine:
        return INSERTED, i, outside
    if any(k > i for k in f.seq_at.get(want, [])):
        return REORDERED, i, f"seq {s} comes before seq {want}"
    missing = f"seq {want} is" if s == want + 1 else f"seqs {want}–{s - 1} are"
    return DELETED, i, f"{missing} missing (line {line.no} holds seq {s})"
