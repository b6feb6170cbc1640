"""Health, decided without I/O: readiness, live rates, when something last happened, history.

Rules this module keeps:

- **Ready** means events are flowing or heartbeats are arriving, not merely that a socket is
  open: the source is connected (Event Streams: subscribed and streaming; Notifications: a
  channel slot is live), something arrived within the idle limit, and the journal takes writes.
  Every "not ready" comes with one reason a person can act on, checked in that order of
  importance: journal, then connection, then silence.
- Rates are measured from samples of cumulative counters: (now − value a window ago) / elapsed,
  so a sampling hiccup changes the precision, never the total.
- History is bounded: the newest ``limit`` entries.

No clock: ``now`` is an argument.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str | None = None  # why not (None when ready)

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ok, "reason": self.reason}


def readiness(
    *,
    journal_error: str | None,
    has_source: bool,
    connected: bool,
    state: str,
    silent_for: float | None,
    idle_limit: float,
) -> Readiness:
    """Is the service ready? ``silent_for``: seconds since the last event or heartbeat (or since
    the connection opened, if nothing came yet); None when unknown."""
    if journal_error is not None:
        return Readiness(False, f"the journal cannot be written: {journal_error}")
    if not has_source:
        return Readiness(True)  # delivering what the journal holds: nothing to connect
    if not connected:
        return Readiness(False, f"not connected (source {state})")
    if silent_for is None or silent_for > idle_limit:
        shown = "ever" if silent_for is None else f"{silent_for:.1f}s"
        return Readiness(False, f"no event or heartbeat for {shown} (idle limit {idle_limit:g}s)")
    return Readiness(True)


class Activity:
    """When a counter last moved: feed it samples, ask how long it has been still."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.changed_at: float | None = None

    def observe(self, value: int, now: float) -> None:
        if value != self.value:
            if self.value is not None:  # the first sample is a baseline, not an arrival
                self.changed_at = now
            self.value = value

    def touch(self, now: float) -> None:
        """Something arrived now (known without a counter)."""
        self.changed_at = now if self.changed_at is None else max(self.changed_at, now)

    def since(self, now: float) -> float | None:
        return None if self.changed_at is None else max(0.0, now - self.changed_at)


class Rates:
    """Per-second rates of one cumulative counter over several windows."""

    def __init__(self, windows: tuple[float, ...] = (1.0, 60.0)) -> None:
        self.windows = windows
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, value: int) -> None:
        samples = self._samples
        samples.append((now, value))
        horizon = now - max(self.windows)
        # keep one sample at or before the horizon: the longest window measures from it
        while len(samples) > 2 and samples[1][0] <= horizon:
            samples.popleft()

    def rate(self, window: float) -> float | None:
        """Per second over the last ``window`` seconds (None until two samples exist)."""
        samples = self._samples
        if len(samples) < 2:
            return None
        now, value = samples[-1]
        horizon = now - window
        then, before = samples[0]
        for t, v in reversed(samples):
            if t <= horizon:
                then, before = t, v
                break
        elapsed = now - then
        if elapsed <= 0:
            return None
        return max(0, value - before) / elapsed

    def summary(self) -> dict[str, float | None]:
        return {_window_name(w): _round(self.rate(w)) for w in self.windows}


def _window_name(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class History:
    """The newest ``limit`` entries of something that happens now and then."""

    def __init__(self, limit: int = 50) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self.total = 0

    def add(self, at: float, kind: str, **details: Any) -> None:
        self.total += 1
        self._entries.append({"at": at, "event": kind, **details})

    def entries(self) -> list[dict[str, Any]]:
        """Oldest first."""
        return list(self._entries)
