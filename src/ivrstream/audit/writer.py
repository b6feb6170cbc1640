"""The audit log writer: append-only JSON lines in a hash chain, sealed by checkpoints.

Rules this module keeps:

- Each record's ``prev`` is the hash of the line before it, across files and restarts; ``seq``
  counts every record of the trail. ``open()`` continues the chain from the newest file's last
  whole record.
- A torn last line (a crash mid-write: no newline, or a line that is not a record) is cut off at
  ``open()`` and a ``torn_line_repaired`` record says how many bytes went and their SHA-256.
  Anything worse than one torn line stops ``open()``: the chain is not silently restarted. After
  an unclean stop, ``open()`` seals what it found with a ``recovery`` checkpoint.
- ``append()`` writes a whole batch with one ``write`` (the OS holds it when the call returns)
  and fsyncs when ``fsync_interval`` has passed since the last fsync; ``tick()`` does the same
  for an idle log, so call it at least once per ``fsync_interval``. Checkpoints, rotation and
  ``close()`` always fsync.
- A checkpoint is written every ``checkpoint_interval`` (checked by ``append`` and ``tick``), at
  rotation (as the last record of the old file) and at ``close()``. It names the file, the
  records before it in that file, their last hash and the previous checkpoint's signature, and
  is signed with Ed25519 when a key is given (``signature`` is null otherwise).
- Files rotate before a record would take the file past ``max_bytes``, and when the UTC day
  changes. Each file opens with a ``file_opened`` record naming the previous file, its record
  count and last hash. Names are ``audit-YYYYMMDD-NNNNNN.jsonl``; NNNNNN only grows and the day
  never goes backwards, so names sort in chain order.
- Every public method takes one lock: call it from any thread. Nothing here is async.
- After a failed write the log refuses further appends (``AuditWriteError``); ``close()`` and a
  new ``open()`` recover from what reached the disk.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ivrstream.audit import keys
from ivrstream.audit.errors import AuditError, AuditWriteError
from ivrstream.audit.records import (
    ASSIGNED_FIELDS,
    CHECKPOINT,
    FILE_OPENED,
    FILE_PATTERN,
    KINDS,
    TORN_LINE_REPAIRED,
    WRITER_KINDS,
    ZERO_HASH,
    EventLike,
    canonical,
    event_line,
    file_name,
    sha256_hex,
)
from ivrstream.audit.recovery import read_tail
from ivrstream.clock import Clock
from ivrstream.isotime import format_ms

MiB = 1024 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class AuditStats:
    """What the log has done since this process opened it."""

    file: str | None
    seq: int  # the last record's seq
    records: int  # records this process appended (events and operational)
    checkpoints: int
    files_opened: int
    fsyncs: int
    repaired_bytes: int  # torn bytes cut off at open


def _day(epoch_ms: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(epoch_ms / 1000))


class AuditLog:
    """``open()``, ``append()`` batches of records, ``tick()`` every second, ``close()``."""

    def __init__(
        self,
        directory: str | Path,
        clock: Clock,
        *,
        max_bytes: int = 64 * MiB,
        fsync_interval: float = 1.0,
        checkpoint_interval: float = 3600.0,
        signing_key: Ed25519PrivateKey | None = None,
        id_factory: Callable[[], str] | None = None,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        if max_bytes <= 0 or fsync_interval < 0 or checkpoint_interval <= 0:
            raise ValueError("max_bytes and checkpoint_interval must be > 0, fsync_interval >= 0")
        self.directory = Path(directory)
        self.clock = clock
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval
        self.checkpoint_interval = checkpoint_interval
        self._key = signing_key
        self._key_id = keys.key_id(signing_key.public_key()) if signing_key else None
        self._ids = id_factory or (lambda: str(uuid.uuid4()))
        self._fsync = fsync
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._name: str | None = None
        self._day = ""
        self._number = 0
        self._file_records = 0
        self._file_bytes = 0
        self._seq = 0
        self._prev = ZERO_HASH
        self._last_signature: str | None = None
        self._pending: list[bytes] = []
        self._dirty = False
        self._last_fsync = 0.0
        self._last_checkpoint = 0.0
        self._broken: BaseException | None = None
        self._stamp_ms, self._stamp = -1, ""
        self._stats = {
            "records": 0,
            "checkpoints": 0,
            "files_opened": 0,
            "fsyncs": 0,
            "repaired": 0,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> AuditLog:
        """Create the directory or continue its newest file (repairing a torn last line)."""
        with self._lock:
            if self._fd is not None:
                raise AuditError("the audit log is already open")
            self._broken = None
            self.directory.mkdir(parents=True, exist_ok=True)
            names = sorted(p.name for p in self.directory.iterdir() if FILE_PATTERN.match(p.name))
            now = self._now_ms()
            self._last_fsync = self._last_checkpoint = self.clock.monotonic()
            if names:
                self._resume(names, now)
            else:
                self._seq, self._prev, self._last_signature = 0, ZERO_HASH, None
                self._number, self._day = 0, ""
                self._start_file(None, 0, now)
            self._sync()
            return self

    def close(self) -> None:
        """Write the closing checkpoint, fsync and close; safe to call twice."""
        with self._lock:
            if self._fd is None:
                return
            try:
                if self._broken is None:
                    self._checkpoint("close", self._now_ms())
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the service calls --------------------------------------------------------------

    def append(self, records: list[dict[str, Any]]) -> None:
        """Seal and write ``records`` (each a dict with ``kind`` and its own fields; the log
        assigns seq, prev, logged_at and audit_id). Returns once the OS holds them."""
        for record in records:
            kind = record.get("kind")
            if kind not in KINDS or kind in WRITER_KINDS:
                raise ValueError(f"cannot append an audit record of kind {kind!r}")
            assigned = ASSIGNED_FIELDS.intersection(record)
            if assigned:
                raise ValueError(f"the audit log assigns {sorted(assigned)}; leave them out")
        self._append_batch(records, self._append_one)

    def append_events(self, events: Sequence[EventLike]) -> None:
        """:meth:`append` for event records, given as :class:`EventFacts` (or anything shaped
        like them): the same lines,
        built without a dict per record (this is the trail's hot path)."""
        self._append_batch(events, self._append_event)

    def _append_batch(self, items: Sequence[_T], append_one: Callable[[_T, int], None]) -> None:
        with self._lock:
            self._writable()
            now, mono = self._now_ms(), self.clock.monotonic()
            try:
                if mono - self._last_checkpoint >= self.checkpoint_interval:
                    self._checkpoint("interval", now)
                if _day(now) > self._day:
                    self._rotate(now)
                for item in items:
                    append_one(item, now)
            finally:
                self._flush()
            self._stats["records"] += len(items)
            self._maybe_fsync(mono)

    def tick(self) -> None:
        """Time-driven duties of an idle log: day rotation, the interval checkpoint, fsync."""
        with self._lock:
            self._writable()
            now, mono = self._now_ms(), self.clock.monotonic()
            if _day(now) > self._day:
                self._rotate(now)
            elif mono - self._last_checkpoint >= self.checkpoint_interval:
                self._checkpoint("interval", now)
            self._maybe_fsync(mono)

    def maybe_fsync(self) -> bool:
        """fsync if anything is unsynced and ``fsync_interval`` has passed; True if it did."""
        with self._lock:
            self._writable()
            return self._maybe_fsync(self.clock.monotonic())

    def sync(self) -> None:
        """fsync now (shutdown paths that will not reach ``close()``)."""
        with self._lock:
            self._writable()
            self._sync()

    def checkpoint(self, reason: str = "requested") -> dict[str, Any]:
        """Write a checkpoint now; returns the record as written."""
        with self._lock:
            self._writable()
            return self._checkpoint(reason, self._now_ms())

    @property
    def file(self) -> str | None:
        """The name of the file being written."""
        return self._name

    @property
    def seq(self) -> int:
        """The seq of the last record written."""
        return self._seq

    def statistics(self) -> AuditStats:
        with self._lock:
            s = self._stats
            return AuditStats(
                file=self._name,
                seq=self._seq,
                records=s["records"],
                checkpoints=s["checkpoints"],
                files_opened=s["files_opened"],
                fsyncs=s["fsyncs"],
                repaired_bytes=s["repaired"],
            )

    # -- sealing and writing -----------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def _writable(self) -> None:
        if self._fd is None:
            raise AuditError("the audit log is not open: call open() first")
        if self._broken is not None:
            raise AuditWriteError(f"an earlier write failed ({self._broken}); reopen the log")

    def _seal(
        self, fields: dict[str, Any], now: int, audit_id: str | None = None
    ) -> dict[str, Any]:
        record = dict(fields)
        record["seq"] = self._seq + 1
        record["prev"] = self._prev
        if now != self._stamp_ms:  # one batch shares one timestamp: format it once
            self._stamp_ms, self._stamp = now, format_ms(now)
        record["logged_at"] = self._stamp
        record["audit_id"] = self._ids() if audit_id is None else audit_id
        return record

    def _commit(self, line: bytes) -> None:
        self._pending.append(line + b"\n")
        self._seq += 1
        self._prev = sha256_hex(line)
        self._file_records += 1
        self._file_bytes += len(line) + 1

    def _append_one(self, fields: dict[str, Any], now: int) -> None:
        record = self._seal(fields, now)
        line = canonical(record)
        if self._file_records > 1 and self._file_bytes + len(line) + 1 > self.max_bytes:
            self._rotate(now)
            line = canonical(self._seal(fields, now, record["audit_id"]))
        self._commit(line)

    def _append_event(self, facts: EventLike, now: int) -> None:
        if now != self._stamp_ms:
            self._stamp_ms, self._stamp = now, format_ms(now)
        audit_id = self._ids()

        def line() -> bytes:
            return event_line(
                facts, seq=self._seq + 1, prev=self._prev, logged_at=self._stamp, audit_id=audit_id
            )

        sealed = line()
        if self._file_records > 1 and self._file_bytes + len(sealed) + 1 > self.max_bytes:
            self._rotate(now)
            sealed = line()
        self._commit(sealed)

    def _checkpoint(self, reason: str, now: int) -> dict[str, Any]:
        record = self._seal(
            {
                "kind": CHECKPOINT,
                "file": self._name,
                "records": self._file_records,
                "last_hash": self._prev,
                "prev_signature": self._last_signature,
                "key_id": self._key_id,
                "reason": reason,
            },
            now,
        )
        record["signature"] = keys.sign(self._key, canonical(record)) if self._key else None
        self._commit(canonical(record))
        self._sync()
        self._last_signature = record["signature"]
        self._last_checkpoint = self.clock.monotonic()
        self._stats["checkpoints"] += 1
        return record

    def _rotate(self, now: int) -> None:
        self._checkpoint("rotation", now)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._start_file(self._name, self._file_records, now)

    def _start_file(self, previous: str | None, previous_records: int, now: int) -> None:
        day = max(_day(now), self._day)
        name = file_name(day, self._number + 1)
        try:
            self._fd = os.open(
                self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640
            )
            self._fsync_directory()
        except OSError as exc:
            self._broken = exc
            raise AuditWriteError(f"cannot create {name}: {exc}") from exc
        self._name, self._day, self._number = name, day, self._number + 1
        self._file_records = self._file_bytes = 0
        self._stats["files_opened"] += 1
        self._write_file_opened(previous, previous_records, now)

    def _write_file_opened(self, previous: str | None, previous_records: int, now: int) -> None:
        fields = {
            "kind": FILE_OPENED,
            "file": self._name,
            "previous_file": previous,
            "previous_records": previous_records,
            "previous_last_hash": self._prev,
            "previous_signature": self._last_signature,
        }
        self._commit(canonical(self._seal(fields, now)))
        self._flush()

    def _flush(self) -> None:
        if not self._pending or self._fd is None:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self._broken = exc
            raise AuditWriteError(f"cannot write {self._name}: {exc}") from exc
        self._dirty = True

    def _sync(self) -> None:
        self._flush()
        if self._dirty and self._fd is not None:
            try:
                self._fsync(self._fd)
            except OSError as exc:
                self._broken = exc
                raise AuditWriteError(f"cannot fsync {self._name}: {exc}") from exc
            self._dirty = False
            self._stats["fsyncs"] += 1
        self._last_fsync = self.clock.monotonic()

    def _maybe_fsync(self, mono: float) -> bool:
        if self._dirty and mono - self._last_fsync >= self.fsync_interval:
            self._sync()
            return True
        return False

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    # -- recovery ----------------------------------------------------------------------------

    def _resume(self, names: list[str], now: int) -> None:
        tail = read_tail(self.directory, names, self._fsync)
        match = FILE_PATTERN.match(tail.name)
        assert match is not None
        self._day, self._number = match.group(1), int(match.group(2))
        self._seq, self._prev, self._last_signature = tail.seq, tail.prev, tail.last_signature
        self._fd = os.open(self.directory / tail.name, os.O_WRONLY | os.O_APPEND)
        self._name, self._file_records, self._file_bytes = tail.name, tail.records, tail.size
        if tail.records == 0:
            self._write_file_opened(tail.previous_file, tail.previous_records, now)
        if tail.closed:
            os.close(self._fd)
            self._start_file(tail.name, tail.records, now)
        if tail.torn:
            self._stats["repaired"] += len(tail.torn)
            fields = {
                "kind": TORN_LINE_REPAIRED,
                "file": tail.name,
                "offset": tail.size,
                "discarded_bytes": len(tail.torn),
                "discarded_sha256": sha256_hex(tail.torn),
            }
            self._commit(canonical(self._seal(fields, now)))
            self._flush()
        if tail.torn or not tail.sealed:
            self._checkpoint("recovery", now)  # seal what survived the crash


__all__ = ["AuditLog", "AuditStats"]
