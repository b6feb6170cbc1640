"""The audit trail inside the service: events through a dispatcher, facts through hooks.

Rules this module keeps:

- One thread writes the trail (a single-thread executor), so event records and operational
  records never interleave mid-line and the event loop never waits on the disk.
- Event records come from the journal through :class:`AuditSink` and its own cursor, like any
  sink: a kill between a journal commit and the audit write loses nothing — on restart the
  dispatcher catches up. The sink skips events the trail already holds (read from its tail at
  start), so catching up never writes a record twice.
- Operational facts come from the service's hooks, and from administrative commands run while
  the service may be down (``journal dlq retry|purge``, ``audit verify --against-journal``),
  which leave their record in the journal's ``operations`` table for the trail to pick up.
- The trail ticks twice a second (fsync at least every ``fsync_interval``, hourly checkpoints,
  day rotation); closing writes ``service_stop`` and the closing checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from ivrstream import __version__
from ivrstream.audit import AuditLog, load_private_key, records
from ivrstream.audit.errors import AuditError
from ivrstream.audit.remote import RemoteAuditLog, audit_ids
from ivrstream.clock import Clock, SystemClock
from ivrstream.config import AuditSettings
from ivrstream.errors import ConfigError
from ivrstream.hooks import Hooks
from ivrstream.sinks.base import Delivery, Outcome

log = logging.getLogger("ivrstream.audit")
_EVENT_TIME = operator.attrgetter("event_time")
TAIL_BYTES = 8 * 1024 * 1024  # how much of the newest file to read for events already audited


class AuditTrail:
    """The service's audit log. With the system clock the log lives in a process of its own
    (:mod:`ivrstream.audit.remote`), so its hashing does not compete with intake and the sinks
    for the GIL; with any other clock (tests) in this process. Either way one worker thread
    makes every call, in order."""

    def __init__(
        self, settings: AuditSettings, clock: Clock, *, own_process: bool | None = None
    ) -> None:
        assert settings.directory is not None
        self.settings = settings
        self.clock = clock
        self.directory = Path(settings.directory)
        self.own_process = isinstance(clock, SystemClock) if own_process is None else own_process
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ivrstream-audit")
        self._log: AuditLog | RemoteAuditLog | None = None
        self.recent: set[str] = set()
        self.records = 0
        self.failures = 0

    async def open(self, config_digest: bytes) -> None:
        try:
            key = load_private_key(self.settings.signing_key_file)
        except (OSError, AuditError) as exc:
            raise ConfigError("audit.signing_key_file", str(exc)) from None
        if self.own_process:
            self._log = RemoteAuditLog(
                self.directory,
                max_bytes=self.settings.max_bytes,
                fsync_interval=self.settings.fsync_interval,
                checkpoint_interval=self.settings.checkpoint_interval,
                signing_key_file=self.settings.signing_key_file,
            )
        else:
            self._log = AuditLog(
                self.directory,
                self.clock,
                max_bytes=self.settings.max_bytes,
                fsync_interval=self.settings.fsync_interval,
                checkpoint_interval=self.settings.checkpoint_interval,
                signing_key=key,
                id_factory=audit_ids(),
            )
        await self._run(self._log.open)
        self.recent = await self._run(self._recent_event_ids)
        await self.append(
            [records.service_start(__version__), records.config_loaded(config_digest)]
        )

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def append(self, batch: list[dict[str, Any]]) -> None:
        assert self._log is not None
        await self._run(self._log.append, batch)
        self.records += len(batch)

    async def append_events(self, events: list[records.EventLike]) -> None:
        """Event records: hashing and encoding happen on the trail's thread."""
        assert self._log is not None
        await self._run(self._log.append_events, events)
        self.records += len(events)

    def note(self, record: dict[str, Any]) -> None:
        """Append an operational record soon (in order with everything else), from a hook."""
        if self._log is None:
            return
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._log.append, [record]
        )
        future.add_done_callback(self._noted)

    def _noted(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.failures += 1
            log.error("could not write an audit record: %s", error)
        else:
            self.records += 1

    async def tick(self) -> None:
        if self._log is not None:
            await self._run(self._log.tick)

    async def close(self, reason: str) -> None:
        if self._log is None:
            return
        audit_log, self._log = self._log, None
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, audit_log.append, [records.service_stop(reason)]
            )
            await asyncio.get_running_loop().run_in_executor(self._executor, audit_log.close)
        except AuditError as exc:
            log.error("could not close the audit trail cleanly: %s", exc)
        finally:
            self._executor.shutdown(wait=True)

    def _recent_event_ids(self) -> set[str]:
        files = sorted(self.directory.glob("audit-*.jsonl"))
        if not files:
            return set()
        with files[-1].open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
        ids = set()
        decoder = msgspec.json.Decoder(dict[str, Any])
        for line in tail.splitlines()[1 if size > TAIL_BYTES else 0 :]:
            try:
                record = decoder.decode(line)
            except msgspec.DecodeError:
                continue
            if record.get("kind") == "event":
                ids.add(str(record.get("event_id")))
        return ids

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"records": self.records, "failures": self.failures}
        if self._log is not None:
            stats["file"] = self._log.file
            stats["seq"] = self._log.seq
        return stats


class AuditSink:
    """Journaled events → event records. Delivered in journal order (one lane)."""

    name = "audit"

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.skipped = 0

    async def start(self) -> None:
        return None

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        recent = self.trail.recent
        fresh = [d for d in batch if d.event_id not in recent] if recent else batch
        events: list[records.EventLike]
        if None not in map(_EVENT_TIME, fresh):
            events = list(fresh)  # the usual case, checked in C: every delivery has its times
        else:
            events = [
                d
                if d.event_time is not None or d.sequence_id is not None
                else self._facts_from_body(d)  # built by hand, not read from a journal
                for d in fresh
            ]
        self.skipped += len(batch) - len(events)
        if events:
            try:
                await self.trail.append_events(events)
            except (AuditError, OSError) as exc:
                return Outcome.retry(f"audit trail: {exc}")
        return Outcome.ok(duplicates=len(batch) - len(events))

    @staticmethod
    def _facts_from_body(delivery: Delivery) -> records.EventFacts:
        try:
            facts = records.event_facts(delivery.body)
        except (msgspec.DecodeError, ValueError):
            facts = records.EventFacts(
                delivery.event_id, delivery.event_type or None, None, None, None, delivery.body
            )
        return facts._replace(event_id=delivery.event_id)

    async def close(self) -> None:
        return None

    def statistics(self) -> dict[str, Any]:
        return {**self.trail.statistics(), "skipped": self.skipped}


def config_digest(redacted: dict[str, Any]) -> bytes:
    """The configuration as canonical bytes (secrets already replaced): what gets hashed."""
    return msgspec.json.encode(redacted, order="sorted")


def wire(trail: AuditTrail, hooks: Hooks) -> None:
    """Turn the service's hooks into operational audit records."""
    hooks.on(
        "connected",
        lambda url, attempt: trail.note(
            records.connection_opened(url, dialect="eventstreams", attempt=attempt)
        ),
    )
    hooks.on(
        "disconnected",
        lambda code, reason: trail.note(
            records.connection_closed("eventstreams", reason=reason, code=code)
        ),
    )
    hooks.on("auth_failed", lambda error: trail.note(records.auth_failure(error)))
    hooks.on(
        "subscribed",
        lambda subscription_id, resume_after, server_sequence: trail.note(
            records.subscription_sent(
                subscription_id,
                [subscription_id],
                resume_after=resume_after,
                server_sequence=server_sequence,
            )
        ),
    )
    hooks.on(
        "gap",
        lambda stream, id, first, last, size, **window: trail.note(
            records.gap_opened(
                id,
                stream=stream,
                first_seq=first if first is not None else -1,
                last_seq=last if last is not None else -1,
                **window,
            )
        ),
    )
    hooks.on(
        "gap_closed",
        lambda stream, id, state, **counts: trail.note(
            records.gap_closed(id, state=state, **counts)
        ),
    )
    hooks.on(
        "dead_lettered",
        lambda sink, event_id, error, attempts: trail.note(
            records.dead_lettered(sink, event_id=event_id, error=error, attempts=attempts)
        ),
    )


OPERATION_CURSOR = "audit-operations"


def operation_record(kind: str, details: dict[str, Any]) -> dict[str, Any] | None:
    """The audit record for an administrative action noted in the journal."""
    if kind == "dlq_retry":
        return records.dlq_retry(details.get("sink"), count=int(details.get("count", 0)))
    if kind == "dlq_purge":
        return records.dlq_purge(details.get("sink"), count=int(details.get("count", 0)))
    if kind in ("verification", "gap_opened", "gap_closed"):  # gaps: `ivrstream backfill`
        return records.operational(kind, **details)
    return None
