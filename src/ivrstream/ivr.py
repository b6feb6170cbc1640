"""What the IVR is doing: calls in each flow now, how they leave it, transfers, abandons.

Folds journaled canonical events — whatever their source — into a small live view for the
metrics and ``/status``. The same fields come in two shapes: Event Streams snapshots carry
``data.flow.id`` and ``data.outcome.{exitReason,transferType,acdOutcome}``; Notifications and
analytics detail bodies carry ``data.flowId``, ``data.exitReason``, ``data.transferType`` and
``data.acdOutcome``. The caller extracts them (:class:`IvrRow`); this module only counts.

Rules it keeps:

- A call is *active in a flow* from its ``flow.start`` until its ``flow.end`` (of that flow) or
  its ``customer.end``. Events arrive in journal order, which for backfilled events is late: the
  ``flow.start`` of a flow the call was already seen leaving (or of a call already over) does
  not make it active again.
- Every ``flow.end`` is a flow exit, counted by flow and ``exitReason``; it is a *transfer* when
  the reason is ``TRANSFER`` or a ``transferType`` is given. *Containment* is the share of exits
  that were not transfers (the call ended in the IVR).
- An *abandon* is an ``acd.end`` whose ``acdOutcome`` is ``ABANDON`` (the caller hung up in
  the queue the IVR sent them to); hanging up inside the IVR is the ``DISCONNECT`` exit reason.
- Memory is bounded: at most ``max_active`` calls are held (the oldest go first), a call seen
  for longer than ``ttl`` is forgotten, and labels taken from the data (flow ids, reasons) are
  capped — past the cap they count under ``other``.

No clock, no I/O: ``now`` is an argument.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

OTHER = "other"
UNKNOWN = "unknown"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # label values may hold anything else


class IvrRow(NamedTuple):
    """The fields of one journaled event the view needs (None where absent)."""

    conversation_id: str
    event_type: str
    flow_id: str | None = None
    flow_name: str | None = None
    exit_reason: str | None = None
    transfer_type: str | None = None
    acd_outcome: str | None = None


KINDS = ("flow.start", "flow.end", "acd.end", "customer.end")  # the event types it reads


class Labels:
    """At most ``limit`` distinct label values; the rest are ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: set[str] = set()

    def __call__(self, value: object) -> str:
        if not isinstance(value, str) or not value:
            return UNKNOWN
        value = _CONTROL.sub("_", value[:64])
        if value in self._known:
            return value
        if len(self._known) >= self.limit:
            return OTHER
        self._known.add(value)
        return value


class IvrView:
    """Feed it rows with :meth:`apply`; read the counters and :meth:`snapshot`."""

    def __init__(
        self,
        *,
        max_active: int = 100_000,
        ttl: float = 4 * 3600.0,
        max_flows: int = 500,
        max_reasons: int = 50,
    ) -> None:
        self.max_active = max_active
        self.ttl = ttl
        self._flow = Labels(max_flows)
        self._reason = Labels(max_reasons)
        self._active: OrderedDict[str, tuple[str, float]] = OrderedDict()  # conv → (flow, since)
        # recently seen endings: (conversation, flow) for flow.end, (conversation, "") for
        # customer.end
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.active = Counter[str]()  # flow → calls in it now
        self.starts = Counter[str]()  # flow → flow.start events
        self.exits = Counter[tuple[str, str]]()  # (flow, exitReason) → flow.end events
        self.transfers = Counter[tuple[str, str]]()  # (flow, transferType) → transfers
        self.abandons = 0
        self.acd_outcomes = Counter[str]()
        self.names: dict[str, str] = {}  # flow id → name, where an event said
        self.forgotten = 0  # calls dropped by the cap or the ttl (their end never came)

    # -- input --------------------------------------------------------------------------------

    def apply(self, rows: Iterable[IvrRow], now: float, *, count: bool = True) -> None:
        """Fold ``rows`` (journal order). ``count=False`` rebuilds who is active without
        counting (a warm-up over events journaled before this process started)."""
        for row in rows:
            kind = row.event_type
            if kind == "flow.start":
                self._started(row, now, count)
            elif kind == "flow.end":
                self._left(row.conversation_id, self._flow(row.flow_id))
                if count:
                    self._exit(row)
            elif kind == "customer.end":
                self._left(row.conversation_id, "")
            elif kind == "acd.end" and count:
                outcome = self._reason(row.acd_outcome)
                self.acd_outcomes[outcome] += 1
                if outcome == "ABANDON":
                    self.abandons += 1
        self.expire(now)

    def _started(self, row: IvrRow, now: float, count: bool) -> None:
        conversation = row.conversation_id
        flow = self._flow(row.flow_id)
        name = row.flow_name
        if (
            isinstance(name, str)
            and name
            and flow not in self.names
            and flow not in (OTHER, UNKNOWN)
        ):
            self.names[flow] = name[:128]
        if count:
            self.starts[flow] += 1
        if (conversation, flow) in self._ended or (conversation, "") in self._ended:
            return  # a late (backfilled) start of a flow the call has left already
        previous = self._active.pop(conversation, None)
        if previous is not None:
            self._decrement(previous[0])
        self._active[conversation] = (flow, now)
        self.active[flow] += 1
        while len(self._active) > self.max_active:
            _, (old_flow, _) = self._active.popitem(last=False)
            self._decrement(old_flow)
            self.forgotten += 1

    def _left(self, conversation: str, flow: str) -> None:
        """The call left ``flow`` (``""``: hung up, left every flow)."""
        entry = self._active.get(conversation)
        if entry is not None and flow in ("", UNKNOWN, entry[0]):
            del self._active[conversation]
            self._decrement(entry[0])
        key = (conversation, flow)
        self._ended[key] = None
        self._ended.move_to_end(key)
        while len(self._ended) > self.max_active:
            self._ended.popitem(last=False)

    def _exit(self, row: IvrRow) -> None:
        flow = self._flow(row.flow_id)
        reason = self._reason(row.exit_reason)
        self.exits[flow, reason] += 1
        if reason == "TRANSFER" or row.transfer_type:
            self.transfers[flow, self._reason(row.transfer_type)] += 1

    def _decrement(self, flow: str) -> None:
        self.active[flow] -= 1
        if self.active[flow] <= 0:
            del self.active[flow]

    def expire(self, now: float) -> None:
        """Forget calls active for longer than ``ttl`` (their end was never journaled)."""
        horizon = now - self.ttl
        while self._active:
            conversation, (flow, since) = next(iter(self._active.items()))
            if since >= horizon:
                break
            del self._active[conversation]
            self._decrement(flow)
            self.forgotten += 1

    # -- output -------------------------------------------------------------------------------

    @property
    def active_total(self) -> int:
        return len(self._active)

    def containment(self, flow: str | None = None) -> float | None:
        """Share of flow exits that were not transfers (None before the first exit)."""
        exits = sum(n for (f, _), n in self.exits.items() if flow is None or f == flow)
        if not exits:
            return None
        transfers = sum(n for (f, _), n in self.transfers.items() if flow is None or f == flow)
        return (exits - transfers) / exits

    def flows(self) -> list[str]:
        """Every flow seen, busiest first."""
        seen = set(self.active) | set(self.starts) | {f for f, _ in self.exits}
        return sorted(seen, key=lambda f: (-self.active.get(f, 0), f))

    def snapshot(self) -> dict[str, Any]:
        """Plain data for ``/status``."""
        by_flow = []
        for flow in self.flows():
            exits = {r: n for (f, r), n in self.exits.items() if f == flow}
            by_flow.append(
                {
                    "flow": flow,
                    "name": self.names.get(flow),
                    "active": self.active.get(flow, 0),
                    "started": self.starts.get(flow, 0),
                    "exits": exits,
                    "transfers": sum(n for (f, _), n in self.transfers.items() if f == flow),
                    "containment": self.containment(flow),
                }
            )
        return {
            "active_calls": self.active_total,
            "flows": by_flow,
            "exits": sum(self.exits.values()),
            "transfers": sum(self.transfers.values()),
            "abandons": self.abandons,
            "containment": self.containment(),
        }
