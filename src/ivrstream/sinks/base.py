"""The one interface every sink implements, and what a delivery attempt can come back with.

A sink receives batches of :class:`Delivery` (events in journal order, already encoded as the
canonical JSON the journal holds) and answers with an :class:`Outcome`:

- ``ok``: every event in the batch is stored (a sink that found some already there counts them
  in ``duplicates`` — that is success: every sink is idempotent on the event id);
- ``retry``: nothing can be said for sure; try the same batch again later (``retry_after`` when
  the far side said how long to wait);
- ``reject``: the far side refused the content (HTTP 4xx and the like); the dispatcher splits a
  batch to find the events at fault and dead-letters only those;
- ``gone``: the destination no longer exists (HTTP 410); the sink is disabled, loudly.

A sink never raises for a delivery problem; it raises only for a bug or a misconfiguration found
at :meth:`Sink.start`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class Delivery(NamedTuple):
    """One journaled event on its way to a sink (a named tuple: the dispatcher makes one per
    event per sink, straight from a journal row)."""

    pos: int  # journal position
    event_id: str
    conversation_id: str
    event_type: str
    body: bytes  # the canonical event, JSON
    sequence_id: int | None = None
    event_time: str | None = None  # ISO-8601, as in the body
    received_at: str | None = None


class Verdict(StrEnum):
    OK = "ok"
    RETRY = "retry"
    REJECT = "reject"
    GONE = "gone"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    error: str = ""
    retry_after: float | None = None
    duplicates: int = 0

    @classmethod
    def ok(cls, duplicates: int = 0) -> Outcome:
        return cls(Verdict.OK, duplicates=duplicates)

    @classmethod
    def retry(cls, error: str, retry_after: float | None = None) -> Outcome:
        return cls(Verdict.RETRY, error, retry_after)

    @classmethod
    def reject(cls, error: str) -> Outcome:
        return cls(Verdict.REJECT, error)

    @classmethod
    def gone(cls, error: str) -> Outcome:
        return cls(Verdict.GONE, error)


class Sink(Protocol):
    """Where delivered events end up. One instance per configured destination."""

    name: str  # unique per service; names the cursor, the dead-letter rows and the metrics

    async def start(self) -> None:
        """Check the configuration and open what can be opened now. Never raise because the
        destination is down: :meth:`deliver` connects (and creates schema, streams, files)
        lazily and answers ``retry`` until it can."""
        ...

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        """Store every event of ``batch`` (in order) or say why not. Never raises for a
        delivery problem."""
        ...

    async def close(self) -> None: ...

    def statistics(self) -> dict[str, Any]:
        """Sink-specific counters (e.g. duplicate acknowledgements)."""
        ...
