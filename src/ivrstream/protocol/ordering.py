"""Per-subscription ordering: every sequence id journaled once, in order, gaps made visible.

Rules this module keeps:

- ``high`` is the highest sequence id handed on for journaling. A frame is
  **next** (``high + 1``): handed on at once, with any held frames that now follow on;
  **duplicate** (``≤ high`` and not missing, or already held): counted and dropped;
  **late** (``≤ high`` but inside an open gap): handed on at once, flagged ``recovered`` —
  unlike the seed, a frame that fills a gap is never thrown away;
  **early** (``> high + 1``): held in a bounded reorder window, so a reordered burst is still
  journaled in sequence.
- The window holds at most ``window_size`` frames for at most ``window_seconds``. When it
  overflows or its oldest frame is too old, the missing ids before the first held frame become
  a **gap** (first, last, when, and the event times around it), and the held frames move on.
- A gap stays open until every id in it has arrived late (``filled``) or the caller declares it
  lost. Each gap is worth one resend request: :meth:`resume_after` points the next subscription
  just before the oldest gap not yet asked for.
- A server whose sequence restarted (its acknowledgement is below ``high``) starts a new epoch:
  frames still held are handed on first, the unknown stretch after them is recorded as a gap
  without an upper bound, and no gap of the old epoch is asked to be re-sent by the new server.

No clock: ``now`` is an argument. No I/O: results are returned, never written.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Disposition(StrEnum):
    NEXT = "next"
    DUPLICATE = "duplicate"
    EARLY = "early"
    LATE = "late"


@dataclass
class Gap:
    """Sequence ids ``first``..``last`` (``last`` None: unknown, after a server reset)."""

    first: int
    last: int | None
    opened_at: float
    time_from: int | None  # event time (ms) of the last event before the gap, if known
    time_to: int | None  # event time (ms) of the first event after it, if known
    missing: list[list[int]] = field(default_factory=list)  # [a, b] ranges still missing
    filled: int = 0
    resend_requested: bool = False
    key: str | None = None  # the caller's handle (journal row id)

    def __post_init__(self) -> None:
        if not self.missing and self.last is not None:
            self.missing = [[self.first, self.last]]

    @property
    def size(self) -> int | None:
        return None if self.last is None else self.last - self.first + 1

    @property
    def is_filled(self) -> bool:
        return self.last is not None and not self.missing

    def contains(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.missing)

    def fill(self, seq: int) -> bool:
        """Mark ``seq`` arrived; False if it was not missing."""
        for i, (a, b) in enumerate(self.missing):
            if a <= seq <= b:
                pieces = [[a, seq - 1]] if a <= seq - 1 else []
                if seq + 1 <= b:
                    pieces.append([seq + 1, b])
                self.missing[i : i + 1] = pieces
                self.filled += 1
                return True
        return False


@dataclass
class Released(Generic[T]):
    """A frame to journal now."""

    seq: int
    item: T
    recovered: bool  # True when it filled a gap


@dataclass
class Outcome(Generic[T]):
    """What one call changed: frames to journal, gaps opened, gaps that changed."""

    disposition: Disposition | None = None
    released: list[Released[T]] = field(default_factory=list)
    opened: list[Gap] = field(default_factory=list)
    changed: list[Gap] = field(default_factory=list)  # filled some ids (maybe all)


@dataclass
class OrderingStats:
    next: int = 0
    duplicate: int = 0
    early: int = 0
    late: int = 0
    gaps_opened: int = 0
    gaps_filled: int = 0
    window_expired: int = 0
    epochs: int = 0


class Ordering(Generic[T]):
    """The ordering state of one subscription. Feed frames to :meth:`accept`; call
    :meth:`expire` when :meth:`deadline` passes."""

    def __init__(
        self,
        *,
        high: int = 0,
        high_time: int | None = None,
        gaps: list[Gap] | None = None,
        window_size: int = 1_000,
        window_seconds: float = 2.0,
    ) -> None:
        if window_size < 1 or window_seconds < 0:
            raise ValueError("the reorder window needs room for at least one frame")
        self.high = high
        self.high_time = high_time
        # open gaps: by identity (insertion order), and the bounded ones sorted by first id so
        # finding the gap a late frame fills is a binary search even with thousands open
        self._gaps: dict[int, Gap] = {}
        self._firsts: list[int] = []
        self._bounded: list[Gap] = []
        self._unrequested = 0  # bounded gaps not yet asked to be re-sent
        for gap in gaps or []:
            self._add_gap(gap)
        self.window_size = window_size
        self.window_seconds = window_seconds
        self._held: dict[int, tuple[T, int | None, float]] = {}  # seq → (item, time, held_at)
        self.stats = OrderingStats()

    # -- inputs ----------------------------------------------------------------------------------

    def accept(self, seq: int, item: T, event_time: int | None, now: float) -> Outcome[T]:
        """Classify one frame and say what to journal now."""
        out: Outcome[T] = Outcome()
        if seq <= self.high:
            gap = self._find_gap(seq)
            if gap is None:
                self.stats.duplicate += 1
                out.disposition = Disposition.DUPLICATE
                return out
            gap.fill(seq)
            self.stats.late += 1
            out.disposition = Disposition.LATE
            out.released.append(Released(seq, item, recovered=True))
            out.changed.append(gap)
            if gap.is_filled:
                self._remove_gap(gap)
                self.stats.gaps_filled += 1
            return out
        if seq == self.high + 1:
            self.stats.next += 1
            out.disposition = Disposition.NEXT
            self._advance(seq, item, event_time, out)
            self._release_run(out)
            return out
        if seq in self._held:
            self.stats.duplicate += 1
            out.disposition = Disposition.DUPLICATE
            return out
        self.stats.early += 1
        out.disposition = Disposition.EARLY
        self._held[seq] = (item, event_time, now)
        if len(self._held) > self.window_size:
            self._open_gap_before_held(now, out)
        return out

    def take_next(self, seq: int, event_time: int | None) -> bool:
        """The common case, without allocating an :class:`Outcome`: if ``seq`` is exactly the
        next id and nothing is held, advance and return True (the caller journals the frame
        now); otherwise change nothing and return False (call :meth:`accept`)."""
        if seq != self.high + 1 or self._held:
            return False
        self.high = seq
        if event_time is not None:
            self.high_time = event_time
        self.stats.next += 1
        return True

    def expire(self, now: float) -> Outcome[T]:
        """Turn holes older than the window into gaps; call when :meth:`deadline` has passed."""
        out: Outcome[T] = Outcome()
        while self._held:
            oldest = min(held_at for _, _, held_at in self._held.values())
            if now - oldest < self.window_seconds:
                break
            self._open_gap_before_held(now, out)
        return out

    def restart_epoch(self, server_high: int, now: float) -> Outcome[T]:
        """The server's sequence restarted below ``high``: record the unknown stretch, go on."""
        out: Outcome[T] = Outcome()
        for old in self._gaps.values():  # the new server cannot re-send the old epoch's ids
            if not old.resend_requested:
                self._mark_requested(old)
                out.changed.append(old)
        while self._held:  # frames the old epoch delivered are journaled, not dropped
            self._open_gap_before_held(now, out)
        for opened in out.opened:
            self._mark_requested(opened)
        gap = Gap(self.high + 1, None, now, self.high_time, None)
        self._add_gap(gap)
        out.opened.append(gap)
        self.stats.gaps_opened += 1
        self.stats.epochs += 1
        self.high = server_high
        return out

    def declare_lost(self, gap: Gap) -> None:
        """Stop waiting for ``gap`` (backfill will try, or it is reported lost)."""
        if id(gap) in self._gaps:
            self._remove_gap(gap)

    # -- outputs ---------------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`expire` next has work to do (None: nothing is held)."""
        if not self._held:
            return None
        return min(held_at for _, _, held_at in self._held.values()) + self.window_seconds

    @property
    def held(self) -> int:
        return len(self._held)

    def resume_after(self, *, request_resend: bool = True) -> int:
        """The ``resumeAfter`` for the next subscription: ``high``, or just before the oldest
        bounded gap not yet asked for (marked asked, so each gap gets one request)."""
        if request_resend and self._unrequested:
            pending = [g for g in self._bounded if not g.resend_requested]
            for gap in pending:
                self._mark_requested(gap)
            return pending[0].first - 1  # _bounded is sorted: the first is the oldest
        return self.high

    def wants_resend(self) -> bool:
        """True when a gap is open that the server has not yet been asked to resend."""
        return self._unrequested > 0

    @property
    def gaps(self) -> list[Gap]:
        """The open gaps, oldest first."""
        return list(self._gaps.values())

    # -- internals -------------------------------------------------------------------------------

    def _add_gap(self, gap: Gap) -> None:
        self._gaps[id(gap)] = gap
        if gap.last is not None:
            at = bisect.bisect_right(self._firsts, gap.first)
            self._firsts.insert(at, gap.first)
            self._bounded.insert(at, gap)
            if not gap.resend_requested:
                self._unrequested += 1

    def _remove_gap(self, gap: Gap) -> None:
        del self._gaps[id(gap)]
        if gap.last is not None:
            at = bisect.bisect_left(self._firsts, gap.first)
            while self._bounded[at] is not gap:
                at += 1
            del self._firsts[at]
            del self._bounded[at]
            if not gap.resend_requested:
                self._unrequested -= 1

    def mark_resend_requested(self, gap: Gap) -> None:
        """Record that the server has had its chance to re-send ``gap``."""
        self._mark_requested(gap)

    def _mark_requested(self, gap: Gap) -> None:
        if not gap.resend_requested:
            gap.resend_requested = True
            if gap.last is not None and id(gap) in self._gaps:
                self._unrequested -= 1

    def _find_gap(self, seq: int) -> Gap | None:
        """The open gap still missing ``seq`` (bounded gaps never overlap)."""
        at = bisect.bisect_right(self._firsts, seq) - 1
        if at >= 0 and self._bounded[at].contains(seq):
            return self._bounded[at]
        return None

    def _advance(self, seq: int, item: T, event_time: int | None, out: Outcome[T]) -> None:
        self.high = seq
        if event_time is not None:
            self.high_time = event_time
        out.released.append(Released(seq, item, recovered=False))

    def _release_run(self, out: Outcome[T]) -> None:
        while (following := self._held.pop(self.high + 1, None)) is not None:
            item, event_time, _ = following
            self._advance(self.high + 1, item, event_time, out)

    def _open_gap_before_held(self, now: float, out: Outcome[T]) -> None:
        first_held = min(self._held)
        _, time_after, _ = self._held[first_held]
        gap = Gap(self.high + 1, first_held - 1, now, self.high_time, time_after)
        self._add_gap(gap)
        out.opened.append(gap)
        self.stats.gaps_opened += 1
        self.stats.window_expired += 1
        self.high = first_held - 1
        self._release_run(out)
