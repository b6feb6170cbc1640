"""One dispatcher per sink: read the journal after the sink's cursor, deliver, move the cursor.

Rules this module keeps:

- Events leave a sink's backlog only when the sink confirmed them (``ok``); the cursor advances
  in the same journal transaction that records any dead letters of that stretch. A restart
  resumes from the cursor; what was delivered but not yet recorded is delivered again, and
  the sink's idempotence on the event id makes that harmless.
- Events are split into ``lanes`` by conversation (CRC-32 of the conversation id), so one
  conversation's events always travel in journal order through one lane, while lanes deliver
  in parallel and the journal is read ahead of them. The cursor passes a stretch of the journal
  only when every lane has finished with it.
- ``retry``: exponential backoff with full jitter, never sooner than a ``Retry-After``; after
  ``max_attempts`` the batch's events are dead-lettered with the last error and the stream moves
  on. ``reject``: the batch is halved until the events at fault are found; only those are
  dead-lettered. ``gone``: the sink is disabled, loudly, and its cursor stays where it is.
- A dispatcher never touches intake's flow: a slow or failing sink only grows its own backlog.
- Dead letters queued by ``ivrstream journal dlq retry`` are delivered again (out of order —
  they are late by nature) and removed once confirmed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import zlib
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ivrstream.aio.intake import Intake
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.tail import JournalTail
from ivrstream.clock import Clock
from ivrstream.config import SinkSettings
from ivrstream.hooks import Hooks
from ivrstream.journal import DeadLetterRow, DeliveryRow, Journal, WriteBatch
from ivrstream.protocol.backoff import ceiling, jittered
from ivrstream.sinks.base import Delivery, Outcome, Sink, Verdict

log = logging.getLogger("ivrstream.delivery")
DEAD_LETTER_POLL = 1.0  # seconds between looks at the dead-letter retry queue
LANE_MEMO = 65_536  # conversations whose lane is remembered (a call's events come together)


class SinkGone(Exception):
    """The destination said it no longer exists (HTTP 410)."""


@dataclass
class _Stretch:
    """Events read together; the cursor passes them only when every lane is done with them."""

    end: int  # journal position of the last event
    outstanding: int
    dead: list[DeadLetterRow] = field(default_factory=list)


@dataclass
class DispatchStats:
    delivered: int = 0  # events confirmed by the sink
    duplicates: int = 0  # of those, events the sink already had
    retries: int = 0  # delivery attempts that will be tried again
    dead_lettered: int = 0
    batches: int = 0
    redelivered: int = 0  # dead letters delivered on a later try


def _as_deliveries(rows: list[DeliveryRow]) -> list[Delivery]:
    """Journal rows as :class:`Delivery` tuples, without a Python call per row."""
    return list(map(tuple.__new__, itertools.repeat(Delivery), rows))


def _deliveries_after(journal: Journal, pos: int, limit: int) -> list[Delivery]:
    """Runs on the reader's thread: the rows become deliveries there, off the event loop."""
    return _as_deliveries(journal.deliveries_after(pos, limit))


def _settle(
    waiting: list[tuple[list[Delivery], _Stretch]], first: int, last: int, dead: list[DeadLetterRow]
) -> None:
    """Positions ``first``..``last`` of the lane's ``waiting`` shares are done: count them off
    their stretches, and give each dead letter to the stretch it belongs to (the cursor records
    it when it passes that stretch)."""
    for share, stretch in waiting:
        if not share or share[-1].pos < first or share[0].pos > last:
            continue
        if first <= share[0].pos and share[-1].pos <= last:
            stretch.outstanding -= len(share)  # the usual case: the whole share went
        else:
            stretch.outstanding -= sum(1 for event in share if first <= event.pos <= last)
        if dead:
            stretch.dead.extend(d for d in dead if share[0].pos <= d.pos <= share[-1].pos)


class Dispatcher:
    """Moves one sink's cursor through the journal. Run :meth:`run` as a task."""

    def __init__(
        self,
        sink: Sink,
        settings: SinkSettings,
        intake: Intake,
        clock: Clock,
        rng: random.Random,
        hooks: Hooks,
        tail: JournalTail | None = None,
    ) -> None:
        self.sink = sink
        self.tail = tail  # the newest events, shared with the other dispatchers
        self.name = sink.name
        self.settings = settings
        self.intake = intake
        self.clock = clock
        self.rng = rng
        self.hooks = hooks
        self.stats = DispatchStats()
        self.position = 0
        self.state = "starting"
        self.last_error: str | None = None
        self.dead_letter_poll = DEAD_LETTER_POLL
        self._stretches: deque[_Stretch] = deque()
        self._moved = asyncio.Event()  # set (and replaced) whenever the cursor moves
        self._journal: JournalReader | None = None
        self._lane_of: dict[str, int] = {}  # conversation → lane, for recent conversations

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled, or until the sink is gone."""
        await self.sink.start()
        self._journal = reader = JournalReader(self.intake.path)
        lanes = max(1, self.settings.lanes)
        # each lane holds at most four stretches' shares: reading stays a little ahead
        queues: list[asyncio.Queue[tuple[list[Delivery], _Stretch]]] = [
            asyncio.Queue(maxsize=4) for _ in range(lanes)
        ]
        try:
            self.position = (await reader.call(Journal.cursors)).get(self.name, 0)
            log.info("sink %s: delivering after journal position %d", self.name, self.position)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(reader, queues))
                for queue in queues:
                    group.create_task(self._lane(queue))
        except* SinkGone as gone:
            error = str(gone.exceptions[0])
            self.state = "disabled"
            self.last_error = error
            log.error(
                "sink %s is DISABLED: the destination says it is gone (%s); its events stay in"
                " the journal after position %d — fix the destination and restart",
                self.name,
                error,
                self.position,
            )
            self.hooks.emit("sink_disabled", sink=self.name, error=error)
        finally:
            self._journal = None
            reader.close()

    async def _read(
        self, reader: JournalReader, queues: list[asyncio.Queue[tuple[list[Delivery], _Stretch]]]
    ) -> None:
        """Read stretches of the journal ahead of delivery and hand each event to its lane."""
        read_to = self.position
        last_dead_letter_look = float("-inf")
        limit = self.settings.batch_max * len(queues)
        polled = True
        while True:
            now = self.clock.monotonic()
            if now - last_dead_letter_look >= self.dead_letter_poll:
                last_dead_letter_look = now
                await self._redeliver_queued()
            rows = await self._next(reader, read_to, limit, look=polled)
            polled = False
            if not rows:
                if not self._stretches:
                    self.state = "idle"
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that races the inner wait's completion, and this loop would never stop
                try:
                    async with asyncio.timeout(self.dead_letter_poll):
                        await self.intake.wait_committed(read_to)
                except TimeoutError:
                    polled = True  # quiet for a while: look in the file (another process?)
                continue
            if self.state == "idle" or self.state == "starting":
                self.state = "delivering"
            stretch = _Stretch(end=rows[-1][0], outstanding=len(rows))
            self._stretches.append(stretch)
            read_to = stretch.end
            if len(queues) == 1:
                split = [rows]
            else:
                split = [[] for _ in queues]
                lane_of = self._lane_of
                for row in rows:
                    lane = lane_of.get(row.conversation_id)
                    if lane is None:
                        if len(lane_of) >= LANE_MEMO:
                            lane_of.clear()
                        lane = zlib.crc32(row.conversation_id.encode()) % len(queues)
                        lane_of[row.conversation_id] = lane
                    split[lane].append(row)
            for queue, share in zip(queues, split, strict=True):
                if share:
                    await queue.put((share, stretch))  # waits while the lane is full

    async def _next(
        self, reader: JournalReader, position: int, limit: int, *, look: bool
    ) -> list[Delivery]:
        """The events after ``position``: from the shared tail when it has them, else from the
        journal (and then into the tail for the other dispatchers).

        With a tail that intake fills as it commits, nothing is looked for past intake's last
        commit unless ``look``: the writer's thread may already have committed rows whose
        news has not reached the event loop, and reading them from the file would only race
        intake handing them over in memory."""
        tail = self.tail
        if tail is not None and tail.fed and not look and position >= self.intake.last_pos:
            return []
        if tail is None:
            return await reader.call(partial(_deliveries_after, pos=position, limit=limit))
        shared = tail.after(position, limit)
        if shared:
            return shared
        in_flight = tail.read_in_flight(position)
        if in_flight is not None:
            await in_flight.wait()
            shared = tail.after(position, limit)
            if shared:
                return shared
        reading = tail.begin_read(position)
        try:
            events = await reader.call(partial(_deliveries_after, pos=position, limit=limit))
            tail.add(position, events)
        finally:
            if reading:
                tail.end_read()
        return events

    async def _lane(self, queue: asyncio.Queue[tuple[list[Delivery], _Stretch]]) -> None:
        """Deliver one lane's share of each stretch, in order, ``batch_max`` at a time. Shares
        that queued up while the lane was busy travel together: the slower the sink, the
        fuller its batches (small reads under load made small requests, at a cost per request
        on both ends)."""
        size = self.settings.batch_max
        while True:
            waiting = [await queue.get()]
            count = len(waiting[0][0])
            while count < size and not queue.empty():
                waiting.append(queue.get_nowait())
                count += len(waiting[-1][0])
            events = [event for share, _ in waiting for event in share]
            for start in range(0, len(events), size):
                batch = events[start : start + size]
                dead = await self._deliver(batch)
                _settle(waiting, batch[0].pos, batch[-1].pos, dead)
                self._advance()

    def _advance(self) -> None:
        """Move the cursor over every finished stretch, in order, and record it."""
        dead: list[DeadLetterRow] = []
        moved = False
        while self._stretches and self._stretches[0].outstanding == 0:
            stretch = self._stretches.popleft()
            self.position = stretch.end
            dead.extend(stretch.dead)
            moved = True
        if moved:
            self.intake.submit(WriteBatch(cursors={self.name: self.position}, dead_letters=dead))
            self._moved.set()
            self._moved = asyncio.Event()

    async def wait_delivered(self, position: int) -> None:
        """Wait until this sink has confirmed (or dead-lettered) every event up to
        ``position``."""
        while self.position < position:
            await self._moved.wait()

    async def _deliver_lane(self, lane: list[Delivery]) -> list[DeadLetterRow]:
        dead: list[DeadLetterRow] = []
        size = self.settings.batch_max
        for start in range(0, len(lane), size):
            dead.extend(await self._deliver(lane[start : start + size]))
        return dead

    async def _deliver(self, batch: list[Delivery]) -> list[DeadLetterRow]:
        """Deliver one batch, retrying; returns the dead letters it leaves behind."""
        attempts = 0
        while True:
            attempts += 1
            outcome = await self._attempt(batch)
            if outcome.verdict is Verdict.OK:
                self.stats.batches += 1
                self.stats.delivered += len(batch)
                self.stats.duplicates += outcome.duplicates
                return []
            self.last_error = outcome.error
            if outcome.verdict is Verdict.GONE:
                raise SinkGone(outcome.error)
            if outcome.verdict is Verdict.REJECT:
                if len(batch) == 1:
                    return self._dead(batch, outcome.error, attempts)
                half = len(batch) // 2  # find the events at fault; keep the order
                return [*await self._deliver(batch[:half]), *await self._deliver(batch[half:])]
            self.stats.retries += 1
            if attempts >= self.settings.max_attempts:
                return self._dead(
                    batch, f"gave up after {attempts} tries: {outcome.error}", attempts
                )
            delay = self.rng.uniform(
                0.0, ceiling(self.settings.retry_base, self.settings.retry_cap, attempts - 1)
            )
            if outcome.retry_after is not None:
                delay = max(delay, jittered(outcome.retry_after, self.rng))
            self.state = "retrying"
            log.warning(
                "sink %s: %d events not delivered (%s); retry %d in %.2fs",
                self.name,
                len(batch),
                outcome.error,
                attempts,
                delay,
            )
            await self.clock.sleep(delay)
            self.state = "delivering"

    async def _attempt(self, batch: list[Delivery]) -> Outcome:
        try:
            return await self.sink.deliver(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sink bug must not end delivery for good: try again later
            log.exception("sink %s raised while delivering", self.name)
            return Outcome.retry(f"{type(exc).__name__}: {exc}")

    def _dead(self, batch: list[Delivery], error: str, attempts: int) -> list[DeadLetterRow]:
        self.stats.dead_lettered += len(batch)
        now = round(self.clock.time() * 1000)
        log.error("sink %s: %d events dead-lettered: %s", self.name, len(batch), error)
        for delivery in batch:
            self.hooks.emit(
                "dead_lettered",
                sink=self.name,
                event_id=delivery.event_id,
                error=error,
                attempts=attempts,
            )
        return [DeadLetterRow(self.name, d.pos, d.event_id, error, attempts, now) for d in batch]

    async def _redeliver_queued(self) -> None:
        reader = self._journal
        assert reader is not None
        queued = await reader.call(lambda j: j.dead_letters(self.name, "retry", 1_000))
        if not queued:
            return
        positions = [q["pos"] for q in queued]
        rows = await reader.call(lambda j: j.deliveries_at(positions))
        deliveries = _as_deliveries(rows)
        log.info("sink %s: delivering %d dead letters again", self.name, len(deliveries))
        dead = await self._deliver_lane(deliveries)
        failed = {d.pos for d in dead}
        done = [(self.name, d.pos) for d in deliveries if d.pos not in failed]
        self.stats.redelivered += len(done)
        self.intake.submit(WriteBatch(dead_letters=dead, redelivered=done))

    # -- introspection --------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        backlog = max(0, self.intake.last_pos - self.position)
        return {
            "state": self.state,
            "position": self.position,
            "backlog": backlog,
            "last_error": self.last_error,
            **vars(self.stats),
            "sink": self.sink.statistics(),
        }

    async def oldest_undelivered(self) -> str | None:
        """Event time of the oldest event this sink has not confirmed (None: caught up)."""
        reader = self._journal
        if reader is None or self.intake.last_pos <= self.position:
            return None
        following = self.position + 1
        return await reader.call(lambda j: j.event_time_at(following))
