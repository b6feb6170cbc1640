"""Append events to a JSON-lines file, flushed and fsynced per batch.

Rules this module keeps:

- One canonical event per line, in journal order; every batch is on disk (``fsync``) before it
  counts as delivered.
- Idempotent on the event id: after a restart the dispatcher re-delivers what it had not yet
  recorded as delivered; on start the sink reads the event ids at the end of the file (more than
  can be in flight) and skips any of them it is handed again.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

from ivrstream.config import JsonlSettings
from ivrstream.sinks.base import Delivery, Outcome

TAIL_BYTES = 64 * 1024 * 1024  # how much of the file's end to read for recent event ids


class _Head(msgspec.Struct):
    event_id: str = ""


class JsonlSink:
    def __init__(self, settings: JsonlSettings, name: str = "jsonl") -> None:
        self.name = name
        self.path = Path(settings.path)
        self._recent: set[str] = set()
        self.written = 0
        self.skipped = 0

    async def start(self) -> None:
        self._recent = await asyncio.to_thread(self._tail_ids)

    def _tail_ids(self) -> set[str]:
        if not self.path.exists():
            return set()
        decoder = msgspec.json.Decoder(_Head)
        with self.path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
            if tail and not tail.endswith(b"\n"):
                # a line torn by a crash: cut it off; its event is delivered again
                keep = tail.rfind(b"\n") + 1
                handle.truncate(size - len(tail) + keep)
                tail = tail[:keep]
                size = size - len(tail) + keep
        lines = tail.split(b"\n")
        if size > TAIL_BYTES:
            lines = lines[1:]  # the first line may be cut
        ids = set()
        for line in lines:
            if line.strip():
                try:
                    ids.add(decoder.decode(line).event_id)
                except msgspec.DecodeError:
                    continue  # a torn last line from a crash: it will be written again
        return ids

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        fresh = [d for d in batch if d.event_id not in self._recent]
        skipped = len(batch) - len(fresh)
        if fresh:
            try:
                await asyncio.to_thread(self._append, [d.body for d in fresh])
            except OSError as exc:
                return Outcome.retry(f"cannot write {self.path}: {exc}")
        self.written += len(fresh)
        self.skipped += skipped
        return Outcome.ok(duplicates=skipped)

    def _append(self, bodies: list[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(b"\n".join(bodies) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    async def close(self) -> None:
        return None

    def statistics(self) -> dict[str, Any]:
        return {"written": self.written, "duplicates": self.skipped, "path": str(self.path)}
