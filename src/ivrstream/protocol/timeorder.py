"""Per-conversation reordering by event time, for a source without sequence numbers.

Notifications carry no sequence id (``shared/reference/genesys-cloud.md``: "order by
``eventBody.eventTime``"), and one conversation's events arrive on up to eight topics, in any
order. :class:`TimeOrder` holds each event a short while so that, per conversation, the events
go on in event-time order. Rules it keeps:

- Every item pushed is released exactly once: by :meth:`push`, :meth:`expire` or :meth:`drain`.
  Nothing is ever dropped; duplicates are the journal's business (the event id), not this one's.
- Per conversation, items are released in ``(event_time_ms, arrival)`` order — equal times keep
  their arrival order. Conversations are independent.
- An item is held at most ``window_seconds`` after it arrived. When one is due, it is released
  together with every held item of its conversation that sorts before it (so none of those can
  become late), and nothing after it.
- An item older than one already released for its conversation is **late**: released at once by
  :meth:`push` and counted, never held and never dropped.
- At most ``max_held`` items are held: pushing one more releases the oldest-arrived held item
  first (with its conversation's earlier items, as when it is due) — memory stays bounded.
- The newest released time is remembered for at most ``max_conversations`` conversations with
  nothing held (least recently used forgotten first); an older event of a forgotten conversation
  is not recognised as late. Conversations with items held are always remembered.
- ``now`` (seconds, any clock) should not go backwards; if it does, an arrival is stamped with the
  latest ``now`` seen, so items still leave in arrival order.

No clock, no I/O: ``now`` is an argument and released items are returned.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from ivrstream.config import NotificationsSettings

T = TypeVar("T")

DEFAULT_MAX_HELD = 10_000
DEFAULT_MAX_CONVERSATIONS = 100_000


@dataclass
class TimeOrderStats:
    """Counters since creation, and the present ``held`` (a snapshot: :meth:`statistics`)."""

    pushed: int = 0
    released: int = 0
    late: int = 0  # released at once, older than an event already released
    expired: int = 0  # released because their window passed
    overflowed: int = 0  # released early because ``max_held`` was reached
    drained: int = 0  # released by :meth:`drain`
    held: int = 0
    peak_held: int = 0
    conversations: int = 0  # conversations remembered (held items or a last released time)


@dataclass
class _Conversation(Generic[T]):
    heap: list[tuple[int, int, T]] = field(default_factory=list)  # (event time, arrival, item)
    released_ms: int | None = None  # the newest event time released so far


class TimeOrder(Generic[T]):
    """Reorders items per conversation by event time. Feed :meth:`push`; call :meth:`expire`
    when :meth:`deadline` passes; call :meth:`drain` at shutdown."""

    def __init__(
        self,
        *,
        window_seconds: float = 2.0,
        max_held: int = DEFAULT_MAX_HELD,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
    ) -> None:
        if window_seconds < 0:
            raise ValueError("window_seconds must not be negative")
        if max_held < 1 or max_conversations < 0:
            raise ValueError("max_held must be at least 1 and max_conversations at least 0")
        self.window_seconds = window_seconds
        self.max_held = max_held
        self.max_conversations = max_conversations
        self._active: dict[str, _Conversation[T]] = {}  # conversations with items held
        self._idle: OrderedDict[str, int] = OrderedDict()  # id → released time, LRU order
        # held items in arrival order: arrival → (arrived at, conversation, event time)
        self._arrivals: OrderedDict[int, tuple[float, str, int]] = OrderedDict()
        self._counter = itertools.count()
        self._latest_now = float("-inf")
        self._stats = TimeOrderStats()

    @classmethod
    def from_settings(
        cls, settings: NotificationsSettings, *, max_held: int = DEFAULT_MAX_HELD
    ) -> TimeOrder[T]:
        return cls(window_seconds=settings.reorder_window, max_held=max_held)

    # -- inputs ----------------------------------------------------------------------------------

    def push(self, conversation_id: str, event_time_ms: int, item: T, now: float) -> list[T]:
        """Take one item; return those to pass on now (this one at once if it is late; any held
        item whose window has passed; the oldest held ones if the buffer is full)."""
        self._stats.pushed += 1
        now = self._clock(now)
        out: list[T] = []
        self._expire_into(now, out)
        conversation = self._active.get(conversation_id)
        released_ms = (
            conversation.released_ms
            if conversation is not None
            else self._idle.get(conversation_id)
        )
        if released_ms is not None and event_time_ms < released_ms:
            self._stats.late += 1
            self._stats.released += 1
            if conversation is None:
                self._idle.move_to_end(conversation_id)
            out.append(item)
            return out
        if conversation is None:
            conversation = _Conversation(released_ms=self._idle.pop(conversation_id, None))
            self._active[conversation_id] = conversation
        arrival = next(self._counter)
        heapq.heappush(conversation.heap, (event_time_ms, arrival, item))
        self._arrivals[arrival] = (now, conversation_id, event_time_ms)
        while len(self._arrivals) > self.max_held:
            self._stats.overflowed += self._release_oldest(out)
        self._stats.peak_held = max(self._stats.peak_held, len(self._arrivals))
        return out

    def expire(self, now: float) -> list[T]:
        """Release items whose window has passed (call when :meth:`deadline` is reached)."""
        out: list[T] = []
        self._expire_into(self._clock(now), out)
        return out

    def drain(self) -> list[T]:
        """Release everything held, each conversation in event-time order (at shutdown)."""
        out: list[T] = []
        while self._arrivals:
            _, conversation_id, _ = self._arrivals[next(iter(self._arrivals))]
            self._stats.drained += self._release_until(conversation_id, None, out)
        return out

    # -- outputs ---------------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`expire` next has work to do (None: nothing is held)."""
        if not self._arrivals:
            return None
        arrived_at, _, _ = self._arrivals[next(iter(self._arrivals))]
        return arrived_at + self.window_seconds

    @property
    def held(self) -> int:
        return len(self._arrivals)

    def statistics(self) -> TimeOrderStats:
        stats = TimeOrderStats(**vars(self._stats))
        stats.held = len(self._arrivals)
        stats.conversations = len(self._active) + len(self._idle)
        return stats

    # -- internals -------------------------------------------------------------------------------

    def _clock(self, now: float) -> float:
        self._latest_now = max(self._latest_now, now)
        return self._latest_now

    def _expire_into(self, now: float, out: list[T]) -> None:
        while self._arrivals:
            first = next(iter(self._arrivals))
            arrived_at, _, _ = self._arrivals[first]
            if now < arrived_at + self.window_seconds:  # the same sum as deadline(): no drift
                break
            self._stats.expired += self._release_oldest(out)

    def _release_oldest(self, out: list[T]) -> int:
        """Release the oldest-arrived held item and what sorts before it in its conversation."""
        first = next(iter(self._arrivals))
        _, conversation_id, event_time_ms = self._arrivals[first]
        return self._release_until(conversation_id, (event_time_ms, first), out)

    def _release_until(
        self, conversation_id: str, last: tuple[int, int] | None, out: list[T]
    ) -> int:
        """Release the conversation's held items up to ``last`` (event time, arrival), all of
        them when None; retire the conversation to the idle list once it holds nothing."""
        conversation = self._active[conversation_id]
        heap = conversation.heap
        count = 0
        while heap and (last is None or heap[0][:2] <= last):
            event_time_ms, arrival, item = heapq.heappop(heap)
            del self._arrivals[arrival]
            out.append(item)
            count += 1
            if conversation.released_ms is None or event_time_ms > conversation.released_ms:
                conversation.released_ms = event_time_ms
        self._stats.released += count
        if not heap:
            del self._active[conversation_id]
            if conversation.released_ms is not None and self.max_conversations > 0:
                self._idle[conversation_id] = conversation.released_ms
                while len(self._idle) > self.max_conversations:
                    self._idle.popitem(last=False)
        return count
