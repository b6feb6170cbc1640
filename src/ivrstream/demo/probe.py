"""What the demo dashboard shows, read from the running parts into one plain :class:`Snapshot`.

Rules this module keeps:

- A snapshot is plain frozen data: the dashboard renders it without touching the service, so a
  frame can be drawn (or saved to a file) from any snapshot.
- Reading never changes what it reads: only ``statistics()`` and counters, no journal queries.
- Active calls are the service's view, not the emulator's: :class:`ActiveCalls` follows the
  committed events (``flow.start`` opens a call in its flow; ``flow.end`` or ``customer.end``
  closes it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ivrstream.models import InteractionEvent
from ivrstream.stats import RateWindow

UNKNOWN_FLOW = "(unknown flow)"


@dataclass(frozen=True)
class SinkLine:
    name: str
    state: str
    delivered: int
    backlog: int
    retries: int
    dead_lettered: int


@dataclass(frozen=True)
class FlowLine:
    name: str
    in_ivr: int
    entered: int
    left: int


@dataclass(frozen=True)
class Snapshot:
    elapsed: float  # seconds since the demo started
    duration: float  # seconds of traffic planned
    phase: str  # "running", "draining" or "done"
    connection: str  # the source's state: streaming, connecting, waiting, …
    rate: float  # events committed per second, over the last few seconds
    committed: int
    p50_ms: float | None  # frame received → journal commit
    p99_ms: float | None
    reconnects: int
    gaps_opened: int
    gaps_open: int
    quarantined: int
    duplicates: int  # duplicate frames dropped
    reordered: int  # frames that arrived early and were put back in order
    sinks: tuple[SinkLine, ...]
    receiver_stored: int
    receiver_failures: int  # deliveries the receiver failed on purpose
    outage_left: float  # seconds the receiver outage still lasts (0: none)
    flows: tuple[FlowLine, ...]
    last_injection: str | None = None
    next_injection: str | None = None


class ActiveCalls:
    """Calls in each IVR flow right now, from committed events in journal order."""

    def __init__(self) -> None:
        self._flow_of: dict[str, str] = {}  # conversation → flow, while in the IVR
        self.entered: Counter[str] = Counter()
        self.left: Counter[str] = Counter()

    def add(self, event: InteractionEvent) -> None:
        conversation = event.conversation_id
        if event.event_type == "flow.start":
            if conversation not in self._flow_of:
                flow = _flow_name(event.data)
                self._flow_of[conversation] = flow
                self.entered[flow] += 1
        elif event.event_type in ("flow.end", "customer.end"):
            ended = self._flow_of.pop(conversation, None)
            if ended is not None:
                self.left[ended] += 1

    def lines(self) -> tuple[FlowLine, ...]:
        active = Counter(self._flow_of.values())
        return tuple(
            FlowLine(name, active[name], self.entered[name], self.left[name])
            for name in sorted(self.entered)
        )


def _flow_name(data: dict[str, Any]) -> str:
    flow = data.get("flow")
    name = flow.get("name") if isinstance(flow, dict) else None
    return name if isinstance(name, str) and name else UNKNOWN_FLOW


class Throughput:
    """Events per second from a growing total, sampled whenever a snapshot is taken."""

    def __init__(self, window: float = 2.0) -> None:
        self._window = RateWindow(window)
        self._total = 0

    def sample(self, now: float, total: int) -> float:
        self._window.add(now, total - self._total)
        self._total = total
        return self._window.rate(now)


def service_figures(statistics: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's numbers from ``Subscriber.statistics()``."""
    intake = statistics["intake"]
    streams = intake["streams"].values()
    source = statistics.get("source") or {}
    latency = intake["latency"]
    return {
        "connection": source.get("state", "–"),
        "committed": intake["committed"],
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "reconnects": sum(source.get("endings", {}).values()),
        "gaps_opened": sum(s["gaps_opened"] for s in streams),
        "gaps_open": sum(s["open_gaps"] for s in streams),
        "quarantined": intake["quarantined"],
        "duplicates": sum(s["duplicate"] for s in streams),
        "reordered": sum(s["early"] for s in streams),
        "sinks": tuple(
            SinkLine(
                name,
                sink["state"],
                sink["delivered"],
                sink["backlog"],
                sink["retries"],
                sink["dead_lettered"],
            )
            for name, sink in statistics["sinks"].items()
        ),
    }
