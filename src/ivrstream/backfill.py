"""Gap backfill: every open gap becomes an analytics details fetch, journaled like live events.

Rules this module keeps:

- **What is a task.** An open gap in the journal with a time window: a Notifications loss window
  (the socket was down, nothing is re-sent), an Event Streams sequence gap that the server did not
  re-send within ``resend_grace`` after being asked, or a window asked for by
  ``ivrstream backfill --from --to``. A gap without a known end waits until the source knows it.
- **What is fetched.** Conversations that *started* in ``[time_from - lookback, time_to)``:
  the details query matches by start, and a conversation that began before the gap can still
  have had events inside it. The part of the window closer to now than ``settle`` is left for a
  later pass (the gap stays open meanwhile).
- **What is journaled.** Each conversation is rebuilt into canonical events
  (:func:`ivrstream.normalize.from_analytics`) whose ids equal the ids the live copies had, so
  the journal's unique index drops what was not missing. Events go through intake (caller
  privacy, group commit) and on to every sink and the audit trail like live ones.
- **Resumable.** After every page, the events and the page's ``resume_ms`` watermark are handed
  to the journal in one batch; after a crash or an error the next pass starts from the
  watermark (a few conversations at the watermark may be read twice: the journal de-duplicates).
- **Closing.** A gap whose size is known (an Event Streams gap of N sequence ids) is *filled*
  when at least N new events were journaled, *partly filled* when fewer, *lost* when none. A
  window of unknown size (Notifications, manual) is *filled* — with the count of events found —
  unless analytics could not rebuild some kinds of event in it (then *partly filled*, and the
  note says which). Every close goes to the journal, the log and the audit trail.
- **Failures** (429 beyond ``max_retry_after``, 5xx past the retry budget, a job that failed)
  leave the gap open for the next pass, ``check_every`` later; a 401 refreshes the token first;
  a 403 (no ``analytics:conversationDetail:view``) is logged loudly once and backfill pauses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ivrstream.aio.http import drive
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.runtime import Runtime
from ivrstream.clock import wait_event
from ivrstream.config import BackfillSettings
from ivrstream.errors import IvrstreamError, MissingScope, TransientError
from ivrstream.isotime import TimeFormatError, format_ms, parse_ms
from ivrstream.journal import BackfillMark, GapRow, Journal
from ivrstream.models import InteractionEvent
from ivrstream.normalize import Rebuilt, rebuild
from ivrstream.protocol.analytics import Batch, Progress, TokenRejected, fetch_window

log = logging.getLogger("ivrstream.backfill")
FILLED, PARTLY_FILLED, LOST, OPEN = "filled", "partly_filled", "lost", "open"
MANUAL = "manual"


@dataclass
class Outcome:
    """What one pass over a gap did."""

    gap_id: str
    state: str  # open (not finished: unsettled tail or an error) | filled | partly_filled | lost
    conversations: int = 0
    events: int = 0  # rebuilt from analytics
    inserted: int = 0  # of those, new to the journal
    unrebuilt: dict[str, int] = field(default_factory=dict)  # kinds analytics cannot rebuild
    error: str | None = None
    unfinished_from_ms: int | None = None  # earliest start of a conversation still going
    ended: list[str] = field(default_factory=list)  # conversations over (sweeps only)

    def describe(self) -> str:
        text = (
            f"{self.conversations} conversations, {self.events} events rebuilt,"
            f" {self.inserted} were missing"
        )
        if self.unrebuilt:
            kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(self.unrebuilt.items()))
            text += f"; not rebuildable from analytics: {kinds}"
        return text


def manual_gap(start_ms: int, end_ms: int, now_ms: int) -> GapRow:
    """The gap row of ``ivrstream backfill --from --to``: the same window gets the same id, so
    running the command again resumes where it stopped."""
    digest = hashlib.sha256(f"{start_ms}/{end_ms}".encode()).hexdigest()[:16]
    return GapRow(
        id=f"manual-{digest}",
        source=MANUAL,
        stream=MANUAL,
        first_seq=None,
        last_seq=None,
        time_from=start_ms,
        time_to=end_ms,
        opened_at=now_ms,
        state=OPEN,
        note=f"{format_ms(start_ms)}/{format_ms(end_ms)}",
    )


def _start_ms(conversation: dict[str, Any]) -> int | None:
    try:
        return parse_ms(str(conversation.get("conversationStart", "")))
    except TimeFormatError:
        return None


def _overlaps(conversation: dict[str, Any], gap: GapRow) -> bool:
    """Did the conversation's lifetime touch the gap's window? (Unknown: yes.)"""
    try:
        start = parse_ms(str(conversation.get("conversationStart", "")))
        end = conversation.get("conversationEnd")
        end_ms = parse_ms(str(end)) if end else None
    except TimeFormatError:
        return True
    if gap.time_to is not None and start >= gap.time_to:
        return False
    return not (end_ms is not None and gap.time_from is not None and end_ms < gap.time_from)


def missing_count(gap: GapRow) -> int | None:
    """How many events the gap is known to lack (None: unknown — a time window)."""
    if gap.first_seq is None or gap.last_seq is None:
        return None
    return sum(b - a + 1 for a, b in gap.missing)


def closing_state(gap: GapRow, inserted: int, unrebuilt: int) -> str:
    missing = missing_count(gap)
    if missing is not None:
        if inserted >= missing:
            return FILLED
        return PARTLY_FILLED if inserted else LOST
    return PARTLY_FILLED if unrebuilt else FILLED


class Backfiller:
    """Fills gaps from analytics into the journal through ``intake``."""

    def __init__(
        self,
        settings: BackfillSettings,
        api_url: str,
        runtime: Runtime,
        *,
        convert: Callable[[dict[str, Any], str], Rebuilt] = rebuild,
    ) -> None:
        self.settings = settings
        self.api_url = api_url
        self.tokens, self.session, self.intake, self.clock, self.rng, self.hooks = runtime
        self.convert = convert
        self.outcomes: list[Outcome] = []
        self.paused: str | None = None  # why backfill stopped trying (a missing permission)
        self.passes = 0
        self._first_seen: dict[str, float] = {}
        self._wake = asyncio.Event()

    # -- the service loop -----------------------------------------------------------------------

    def is_paused(self) -> bool:
        """True once a missing permission stopped backfill (the reason is in ``paused``)."""
        return self.paused is not None

    def wake(self) -> None:
        """Look for gaps now (a source just recorded one)."""
        self._wake.set()

    async def run(self) -> None:
        """Every ``check_every`` seconds (or when woken): fill every eligible open gap."""
        reader = JournalReader(self.intake.path)
        try:
            while not self.is_paused():
                self._wake.clear()
                self.passes += 1
                gaps = await reader.call(partial(Journal.gaps, state=OPEN))
                for gap in self.eligible(gaps, self.clock.time()):
                    await self.fill(gap, reader=reader)
                    if self.is_paused():
                        break
                await wait_event(self._wake, self.settings.check_every, self.clock)
        finally:
            reader.close()

    def eligible(self, gaps: Iterable[GapRow], now: float) -> list[GapRow]:
        """Open gaps with a known window; Event Streams gaps only once the server had its
        chance to re-send them."""
        chosen = []
        for gap in gaps:
            if gap.time_to is None and gap.time_from is None:
                continue
            if gap.source == "eventstreams":
                seen = self._first_seen.setdefault(gap.id, now)
                if not gap.resend_requested or now - seen < self.settings.resend_grace:
                    continue
            chosen.append(gap)
        return chosen

    # -- one gap --------------------------------------------------------------------------------

    async def fill(
        self,
        gap: GapRow,
        *,
        reader: JournalReader,
        dry_run: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> Outcome:
        """One pass over ``gap``: fetch what is settled, journal what was missing, and close
        the gap when the whole window is done. Never raises for an analytics failure: the
        outcome says ``open`` with the error, and the next pass resumes."""
        now_ms = round(self.clock.time() * 1000)
        end_ms = gap.time_to if gap.time_to is not None else now_ms
        window_from = gap.time_from if gap.time_from is not None else end_ms
        start_ms = window_from - round(self.settings.lookback * 1000)
        resumable = gap.state == OPEN and not dry_run
        gap_id = gap.id
        mark = await reader.call(lambda j: j.backfill_progress(gap_id)) if resumable else None
        outcome = Outcome(gap.id, OPEN)
        if mark is not None:
            start_ms = max(start_ms, mark.resume_ms)
            outcome.conversations, outcome.inserted = mark.conversations, mark.inserted
            outcome.events = mark.events
        if start_ms >= end_ms:  # done before a crash, but not closed
            return self._finish(gap, outcome, now_ms, dry_run)
        done = await self._window(
            gap, start_ms, end_ms, now_ms, outcome, reader, dry_run=dry_run, progress=progress
        )
        if not done:
            self.outcomes.append(outcome)
            return outcome  # the rest later: the unsettled tail, or after an error
        return self._finish(gap, outcome, now_ms, dry_run)

    async def sweep(self, start_ms: int, end_ms: int, *, reader: JournalReader) -> Outcome:
        """Journal what is missing of every conversation that started in ``[start_ms, end_ms)``
        (no look-back, no gap row, no progress mark: the caller keeps its own watermark). The
        outcome's ``unfinished_from_ms`` is the earliest start of a conversation that was still
        going — sweep again from there to get the rest of it."""
        now_ms = round(self.clock.time() * 1000)
        sweep = GapRow(
            f"sweep-{start_ms}", "sweep", "sweep", None, None, start_ms, end_ms, now_ms, OPEN
        )
        outcome = Outcome(sweep.id, OPEN)
        done = await self._window(sweep, start_ms, end_ms, now_ms, outcome, reader, marks=False)
        if done:
            outcome.state = FILLED
        return outcome

    async def _window(
        self,
        gap: GapRow,
        start_ms: int,
        end_ms: int,
        now_ms: int,
        outcome: Outcome,
        reader: JournalReader,
        *,
        dry_run: bool = False,
        progress: Callable[[Progress], None] | None = None,
        marks: bool = True,
    ) -> bool:
        """Fetch and journal conversations that started in the window; True when the whole
        window was read (False: an error, or a part too close to now for analytics)."""
        pages: asyncio.Queue[Batch | None] = asyncio.Queue()

        async def journal_pages() -> None:
            while (batch := await pages.get()) is not None:
                await self._journal_page(gap, batch, outcome, reader, dry_run, marks)
                if progress is not None:
                    progress(batch.progress)

        consumer = asyncio.ensure_future(journal_pages())
        try:
            result = await self._fetch(start_ms, end_ms, now_ms, pages.put_nowait)
        except MissingScope as exc:
            self.paused = str(exc)
            log.error("backfill paused: %s (grant analytics:conversationDetail:view)", exc)
            outcome.error = str(exc)
            result = None
        except (IvrstreamError, TransientError) as exc:
            log.warning("backfill of %s stopped, will resume: %s", gap.id, exc)
            outcome.error = str(exc)
            result = None
        finally:
            pages.put_nowait(None)
            await consumer
        return result is not None and result.deferred is None

    def _finish(self, gap: GapRow, outcome: Outcome, now_ms: int, dry_run: bool) -> Outcome:
        unrebuilt = sum(outcome.unrebuilt.values())
        outcome.state = closing_state(gap, outcome.inserted, unrebuilt)
        if not dry_run:
            self._close(gap, outcome, now_ms)
        self.outcomes.append(outcome)
        return outcome

    async def _fetch(
        self, start_ms: int, end_ms: int, now_ms: int, deliver: Callable[[Batch], None]
    ) -> Any:
        for attempt in range(2):
            await self.tokens.get()
            conversation = fetch_window(
                start_ms,
                end_ms,
                now_ms,
                api_url=self.api_url,
                bearer=self._bearer,
                settings=self.settings,
                rng=self.rng,
                deliver=deliver,
            )
            try:
                return await drive(conversation, self.session, self.clock, label="analytics")
            except TokenRejected:
                if attempt:
                    raise
                self.tokens.invalidate()
        return None  # pragma: no cover - the loop returns or raises

    def _bearer(self) -> str:
        token = self.tokens.token
        return token.access_token if token is not None else ""

    async def _journal_page(
        self,
        gap: GapRow,
        batch: Batch,
        outcome: Outcome,
        reader: JournalReader,
        dry_run: bool,
        marks: bool,
    ) -> None:
        received = format_ms(round(self.clock.time() * 1000))
        events: list[InteractionEvent] = []
        for conversation in batch.conversations:
            rebuilt = self.convert(conversation, received)
            events.extend(rebuilt.events)
            if conversation.get("conversationEnd"):
                if not marks and rebuilt.conversation_id:
                    outcome.ended.append(rebuilt.conversation_id)
            else:
                start = _start_ms(conversation)
                if start is not None and (
                    outcome.unfinished_from_ms is None or start < outcome.unfinished_from_ms
                ):
                    outcome.unfinished_from_ms = start
            if _overlaps(conversation, gap):  # its unrebuildable events may have been missed
                for kind in rebuilt.unrebuilt:
                    outcome.unrebuilt[kind] = outcome.unrebuilt.get(kind, 0) + 1
        outcome.conversations += len(batch.conversations)
        outcome.events += len(events)
        unique = {e.event_id: e for e in events}
        known = await reader.call(partial(Journal.known_event_ids, event_ids=list(unique)))
        missing = [e for eid, e in unique.items() if eid not in known]
        outcome.inserted += len(missing)
        if dry_run:
            return
        if missing:
            await self.intake.wait_for_room()
            self.intake.append_events(missing, received_mono=self.clock.monotonic())
        if not marks:
            return
        self.intake.record_progress(
            BackfillMark(
                gap.id,
                batch.progress.resume_ms,
                outcome.conversations,
                outcome.events,
                outcome.inserted,
            )
        )

    def _close(self, gap: GapRow, outcome: Outcome, now_ms: int) -> None:
        note = outcome.describe() if not gap.note else f"{gap.note} — {outcome.describe()}"
        closed = dataclasses.replace(
            gap,
            state=outcome.state,
            filled=gap.filled + outcome.inserted,
            missing=[] if outcome.state == FILLED else gap.missing,
            closed_at=now_ms,
            note=note,
        )
        self.intake.close_gap(closed)
        level = logging.INFO if outcome.state == FILLED else logging.WARNING
        log.log(level, "gap %s (%s) %s from analytics: %s", gap.id, gap.source, outcome.state, note)
        self.hooks.emit(
            "gap_closed",
            stream=gap.stream,
            id=gap.id,
            state=outcome.state,
            filled=outcome.inserted,
            note=note,
        )

    def statistics(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for outcome in self.outcomes:
            states[outcome.state] = states.get(outcome.state, 0) + 1
        return {
            "passes": self.passes,
            "outcomes": states,
            "events_backfilled": sum(o.inserted for o in self.outcomes if o.state != OPEN),
            "paused": self.paused,
        }
