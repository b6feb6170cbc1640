"""Where a reopened audit log continues: the newest file's last whole record.

Rules this module keeps:

- Only the newest file is read (and, when it holds nothing, the file before it): opening does
  not verify the trail, it finds where the chain ends.
- A torn tail (bytes after the last newline, or a last line that is not a record: a crash
  mid-write, or zeros after a power cut) is cut off and the cut fsynced; the caller records what
  went. One more bad line is beyond repair: :class:`AuditRecoveryError`, nothing is cut.
- The chain continues from the last whole record: its seq, its hash, and the newest checkpoint's
  signature (or, with no checkpoint in the file, the signature its ``file_opened`` carried over).
  ``sealed`` tells the writer whether the chain ended with a checkpoint; if not (an unclean
  stop) it seals what it found with a ``recovery`` checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ivrstream.audit.errors import AuditRecoveryError
from ivrstream.audit.records import CHECKPOINT, FILE_OPENED, ZERO_HASH, parse_record, sha256_hex

_CHECKPOINT_MARK = b'"kind":"checkpoint"'  # canonical JSON: no need to decode other lines


@dataclass(frozen=True)
class Tail:
    """The end of the chain as found on disk."""

    name: str  # the newest file: writing continues there
    seq: int  # the last whole record's seq (0: none yet)
    prev: str  # its hash
    last_signature: str | None  # the newest checkpoint's signature
    records: int  # whole records left in the newest file
    size: int  # its size after the cut
    torn: bytes  # what was cut off
    closed: bool  # it ends with a rotation checkpoint: continue in a new file
    sealed: bool  # the chain ends with a checkpoint (a clean shutdown, or a rotation)
    previous_file: str | None = None  # with no records: the file its file_opened must name
    previous_records: int = 0


def whole_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The newline-terminated lines of ``data`` (without newlines) and the torn rest."""
    cut = data.rfind(b"\n") + 1
    return (data[:cut].split(b"\n")[:-1] if cut else []), data[cut:]


def read_tail(directory: Path, names: list[str], fsync: Callable[[int], None]) -> Tail:
    """Find the end of the chain in ``names`` (audit file names, in order), repairing a torn
    last line of the newest file."""
    newest = names[-1]
    path = directory / newest
    lines, torn = whole_lines(path.read_bytes())
    if lines and parse_record(lines[-1])[0] is None:
        torn = lines.pop() + b"\n" + torn
    size = sum(len(line) + 1 for line in lines)
    if torn:
        _check_end(lines, newest)  # refuse before cutting anything
        with path.open("r+b") as handle:
            handle.truncate(size)
            fsync(handle.fileno())
    if lines:
        seq, prev, signature, kind, closed = _chain_end(lines, newest)
        return Tail(
            newest, seq, prev, signature, len(lines), size, torn, closed, kind == CHECKPOINT
        )
    previous = names[-2] if len(names) > 1 else None
    if previous is None:
        return Tail(newest, 0, ZERO_HASH, None, 0, 0, torn, closed=False, sealed=True)
    # the newest file was created, then the process died before its file_opened reached the disk
    older, rest = whole_lines((directory / previous).read_bytes())
    if rest or not older:
        raise AuditRecoveryError(f"{previous} ends with a torn line; run `ivrstream audit verify`")
    seq, prev, signature, kind, _ = _chain_end(older, previous)
    sealed = kind == CHECKPOINT
    return Tail(newest, seq, prev, signature, 0, 0, torn, False, sealed, previous, len(older))


def _check_end(lines: list[bytes], name: str) -> None:
    if lines and parse_record(lines[-1])[0] is None:
        raise AuditRecoveryError(
            f"{name}: the last two lines are not records; "
            "run `ivrstream audit verify` before writing more"
        )


def _chain_end(lines: list[bytes], name: str) -> tuple[int, str, str | None, str, bool]:
    """(seq, hash, newest checkpoint signature, last kind, closed by rotation) of a file's whole
    lines."""
    _check_end(lines, name)
    last = parse_record(lines[-1])[0]
    assert last is not None
    closed = last["kind"] == CHECKPOINT and last.get("reason") == "rotation"
    for line in reversed(lines):
        record = parse_record(line)[0] if _CHECKPOINT_MARK in line else None
        if record is not None and record["kind"] == CHECKPOINT:
            signature = record.get("signature")
            return int(last["seq"]), sha256_hex(lines[-1]), signature, last["kind"], closed
    first = parse_record(lines[0])[0]
    signature = first.get("previous_signature") if first and first["kind"] == FILE_OPENED else None
    return int(last["seq"]), sha256_hex(lines[-1]), signature, last["kind"], closed
