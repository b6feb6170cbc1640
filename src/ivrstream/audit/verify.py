"""Verify an audit trail: walk every file and checkpoint and name the first bad record of each file.

Rules this module keeps:

- Files are taken in name order (which is chain order), one at a time: memory holds the file
  being judged and the one before it, never the trail.
- Reasons, each decided from the chain alone:

  EDITED         a record changed: the next record's prev no longer matches its hash while the
                 seqs are in order (the changed record is reported), or its seq changed under an
                 intact link, or it is no longer a record at all
  DELETED        a seq is missing and appears nowhere later (or a file lost its first record)
  INSERTED       a record outside the chain: a repeated seq, or a record the next one skips over
  REORDERED      a seq jumps ahead while the missing seq appears later in the file
  TRUNCATED      a torn last line, or fewer records than the next file's ``file_opened`` promises
  REPLACED       "replaced or foreign file": its first record does not chain to the previous file
  MISSING        (gap) the file ``file_opened`` names is absent, or a file was not closed by its
                 rotation checkpoint, or the newest file was closed by rotation and its successor
                 is absent
  BAD_SIGNATURE  a checkpoint that does not verify with the public key, is signed by another
                 key, or whose fields do not match the chain (file, records, last hash,
                 previous signature): a forged checkpoint
  UNSIGNED       an unsigned checkpoint when a public key was given

- After a file's first bad record the rest of that file is only counted, and the link into the
  next file is not judged (the next file is anchored at its own ``file_opened``).
- Without a public key, signatures are not checked, and the report says so; unsigned checkpoints
  are valid but the report says integrity rests on the hash chain only.
- Records after the newest checkpoint are protected by the chain alone: deleting or rewriting
  the very last records leaves nothing behind to betray it. The report counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ivrstream.audit import keys
from ivrstream.audit.chain import File, Line, classify, first_prev, read_file
from ivrstream.audit.records import (
    CHECKPOINT,
    FILE_OPENED,
    KINDS,
    TORN_LINE_REPAIRED,
    ZERO_HASH,
    canonical,
)
from ivrstream.audit.report import (
    BAD_SIGNATURE,
    DELETED,
    EDITED,
    GAP,
    INSERTED,
    INVALID,
    MISSING,
    REORDERED,
    REPLACED,
    TRUNCATED,
    UNSIGNED,
    UNSIGNED_NOTE,
    VALID,
    FileReport,
    Finding,
    Report,
    expand,
)


class _Verifier:
    """One pass over the trail. ``expected_hash``/``expected_seq`` describe the next record the
    chain wants; ``last_signature`` the signature the next checkpoint must name as previous."""

    on_file: Callable[[int, int, int], None] | None = None

    def __init__(self, paths: list[Path], public_key: Ed25519PublicKey | None) -> None:
        self.paths = paths
        self.names = {p.name for p in paths}
        self.public_key = public_key
        self.key_id = keys.key_id(public_key) if public_key else None
        self.expected_hash = ZERO_HASH
        self.expected_seq = 1
        self.last_signature: str | None = None
        self.key_ids: set[str] = set()
        self.reports: list[FileReport] = []

    def run(self) -> Report:
        previous: File | None = None
        for index, path in enumerate(self.paths):
            current = read_file(path)
            last = index + 1 == len(self.paths)
            link = None if last else first_prev(self.paths[index + 1])
            if link is not None:
                current.successors[link] += 1  # the next file's first record links to this one
            self.reports.append(current.report)
            self.check_file(current, previous, last=last)
            if self.on_file is not None:
                self.on_file(index + 1, len(self.paths), path.stat().st_size)
            previous = current  # holds two files at most: the one judged and the one before
        assert previous is not None
        if previous.closed and previous.report.status != INVALID:
            detail = (
                f"missing file: {previous.name} was closed by rotation, "
                "but the file after it is not here"
            )
            self.gap(previous, None, None, detail)
        return self.report()

    # -- outcomes ------------------------------------------------------------------------------

    def fail(self, f: File, reason: str, line: int | None, seq: int | None, detail: str) -> None:
        """Record ``f``'s first bad record (later ones are not reported)."""
        report = f.report
        if report.status == INVALID:
            return
        if report.finding is not None:
            report.notes.append(f"gap: {report.finding.detail}")
        report.status = INVALID
        report.finding = Finding(reason=reason, file=f.name, line=line, seq=seq, detail=detail)

    def fail_at(self, f: File, index: int, reason: str, detail: str) -> None:
        line = f.lines[index]
        self.fail(f, reason, line.no, line.seq, detail)

    def gap(self, f: File, line: int | None, seq: int | None, detail: str) -> None:
        report = f.report
        if report.status == VALID:
            report.status = GAP
            report.finding = Finding(reason=MISSING, file=f.name, line=line, seq=seq, detail=detail)
        else:
            report.notes.append(f"gap: {detail}")

    # -- files -------------------------------------------------------------------------------

    def check_file(self, f: File, previous: File | None, *, last: bool) -> None:
        if not f.lines:
            detail = "the file holds only a cut-off line" if f.torn else "the file is empty"
            self.fail(f, TRUNCATED, 1, None, detail)
            return
        if not self.open_file(f, previous):
            return
        for index in range(1, len(f.lines)):
            if not self.check_line(f, index):
                return
        if f.torn:
            self.fail(
                f,
                TRUNCATED,
                len(f.lines) + 1,
                self.expected_seq,
                f"the last line is cut off: {len(f.torn)} bytes without a newline "
                "(a crash mid-write, or the file was truncated)",
            )
        elif last and not f.closed:
            self.note_unsealed(f)

    def open_file(self, f: File, previous: File | None) -> bool:
        """Judge line 1 (``file_opened``) and the link from ``previous``; False if ``f`` failed."""
        first = f.lines[0]
        if first.error is not None:
            self.fail_at(f, 0, EDITED, f"line 1 is not an audit record ({first.error})")
            return False
        record = first.record
        if record is None or first.kind != FILE_OPENED:
            later = next((ln.no for ln in f.lines if ln.kind == FILE_OPENED), None)
            if later is not None:
                detail = f"the file's file_opened record is at line {later}, not line 1"
                self.fail_at(f, 0, REORDERED, detail)
            else:
                missing = int(first.seq or 1) - 1
                detail = f"the file's first record (file_opened, seq {missing}) is missing"
                self.fail(f, DELETED, 1, missing, detail)
            return False
        named = record.get("previous_file")
        if record.get("file") != f.name:
            detail = f"replaced or foreign file: its file_opened names {record.get('file')!r}"
            self.fail_at(f, 0, REPLACED, detail)
            return False
        if record.get("previous_last_hash") != first.prev:
            self.fail_at(f, 0, EDITED, "file_opened: previous_last_hash differs from its prev")
            return False
        if previous is None and named is None:
            if first.seq != 1 or first.prev != ZERO_HASH:
                detail = "the trail's first record is not seq 1 with prev 000…0: it was altered"
                self.fail_at(f, 0, EDITED, detail)
                return False
            self.last_signature = None
        elif named is None:
            assert previous is not None
            detail = f"replaced or foreign file: it starts a new chain but follows {previous.name}"
            self.fail_at(f, 0, REPLACED, detail)
            return False
        elif previous is None or named != previous.name:
            if named in self.names:
                after = previous.name if previous else "nothing"
                detail = f"replaced or foreign file: it continues {named}, but follows {after}"
                self.fail_at(f, 0, REPLACED, detail)
                return False
            detail = f"missing file {named}: the records before seq {first.seq} are not here"
            self.gap(f, 1, first.seq, detail)
            self.last_signature = record.get("previous_signature")
        elif not self.link(f, previous, first, record):
            return False
        self.expected_hash, self.expected_seq = first.hash, int(first.seq or 0) + 1
        return True

    def link(self, f: File, previous: File, first: Line, record: dict[str, Any]) -> bool:
        """``f`` names ``previous`` as the file before it: judge the link between them."""
        promised = record.get("previous_records")
        count = len(previous.lines)
        if previous.report.status == INVALID:
            f.report.notes.append(f"link from {previous.name} not judged: it is INVALID")
        elif isinstance(promised, int) and count < promised:
            detail = f"the file ends after {count} records; {f.name} says it had {promised}"
            self.fail(previous, TRUNCATED, count + 1, None, detail)
        elif isinstance(promised, int) and count > promised:
            detail = f"records after the file was closed: {f.name} says it had {promised}"
            self.fail_at(previous, promised, INSERTED, detail)
        elif previous.lines[-1].hash != first.prev:
            detail = (
                "replaced or foreign file: its first record does not chain to the last "
                f"record of {previous.name}"
            )
            self.fail_at(f, 0, REPLACED, detail)
            return False
        elif first.seq != self.expected_seq:
            detail = f"seq is {first.seq} where {self.expected_seq} belongs: the record was altered"
            self.fail_at(f, 0, EDITED, detail)
            return False
        else:
            if not previous.closed:
                detail = "missing checkpoint: the file was not closed by a rotation checkpoint"
                self.gap(previous, None, None, detail)
            return True
        # the previous file is broken at its end: anchor this one at its own file_opened
        self.last_signature = record.get("previous_signature")
        return True

    def note_unsealed(self, f: File) -> None:
        tail = 0
        for line in reversed(f.lines):
            if line.kind == CHECKPOINT:
                break
            tail += 1
        if tail:
            f.report.notes.append(
                f"the last {tail} records are not sealed by a checkpoint yet "
                "(the log is open, or the service stopped without a clean shutdown)"
            )

    # -- records -----------------------------------------------------------------------------

    def check_line(self, f: File, index: int) -> bool:
        line = f.lines[index]
        if line.error is not None:
            self.fail_at(f, index, EDITED, f"not an audit record ({line.error})")
            return False
        if line.prev != self.expected_hash or line.seq != self.expected_seq:
            reason, at, detail = classify(
                f,
                index,
                self.expected_hash,
                self.expected_seq,
                self.checkpoint_fault,
                self.signed_intact,
            )
            if reason == DELETED:
                self.fail(f, DELETED, line.no, self.expected_seq, detail)
            else:
                self.fail_at(f, at, reason, detail)
            return False
        if f.closed:
            detail = "records after the rotation checkpoint that closed the file"
            self.fail_at(f, index, INSERTED, detail)
            return False
        if line.kind == FILE_OPENED:
            self.fail_at(f, index, INSERTED, "a file_opened record in the middle of a file")
            return False
        if line.kind not in KINDS:
            # e.g. the newest checkpoint's kind edited so that its seal is no longer checked
            self.fail_at(f, index, EDITED, f"unknown record kind {line.kind!r}")
            return False
        if line.kind == CHECKPOINT and line.record is not None:
            problem = self.checkpoint_problem(f, index)
            if problem is not None:
                self.fail_at(f, index, *problem)
                return False
            self.accept_checkpoint(f, line.record)
        elif line.kind == TORN_LINE_REPAIRED and line.record is not None:
            f.report.notes.append(
                f"torn line repaired (seq {line.seq}): {line.record.get('discarded_bytes')} "
                f"bytes discarded from {line.record.get('file')} after a crash"
            )
        self.expected_hash, self.expected_seq = line.hash, int(line.seq or 0) + 1
        return True

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_problem(self, f: File, index: int) -> tuple[str, str] | None:
        line = f.lines[index]
        record = line.record
        assert record is not None
        fault = self.checkpoint_fault(line)
        if fault is not None:
            return fault
        forged = "forged checkpoint:"
        if record.get("file") != f.name:
            return BAD_SIGNATURE, f"{forged} it names file {record.get('file')!r}"
        if record.get("records") != index:
            return (
                BAD_SIGNATURE,
                f"{forged} it says {record.get('records')} records, the file has {index} before it",
            )
        if record.get("prev_signature") != self.last_signature:
            return BAD_SIGNATURE, "prev_signature is not the previous checkpoint's signature"
        return None

    def checkpoint_fault(self, line: Line) -> tuple[str, str] | None:
        """What is wrong with a checkpoint on its own (signature, key, internal hashes)."""
        record = line.record
        if record is None or line.kind != CHECKPOINT:
            return None
        if self.public_key is not None:
            signature = record.get("signature")
            if signature is None:
                return UNSIGNED, "the checkpoint is unsigned, but a public key was given"
            if record.get("key_id") != self.key_id:
                detail = f"signed by key {record.get('key_id')}, not by the given key {self.key_id}"
                return BAD_SIGNATURE, detail
            message = canonical({k: v for k, v in record.items() if k != "signature"})
            if not isinstance(signature, str) or not keys.signature_valid(
                self.public_key, message, signature
            ):
                detail = "the signature does not verify: the checkpoint was altered or forged"
                return BAD_SIGNATURE, detail
        if record.get("last_hash") != line.prev:
            detail = "forged checkpoint: last_hash is not the hash of the record before it"
            return BAD_SIGNATURE, detail
        return None

    def signed_intact(self, line: Line) -> bool:
        return (
            self.public_key is not None
            and line.record is not None
            and line.record.get("signature") is not None
            and self.checkpoint_fault(line) is None
        )

    def accept_checkpoint(self, f: File, record: dict[str, Any]) -> None:
        f.report.checkpoints += 1
        signature = record.get("signature")
        if signature is not None:
            f.report.signed_checkpoints += 1
            self.key_ids.add(str(record.get("key_id")))
        self.last_signature = signature
        if record.get("reason") == "rotation":
            f.closed = True

    # -- the report ----------------------------------------------------------------------------

    def report(self) -> Report:
        reports = self.reports
        checkpoints = sum(r.checkpoints for r in reports)
        signed = sum(r.signed_checkpoints for r in reports)
        notes = []
        if checkpoints == 0:
            notes.append("no checkpoints: integrity rests on the hash chain only")
        elif signed < checkpoints:
            notes.append(UNSIGNED_NOTE)
        if signed and self.public_key is None:
            by = ", ".join(sorted(self.key_ids))
            notes.append(f"{signed} signed checkpoints not checked: no public key given (key {by})")
        elif signed:
            notes.append(f"{signed} checkpoint signatures verified with key {self.key_id}")
        failures = [r.finding for r in reports if r.status != VALID and r.finding is not None]
        return Report(
            ok=bool(reports) and all(r.status == VALID for r in reports),
            files=reports,
            records=sum(r.records for r in reports),
            checkpoints=checkpoints,
            signed_checkpoints=signed,
            signatures_checked=self.public_key is not None,
            key_id=self.key_id,
            first_failure=failures[0] if failures else None,
            notes=notes,
        )


def verify(
    paths: Iterable[str | Path],
    public_key: Ed25519PublicKey | None = None,
    *,
    on_file: Callable[[int, int, int], None] | None = None,
) -> Report:
    """Verify the audit files under ``paths`` (files and/or directories); raises
    :class:`AuditPathError` when a path is missing or holds no audit files. ``on_file(done,
    total, size)`` hears after each file (``size`` in bytes), for a progress bar."""
    verifier = _Verifier(expand(paths), public_key)
    verifier.on_file = on_file
    return verifier.run()
