"""The journal's newest events, read once and shared by every dispatcher that keeps up.

Without it, N sinks that keep up with intake read (and turn into Python objects) the same new
rows N times. With it, the first dispatcher to ask for rows past the shared window reads them
from SQLite and the others take the same :class:`Delivery` tuples from memory.

Rules this module keeps:

- The window is one contiguous stretch of the journal, ``(low, high]``: every journaled event
  with a position in it is in the window. A read only joins the window when it starts inside or
  at its end (it then extends the window), or when it starts past it (the window restarts
  there); a dispatcher that has fallen behind reads from SQLite without disturbing it.
- Bounded by a byte budget over the event bodies: the oldest events leave first.
- Journal rows never change once written, so what the window holds is never stale.
- One read past the window is in flight at a time: a dispatcher that wants events beyond the
  window while another is reading them waits for that read instead of making its own (they
  are usually woken by the same commit). Dispatchers behind the window never wait.
- Called only from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools
from bisect import bisect_left, bisect_right
from operator import attrgetter

from ivrstream.sinks.base import Delivery

DEFAULT_BUDGET = 16 * 1024 * 1024  # bytes of event bodies the window may hold


def _position(event: Delivery) -> int:
    return event.pos


_body = attrgetter("body")


class JournalTail:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.budget_bytes = budget_bytes
        self._events: list[Delivery] = []
        self._first = 0  # events before this index have left the window (compacted lazily)
        self._low = 0  # the window covers positions after this …
        self._high = 0  # … up to and including this (empty when equal)
        self._ends = [0]  # running byte totals of the bodies (see _trim)
        self.hits = 0  # events served from memory
        self.misses = 0  # events a dispatcher had to read from SQLite
        self.committed = 0  # events intake put in as it committed them
        self.fed = False  # intake puts in what it commits (Intake.share_commits)
        self._reading: tuple[int, asyncio.Event] | None = None  # a read past the window

    def after(self, position: int, limit: int) -> list[Delivery] | None:
        """Up to ``limit`` events after ``position``, in journal order, if the window can say
        what they are; ``None`` when ``position`` is outside it (read the journal)."""
        if not self._low <= position < self._high:
            return None
        start = bisect_right(self._events, position, lo=self._first, key=_position)
        out = self._events[start : start + limit]
        self.hits += len(out)
        return out

    def add(self, position: int, events: list[Delivery], *, read: bool = True) -> None:
        """``events`` are everything the journal holds after ``position`` (up to a limit):
        just read from it, or (``read=False``) just committed to it by intake."""
        if read:
            self.misses += len(events)
        else:
            self.committed += len(events)
        if not events:
            return
        last = events[-1].pos
        if position > self._high or self._low == self._high:
            self._restart(position)
        elif position < self._low or last <= self._high:
            return  # behind the window, or nothing new: leave it as it is
        new = events[bisect_right(events, self._high, key=_position) :]
        self._events.extend(new)
        # running byte totals, so trimming is a bisection, not a loop over events
        self._ends.extend(itertools.accumulate(map(len, map(_body, new)), initial=self._ends[-1]))
        self._ends.pop(-len(new) - 1)  # accumulate repeats the initial total: keep it once
        self._high = last
        self._trim()

    def read_in_flight(self, position: int) -> asyncio.Event | None:
        """The read past the window that will say what follows ``position``, if one is in
        flight (wait for it, then ask :meth:`after` again)."""
        if self._reading is not None and self._reading[0] <= position:
            return self._reading[1]
        return None

    def begin_read(self, position: int) -> bool:
        """Say that a read of the events after ``position`` starts; True if the caller must
        :meth:`end_read` (after :meth:`add`). Only reads at or past the window's end count."""
        if self._reading is not None or position < self._high:
            return False
        self._reading = (position, asyncio.Event())
        return True

    def end_read(self) -> None:
        if self._reading is not None:
            self._reading[1].set()
            self._reading = None

    def _trim(self) -> None:
        """Drop the oldest events until the bodies fit the budget (the newest always stays)."""
        events, ends = self._events, self._ends
        # ends[i + 1] is the byte total up to and including events[i]; ends[0] what went before
        total = ends[-1]
        if total - ends[self._first] > self.budget_bytes:
            keep_from = bisect_left(ends, total - self.budget_bytes, lo=self._first)
            self._first = min(keep_from, len(events) - 1)
            self._low = events[self._first - 1].pos if self._first else self._low
        if self._first > len(events) // 2:
            del events[: self._first]
            del ends[: self._first]
            self._first = 0

    def _restart(self, position: int) -> None:
        self._events.clear()
        self._ends[:] = [0]
        self._first = 0
        self._low = self._high = position

    def __len__(self) -> int:
        return len(self._events) - self._first
