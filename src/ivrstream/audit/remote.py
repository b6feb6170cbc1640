"""The audit log in a process of its own, driven from the service over a pipe.

The trail's per-event work (hashing each canonical event, encoding and chaining its line) is
pure Python and C under the GIL. In the service's process it competed with intake and the
sinks for the one interpreter; in a child process it runs beside them on another core.

``python -m ivrstream.audit.remote`` reads requests on stdin and answers on stdout, one at a
time, each a 4-byte big-endian length and a pickle (parent and child are the same program):
first the log's settings, then ``(method, args)`` for :class:`AuditLog` methods. Every answer
is ``(ok, result or exception, file, seq)``. End of input — the service closed the pipe, or
died, even by ``kill -9`` — ends the child: everything the log acknowledged is written, and a
restarted service catches the trail up from the journal.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from ivrstream.audit.errors import AuditWriteError
from ivrstream.audit.keys import load_private_key
from ivrstream.audit.records import EventLike
from ivrstream.audit.writer import AuditLog
from ivrstream.clock import SystemClock
from ivrstream.sinks.base import Delivery

CALLABLE = frozenset({"append", "append_events", "tick", "close", "sync", "checkpoint"})
_LENGTH = struct.Struct(">I")
NICENESS = 10  # how much lower the log's process runs than the service
_encode_deliveries = msgspec.msgpack.Encoder().encode
_decode_deliveries = msgspec.msgpack.Decoder(list[Delivery]).decode


def audit_ids() -> Callable[[], str]:
    """Unique audit ids without a random draw per record: this run's random prefix and a
    counter (a uuid4 per record cost more than the rest of the record together)."""
    run = uuid.uuid4().hex[:16]
    counter = itertools.count(1)
    return lambda: f"{run}-{next(counter):08x}"


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _LENGTH.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed the pipe mid-message")
    return pickle.loads(data)  # noqa: S301 - our own child (or parent), over a private pipe


class RemoteAuditLog:
    """The service's side: a child process holding an :class:`AuditLog`. Calls block (run
    them on one worker thread); :attr:`file` and :attr:`seq` say where the log stands."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int,
        fsync_interval: float,
        checkpoint_interval: float,
        signing_key_file: str | None,
    ) -> None:
        self.settings = {
            "directory": str(directory),
            "max_bytes": max_bytes,
            "fsync_interval": fsync_interval,
            "checkpoint_interval": checkpoint_interval,
            "signing_key_file": signing_key_file,
        }
        self.file: str | None = None
        self.seq = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def open(self) -> RemoteAuditLog:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ivrstream.audit.remote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._call("open", self.settings)
        return self

    def append(self, records: list[dict[str, Any]]) -> None:
        self._call("append", records)

    def append_events(self, events: Sequence[EventLike]) -> None:
        if events and set(map(type, events)) == {Delivery}:
            # the service's case: MessagePack in C, far cheaper than pickling each tuple
            self._call("append_deliveries", _encode_deliveries(events))
        else:
            self._call("append_events", list(events))

    def tick(self) -> None:
        self._call("tick")

    def close(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            self._call("close")
        finally:
            self._process = None
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):  # a dead child: nothing to flush to
                        stream.close()
            process.wait(timeout=10)

    def _call(self, method: str, *args: Any) -> Any:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError("the audit log process is not running")
        with self._lock:
            try:
                _send(process.stdin, (method, args))
                ok, value, self.file, self.seq = _receive(process.stdout)
            except (EOFError, OSError) as exc:
                code = process.poll()
                raise AuditWriteError(
                    f"the audit log process is gone (exit status {code}): {exc}"
                ) from None
        if not ok:
            raise value
        return value


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's side: open the log on the first request, then answer until end of input."""
    log: AuditLog | None = None
    while True:
        try:
            method, args = _receive(requests)
        except EOFError:
            return  # the service is gone
        try:
            if method == "open":
                (settings,) = args
                log = AuditLog(
                    Path(settings["directory"]),
                    SystemClock(),
                    max_bytes=settings["max_bytes"],
                    fsync_interval=settings["fsync_interval"],
                    checkpoint_interval=settings["checkpoint_interval"],
                    signing_key=load_private_key(settings["signing_key_file"]),
                    id_factory=audit_ids(),
                )
                log.open()
                result = None
            elif method == "append_deliveries" and log is not None:
                log.append_events(_decode_deliveries(args[0]))
                result = None
            elif log is None or method not in CALLABLE:
                raise ValueError(f"not an audit log call now: {method!r}")
            else:
                result = getattr(log, method)(*args)
            answer = (True, result, log.file if log else None, log.seq if log else 0)
        except Exception as exc:  # handed back to the service, which decides
            answer = (False, exc, log.file if log else None, log.seq if log else 0)
        _send(answers, answer)
        if method == "close" and answer[0]:
            return


if __name__ == "__main__":
    # behind intake for the CPU: the trail follows the journal and may lag a flood a little,
    # while every moment intake loses to it is throughput lost (2 cores, measured)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICENESS)
    # answers go to the real stdout; anything else that prints lands on stderr instead
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)
