"""From frames to committed journal rows: decode, order, build canonical events, group-commit.

The hot path (:meth:`Intake.on_frame`) is synchronous and does no I/O: it decodes, runs the
ordering state machine and appends rows to the pending batch. Batches go to the journal writer
thread by size or every ``flush_interval``; the writer tells us (via the event loop) when they are
durable. When too many events wait for the disk, :attr:`Intake.backlogged` turns on and sources
stop reading their sockets until it clears — memory stays bounded, the server buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ivrstream.aio.tail import JournalTail
from ivrstream.clock import Clock
from ivrstream.codec import Decoded, FrameDecoder, Rejected
from ivrstream.config import JournalSettings, OrderingSettings
from ivrstream.hooks import Hooks
from ivrstream.identity import event_id, fallback_event_id
from ivrstream.isotime import format_ms, parse_ms
from ivrstream.journal import (
    BackfillMark,
    CommitResult,
    DeliveryColumns,
    GapRow,
    JournalError,
    JournalWriter,
    QuarantineRow,
    StreamMark,
    WriteBatch,
    open_journal,
)
from ivrstream.models import InteractionEvent
from ivrstream.privacy import Redactor, scrub_bytes
from ivrstream.protocol.ordering import Gap, Ordering, Outcome
from ivrstream.sinks.base import Delivery
from ivrstream.stats import CountHistogram, LatencyHistogram

log = logging.getLogger("ivrstream.intake")
SOURCE_MARK_PREFIX = "source:"  # streams rows of sources without sequence ids
_NO_EXTRA: dict[str, Any] = {}  # shared, never written to: most events have no extra fields


@dataclass(slots=True)
class Pending:
    """A decoded frame waiting for its turn (held by the ordering window)."""

    decoded: Decoded
    raw: bytes  # the frame as it came, for quarantine if it cannot be stored
    received_mono: float
    received_ms: int


@dataclass
class Stream:
    """One subscription's ordering state, as intake sees it."""

    key: str
    source: str
    ordering: Ordering[Pending]
    subscription_id: str | None = None
    resumed_after: int | None = None  # resumeAfter of the current connection
    first_seq: int | None = None  # first event sequence id on the current connection


class _IsoCache:
    """ISO-8601 for epoch ms, reusing the formatted second (most events share one)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch_ms: int) -> str:
        second = epoch_ms // 1000
        if second != self._second:
            self._second = second
            self._prefix = format_ms(second * 1000)[:-4]
        return f"{self._prefix}{epoch_ms % 1000:03d}Z"


@dataclass
class IntakeStats:
    frames: int = 0
    quarantined: int = 0
    committed: int = 0  # new rows durable in the journal
    duplicate_rows: int = 0  # rows the journal already had (same event_id)
    submitted: int = 0
    commits: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class Intake:
    """Owns the journal writer and the ordering state of every stream."""

    def __init__(
        self,
        journal: JournalSettings,
        ordering: OrderingSettings,
        clock: Clock,
        hooks: Hooks,
        *,
        max_frame_bytes: int,
        flush_threshold: int = 1_000,
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = journal
        self.ordering_settings = ordering
        self.clock = clock
        self.hooks = hooks
        self.decoder = FrameDecoder(max_frame_bytes)
        self.redactor = redactor  # caller privacy, before anything is stored
        self.flush_threshold = flush_threshold
        self.path = Path(journal.path)
        self.streams: dict[str, Stream] = {}
        self.stats = IntakeStats()
        self.latency = LatencyHistogram()  # frame received → journal commit
        self.event_latency = LatencyHistogram()  # server timestamp → journal commit
        self.commit_seconds = LatencyHistogram()  # time inside each journal transaction
        self.commit_sizes = CountHistogram()  # rows (events + quarantined) per commit
        self.on_resend: Callable[[str], None] = lambda key: None
        self.last_pos = 0
        self.error: BaseException | None = None
        self._writer: JournalWriter | None = None
        self._tail: JournalTail | None = None
        self._pending = WriteBatch()
        self._inflight = 0
        self._inflight_bytes = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._backlogged = False  # mirrors "not self._room.is_set()", cheap to read per frame
        self._committed = asyncio.Condition()
        self._expiry: asyncio.Task[None] | None = None
        self._monotonic = clock.monotonic
        self._wall_offset = clock.time() - clock.monotonic()  # wall = offset + monotonic
        self._received_iso = _IsoCache()
        self._event_iso = _IsoCache()
        self._touched: set[str] = set()  # streams whose high-water mark moved since the flush
        self._encode = msgspec.json.Encoder().encode
        self._saved_gaps: dict[str, list[GapRow]] = {}
        self._source_marks: dict[str, StreamMark] = {}  # sources without sequence ids
        self._background: set[asyncio.Future[None]] = set()
        self._quarantine_log = LogBudget(log, "quarantined frames", per=10.0, allowed=10)

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the journal, load where every stream stopped, start the writer."""
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await asyncio.to_thread(
            JournalWriter,
            self.path,
            synchronous=self.settings.synchronous,
            batch_max=self.settings.batch_max,
            flush_interval=0.0,
            on_commit=self._from_writer_thread,
        )
        with open_journal(self.path, readonly=False) as journal:
            marks = journal.streams()
            gaps = journal.gaps(state="open")
            self.last_pos = journal.last_pos()
        for mark in marks.values():
            if mark.stream.startswith(SOURCE_MARK_PREFIX):
                self._source_marks[mark.stream] = mark
                continue
            stream_gaps = [g for g in gaps if g.stream == mark.stream]
            self._saved_gaps[mark.stream] = stream_gaps
            self._stream(mark.stream, "eventstreams", mark)
        self._writer.start()
        self._expiry = asyncio.ensure_future(self._expire_loop())

    async def close(self) -> None:
        """Flush what is pending, wait until it is durable, stop the writer."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self.flush()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
            self._writer = None

    def share_commits(self, tail: JournalTail) -> None:
        """Put each committed stretch of events into ``tail`` as it commits, so dispatchers
        that keep up take them from memory instead of reading them back from SQLite."""
        self._tail = tail
        tail.fed = True
        if self._pending.columns is None and not self._pending.events:
            self._pending.columns = DeliveryColumns()

    def _new_batch(self) -> WriteBatch:
        return WriteBatch(columns=DeliveryColumns() if self._tail is not None else None)

    # -- streams --------------------------------------------------------------------------------

    def _stream(self, key: str, source: str, mark: StreamMark | None = None) -> Stream:
        stream = self.streams.get(key)
        if stream is None:
            gaps = [_gap_from_row(row) for row in self._saved_gaps.pop(key, [])]
            ordering: Ordering[Pending] = Ordering(
                high=mark.high if mark else 0,
                high_time=mark.high_time if mark else None,
                gaps=gaps,
                window_size=self.ordering_settings.window_size,
                window_seconds=self.ordering_settings.window_seconds,
            )
            stream = Stream(key, source, ordering, mark.subscription_id if mark else None)
            self.streams[key] = stream
        return stream

    def source_mark(self, key: str) -> StreamMark | None:
        """What :meth:`note_source` last recorded for ``key`` (also across restarts)."""
        return self._source_marks.get(key)

    def resume_point(self, key: str) -> int | None:
        """``resumeAfter`` for a new subscription on ``key`` (None: nothing journaled yet)."""
        stream = self.streams.get(key)
        if stream is None or stream.subscription_id is None:
            return None
        resume = stream.ordering.resume_after()
        self._save_gaps(stream, [g for g in stream.ordering.gaps if g.resend_requested])
        return resume

    def subscribed(
        self,
        key: str,
        source: str,
        subscription_id: str,
        server_last: int,
        resumed_after: int | None,
    ) -> None:
        """The server acknowledged: detect a restarted server sequence, start fresh streams."""
        stream = self._stream(key, source)
        ordering = stream.ordering
        now = self.clock.monotonic()
        known = stream.subscription_id
        if known is None:
            ordering.high = server_last  # a new stream starts from now
        elif known != subscription_id or server_last < ordering.high:
            log.warning(
                "stream %s: the server's sequence restarted (%s at %d, we had %s at %d);"
                " recording the unknown stretch as a gap",
                key,
                subscription_id,
                server_last,
                known,
                ordering.high,
            )
            self._handle(stream, ordering.restart_epoch(server_last, now))
        stream.subscription_id = subscription_id
        stream.resumed_after = resumed_after
        stream.first_seq = None
        self._pending.streams[key] = StreamMark(
            key, subscription_id, ordering.high, ordering.high_time
        )
        self._schedule_flush()

    # -- the hot path ---------------------------------------------------------------------------

    def on_frame(self, key: str, connection: str, payload: bytes, text: bool) -> None:
        """One frame from a socket: quarantine it, or order it and queue what becomes ready."""
        self.stats.frames += 1
        decoded = self.decoder.decode(payload, text=text)
        if isinstance(decoded, Rejected):
            self.quarantine("eventstreams", connection, payload, decoded.reason)
            return
        if self.decoder.has_new_fields:
            for name in self.decoder.new_fields():
                log.info("schema evolution: new top-level field %r in Event Streams frames", name)
                self.hooks.emit("schema_field", name=name)
        stream = self.streams[key]
        if stream.first_seq is None:
            stream.first_seq = decoded.sequence_id
        received_mono = self._monotonic()
        received_ms = round((self._wall_offset + received_mono) * 1000)
        if stream.ordering.take_next(decoded.sequence_id, decoded.event_time_ms):
            # the common case: exactly the next id, nothing held — journal it now
            self._append(stream, decoded, payload, received_mono, received_ms, False)
            self._touched.add(key)
            if len(self._pending.events) >= self.flush_threshold:
                self.flush()
            elif self._flush_handle is None:
                self._schedule_flush()
            return
        item = Pending(decoded, payload, received_mono, received_ms)
        outcome = stream.ordering.accept(
            decoded.sequence_id, item, decoded.event_time_ms, received_mono
        )
        if outcome.released or outcome.opened or outcome.changed:
            self._handle(stream, outcome)

    def append_events(self, events: Sequence[InteractionEvent], *, received_mono: float) -> None:
        """Queue canonical events built elsewhere (Notifications, backfill): privacy applied,
        encoded, committed with the next batch. The journal drops ids it already holds."""
        pending = self._pending
        for event in events:
            if self.redactor is not None:
                event = msgspec.structs.replace(
                    event,
                    data=self.redactor.redact(event.data),
                    extra=self.redactor.redact(event.extra) if event.extra else event.extra,
                )
            try:
                body = self._encode(event)
            except (TypeError, ValueError, OverflowError) as exc:
                raw = msgspec.json.encode(event.data) if event.data else b""
                self.quarantine(event.source, None, raw, f"cannot be stored as JSON: {exc}")
                continue
            pending.events.append(body)
            pending.event_ids.append(event.event_id)
            pending.event_times.append(parse_ms(event.event_time))
            pending.received.append(received_mono)
            columns = pending.columns
            if columns is not None:
                columns.conversation_ids.append(event.conversation_id or "")
                columns.event_types.append(event.event_type or "")
                columns.sequence_ids.append(event.sequence_id)
                columns.event_times.append(event.event_time)
                columns.received_at.append(event.received_at)
        if len(pending.events) >= self.flush_threshold:
            self.flush()
        else:
            self._schedule_flush()

    def record_gaps(self, rows: Sequence[GapRow]) -> None:
        """Open, update or close gaps that are not an Event Streams sequence (time windows of a
        lossy source, manual backfills), committed with the next batch."""
        self._pending.gaps.extend(rows)
        self._schedule_flush()

    def record_progress(self, mark: BackfillMark) -> None:
        """How far a backfill got: committed with (after) the events queued before it."""
        self._pending.backfill.append(mark)
        self._schedule_flush()

    def close_gap(self, row: GapRow) -> None:
        """A backfill closed ``row``: stop the stream's ordering waiting for it, record it."""
        stream = self.streams.get(row.stream)
        if stream is not None:
            for gap in stream.ordering.gaps:
                if gap.key == row.id:
                    stream.ordering.declare_lost(gap)
        self.record_gaps([row])

    def note_source(self, mark: StreamMark) -> None:
        """Where a source without sequence ids stands (its last sign of life), for a restart."""
        self._source_marks[mark.stream] = mark
        self._pending.streams[mark.stream] = mark
        self._schedule_flush()

    def quarantine(self, source: str, connection: str | None, raw: bytes, reason: str) -> None:
        """Keep a frame that failed a check, with why (at most ``max_frame_bytes`` of it:
        an oversized frame must not make the journal, or memory, grow without bound)."""
        self.stats.quarantined += 1
        size = len(raw)
        cap = self.decoder.max_frame_bytes
        if size > cap:
            raw = raw[:cap]
            reason = f"{reason} (the first {cap} of {size} bytes kept)"
        if self.redactor is not None:
            raw = scrub_bytes(raw)  # card and phone numbers out, even from unparsable bytes
        self._pending.quarantine.append(
            QuarantineRow(round(self.clock.time() * 1000), source, connection, reason, raw)
        )
        if self._quarantine_log.allow(self.clock.monotonic()):
            log.warning("quarantined a %d-byte frame from %s: %s", size, connection, reason)
        self.hooks.emit("quarantined", reason=reason, size=size, connection=connection)
        self._schedule_flush()

    def _handle(self, stream: Stream, outcome: Outcome[Pending]) -> None:
        pending = self._pending
        for released in outcome.released:
            item = released.item
            self._append(
                stream,
                item.decoded,
                item.raw,
                item.received_mono,
                item.received_ms,
                released.recovered,
            )
        if outcome.opened:
            for gap in outcome.opened:
                self._explain_gap(stream, gap)
            self._save_gaps(stream, outcome.opened)
            if stream.ordering.wants_resend():
                self.on_resend(stream.key)
        if outcome.changed:
            self._save_gaps(stream, outcome.changed)
            for gap in outcome.changed:
                if gap.is_filled:
                    self.hooks.emit("gap_closed", stream=stream.key, id=gap.key, state="filled")
        self._touched.add(stream.key)
        if len(pending.events) >= self.flush_threshold:
            self.flush()
        else:
            self._schedule_flush()

    def _append(
        self,
        stream: Stream,
        d: Decoded,
        raw: bytes,
        received_mono: float,
        received_ms: int,
        recovered: bool,
    ) -> None:
        if d.conversation_id and d.event_type != d.source_event_type:
            eid = event_id(d.conversation_id, d.event_type, d.event_time_ms)
        else:
            eid = fallback_event_id(stream.key, d.sequence_id, d.event_time_ms)
        timestamp = d.timestamp
        if not (len(timestamp) == 24 and timestamp[23] == "Z" and timestamp[19] == "."):
            timestamp = self._event_iso(d.event_time_ms)  # keep canonical ones as they are
        data, extra = d.data, d.extra or _NO_EXTRA
        if self.redactor is not None:
            data = self.redactor.redact(data)
            if extra:
                extra = self.redactor.redact(extra)
        received_at = self._received_iso(received_ms)
        event = InteractionEvent(
            event_id=eid,
            source=stream.source,
            event_type=d.event_type,
            conversation_id=d.conversation_id,
            sequence_id=d.sequence_id,
            event_time=timestamp,
            received_at=received_at,
            subscription_id=stream.subscription_id,
            source_event_type=d.source_event_type,
            recovered=recovered,
            extra=extra,
            data=data,
        )
        try:
            body = self._encode(event)
        except (TypeError, ValueError, OverflowError) as exc:
            self.quarantine(stream.source, None, raw, f"cannot be stored as JSON: {exc}")
            return
        pending = self._pending
        pending.events.append(body)
        pending.event_ids.append(eid)
        pending.event_times.append(d.event_time_ms)
        pending.received.append(received_mono)
        columns = pending.columns
        if columns is not None:
            columns.conversation_ids.append(d.conversation_id)
            columns.event_types.append(d.event_type)
            columns.sequence_ids.append(d.sequence_id)
            columns.event_times.append(timestamp)
            columns.received_at.append(received_at)

    def _explain_gap(self, stream: Stream, gap: Gap) -> None:
        resumed = stream.resumed_after
        if (
            resumed is not None
            and gap.last is not None
            and resumed < gap.first
            and stream.first_seq is not None
            and stream.first_seq > gap.last
        ):
            # we resumed before it and the server did not have it
            stream.ordering.mark_resend_requested(gap)
        size = "unknown" if gap.last is None else str(gap.last - gap.first + 1)
        log.warning(
            "gap in %s: sequence %d..%s (%s events) missing",
            stream.key,
            gap.first,
            gap.last if gap.last is not None else "?",
            size,
        )
        gap.key = gap.key or uuid.uuid4().hex
        self.hooks.emit(
            "gap", stream=stream.key, id=gap.key, first=gap.first, last=gap.last, size=gap.size
        )

    def _save_gaps(self, stream: Stream, gaps: list[Gap]) -> None:
        for gap in gaps:
            gap.key = gap.key or uuid.uuid4().hex
            self._pending.gaps.append(_gap_row(stream, gap))

    # -- batching and commits -------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(self.settings.flush_interval, self.flush)

    def flush(self) -> None:
        """Hand the pending batch to the writer now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch = self._pending
        for key in self._touched:
            stream = self.streams[key]
            ordering = stream.ordering
            batch.streams[key] = StreamMark(
                key, stream.subscription_id, ordering.high, ordering.high_time
            )
        self._touched.clear()
        if batch.empty() or self._writer is None:
            return
        self._pending = self._new_batch()
        batch.submitted = self.clock.monotonic()
        self._wall_offset = self.clock.time() - batch.submitted
        # quarantined frames count too: a flood of bad frames must meet backpressure as well
        self._inflight += len(batch.events) + len(batch.quarantine)
        batch.weight = sum(map(len, batch.events)) + sum(len(q.raw) for q in batch.quarantine)
        self._inflight_bytes += batch.weight
        self.stats.submitted += len(batch.events)
        if (
            self._inflight > self.settings.max_pending
            or self._inflight_bytes > self.settings.max_pending_bytes
        ):
            self._room.clear()
            self._backlogged = True
        self._writer.submit(batch)

    def submit(self, batch: WriteBatch) -> None:
        """Hand a batch that is not intake's own (sink cursors, dead letters) to the writer."""
        if self._writer is not None and not batch.empty():
            self._writer.submit(batch)

    @property
    def backlogged(self) -> bool:
        """True while more events wait for the disk than ``max_pending``: stop reading."""
        return self._backlogged

    async def wait_for_room(self) -> None:
        await self._room.wait()
        if self.error is not None:
            raise JournalError(str(self.error))

    def _from_writer_thread(self, result: CommitResult) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._committed_batches, result)

    def _committed_batches(self, result: CommitResult) -> None:
        if result.error is not None:
            self.error = result.error
            log.error("journal write failed: %s", result.error)
            self._room.set()
            self._backlogged = False
            return
        now_mono = result.committed
        now_ms = self.clock.time() * 1000
        size = 0
        for batch in result.batches:
            size += len(batch.events) + len(batch.quarantine)
            self._inflight_bytes -= batch.weight
            self.latency.add_many(map(operator.sub, itertools.repeat(now_mono), batch.received))
            self.event_latency.add_many(
                [max(0.0, (now_ms - event_time) / 1000) for event_time in batch.event_times]
            )
        self._inflight -= size
        self.stats.committed += result.inserted
        self.stats.duplicate_rows += result.duplicates
        self.stats.commits += 1
        self.commit_seconds.add(result.seconds)
        self.commit_sizes.add(size)
        if len(self.stats.batch_sizes) < 100_000:
            self.stats.batch_sizes.append(size)
        self.last_pos = max(self.last_pos, result.last_pos)
        if self._tail is not None and result.inserted and not result.duplicates:
            self._share(result)
        if (
            self._inflight <= self.settings.max_pending // 2
            and self._inflight_bytes <= self.settings.max_pending_bytes // 2
        ):
            self._room.set()
            self._backlogged = False
        task = asyncio.ensure_future(self._notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _share(self, result: CommitResult) -> None:
        """Every row of ``result`` was new, so its events sit at the consecutive positions
        ending at ``last_pos``: hand them to the tail as if read from the journal."""
        assert self._tail is not None
        batches = [b for b in result.batches if b.events]
        if any(b.columns is None or len(b.columns.event_types) != len(b.events) for b in batches):
            return  # not kept for some batch: the dispatchers read these rows back
        first = result.last_pos - result.inserted + 1
        rows = zip(
            range(first, result.last_pos + 1),
            _chain(b.event_ids for b in batches),
            _chain(b.columns.conversation_ids for b in batches),  # type: ignore[union-attr]
            _chain(b.columns.event_types for b in batches),  # type: ignore[union-attr]
            _chain(b.events for b in batches),
            _chain(b.columns.sequence_ids for b in batches),  # type: ignore[union-attr]
            _chain(b.columns.event_times for b in batches),  # type: ignore[union-attr]
            _chain(b.columns.received_at for b in batches),  # type: ignore[union-attr]
            strict=True,
        )
        deliveries = list(map(tuple.__new__, itertools.repeat(Delivery), rows))
        self._tail.add(first - 1, deliveries, read=False)

    async def _notify(self) -> None:
        async with self._committed:
            self._committed.notify_all()

    async def wait_idle(self) -> None:
        """Flush, then wait until everything handed to the writer is durable."""
        self.flush()
        async with self._committed:
            await self._committed.wait_for(lambda: self._inflight <= 0 or self.error is not None)

    async def wait_committed(self, after_pos: int) -> int:
        """Wait until the journal has rows after ``after_pos``; returns the new last position."""
        async with self._committed:
            await self._committed.wait_for(lambda: self.last_pos > after_pos or self.error)
        if self.error is not None:
            raise JournalError(str(self.error))
        return self.last_pos

    async def _expire_loop(self) -> None:
        tick = max(0.01, min(0.25, self.ordering_settings.window_seconds / 4))
        while True:
            await self.clock.sleep(tick)
            now = self.clock.monotonic()
            for stream in list(self.streams.values()):
                deadline = stream.ordering.deadline()
                if deadline is not None and deadline <= now:
                    self._handle(stream, stream.ordering.expire(now))

    def statistics(self) -> dict[str, Any]:
        return {
            "frames": self.stats.frames,
            "committed": self.stats.committed,
            "duplicate_rows": self.stats.duplicate_rows,
            "quarantined": self.stats.quarantined,
            "inflight": self._inflight,
            "inflight_bytes": self._inflight_bytes,
            "commits": self.stats.commits,
            "latency": self.latency.summary(),
            "event_latency": self.event_latency.summary(),
            "schema_fields": dict(self.decoder.field_counts),
            "streams": {
                key: {
                    "subscription_id": s.subscription_id,
                    "high": s.ordering.high,
                    "held": s.ordering.held,
                    "open_gaps": len(s.ordering.gaps),
                    **vars(s.ordering.stats),
                }
                for key, s in self.streams.items()
            },
        }


_chain = itertools.chain.from_iterable


class LogBudget:
    """At most ``allowed`` log lines every ``per`` seconds for one kind of message; the rest
    are counted and summed up once the window passes (a hostile server cannot flood the log)."""

    def __init__(self, logger: logging.Logger, what: str, *, per: float, allowed: int) -> None:
        self.logger = logger
        self.what = what
        self.per = per
        self.allowed = allowed
        self._window_start = float("-inf")
        self._used = 0
        self._suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= self.per:
            if self._suppressed:
                self.logger.warning(
                    "… and %d more %s in the last %.0fs (not logged one by one)",
                    self._suppressed,
                    self.what,
                    self.per,
                )
            self._window_start, self._used, self._suppressed = now, 0, 0
        if self._used < self.allowed:
            self._used += 1
            return True
        self._suppressed += 1
        return False


def _gap_row(stream: Stream, gap: Gap) -> GapRow:
    assert gap.key is not None
    return GapRow(
        id=str(gap.key),
        source=stream.source,
        stream=stream.key,
        first_seq=gap.first,
        last_seq=gap.last,
        time_from=gap.time_from,
        time_to=gap.time_to,
        opened_at=round(gap.opened_at * 1000),
        state="filled" if gap.is_filled else "open",
        filled=gap.filled,
        missing=[list(r) for r in gap.missing],
        resend_requested=gap.resend_requested,
        closed_at=None,
        note=f"{gap.filled} filled by late frames" if gap.filled else None,
    )


def _gap_from_row(row: GapRow) -> Gap:
    gap = Gap(
        row.first_seq or 0,
        row.last_seq,
        row.opened_at / 1000,
        row.time_from,
        row.time_to,
        missing=[list(r) for r in row.missing],
        filled=row.filled,
        resend_requested=row.resend_requested,
    )
    gap.key = row.id
    return gap
