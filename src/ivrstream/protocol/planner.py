"""The topic planner: which topic goes on which notification channel, within Genesys' limits.

Rules this module keeps:

- A **unit** is one entry of a channel's subscription list: a plain topic or a combined
  topic ``prefix?a&b`` (at most ``max_combined_length`` = 200 characters, checked on
  :meth:`~Planner.add`).
  A unit is placed whole on one channel and never moves while it is wanted.
- A channel (a **slot** 0…``max_channels``-1; the shell maps slots to channel ids) holds units
  costing at most ``topics_per_channel`` (≤ 1,000). At most ``max_channels`` (≤ 20) slots are
  ever opened: creating a 21st channel silently evicts a live one, so it is never planned.
- Placement is first fit: the lowest open slot with room, and a new slot only when no open one
  has room. Nothing is rebalanced, so adding or removing a unit changes at most one channel
  (the room a removal frees goes first to units waiting for room).
- A unit that fits nowhere is **over budget**: it stays wanted and is reported in every
  :class:`Plan` until room frees up (units waiting for room are placed by priority, then age)
  or it is removed. Nothing wanted is ever dropped silently.
- A channel's list is replaced with ``PUT …/subscriptions?ignoreErrors=true``; :meth:`plan`
  hands out the full new list of exactly the channels whose list differs from the one last
  handed out. Call :meth:`resend` when a PUT failed or a channel was re-created.
- :meth:`record` reads the ``ChannelTopic`` results of a PUT: a Rejected unit leaves its
  channel, is reported once (with ``rejectionReason`` and ``missingPermissions``) and is not
  planned again until it is removed and added anew.

Assumptions (Genesys does not document them; each is a constant or setting):

- :data:`COMBINED_COUNTS_PARTS` — a combined topic costs one topic per part toward the 1,000
  per channel (the safe reading; ``Limits(combined_counts_parts=False)`` counts it as one).
- The ``ChannelTopic`` results of a combined topic may name the combined string or its expanded
  parts; both are understood, and one rejected part rejects the whole unit.
- A rejected topic costs nothing on the server. It is not PUT away on its own: it disappears
  with the channel's next PUT.

No clock, no I/O: the caller sends the lists and feeds back the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ivrstream.protocol.topics import (
    MAX_CHANNELS_PER_CLIENT,
    MAX_COMBINED_LENGTH,
    MAX_TOPICS_PER_CHANNEL,
    TopicError,
    expand_combined,
)

if TYPE_CHECKING:
    from ivrstream.config import NotificationsSettings

COMBINED_COUNTS_PARTS = True
OVER_BUDGET = "over budget"
PERMITTED = "Permitted"
REJECTED = "Rejected"
PRIORITY_BASE = 0  # placed first when room frees up (flow metrics, queue conversations)
PRIORITY_DEFAULT = 1


@dataclass(frozen=True)
class Limits:
    """What the planner may use. Raises ``ValueError`` outside Genesys' limits."""

    max_channels: int = 10
    topics_per_channel: int = MAX_TOPICS_PER_CHANNEL
    combined_counts_parts: bool = COMBINED_COUNTS_PARTS
    max_combined_length: int = MAX_COMBINED_LENGTH

    def __post_init__(self) -> None:
        problems = check_limits(self.max_channels, self.topics_per_channel)
        if problems:
            raise ValueError("; ".join(f"{name} {problem}" for name, problem in problems))
        if not 1 <= self.max_combined_length <= MAX_COMBINED_LENGTH:
            raise ValueError(f"max_combined_length must be 1…{MAX_COMBINED_LENGTH}")

    @classmethod
    def from_settings(cls, settings: NotificationsSettings) -> Limits:
        """The settings' limits, clamped to Genesys' (``validate`` reports values outside)."""
        return cls(
            max_channels=min(max(settings.max_channels, 1), MAX_CHANNELS_PER_CLIENT),
            topics_per_channel=min(max(settings.topics_per_channel, 1), MAX_TOPICS_PER_CHANNEL),
        )

    def cost(self, unit: str) -> int:
        """Topics ``unit`` uses of a channel's ``topics_per_channel``."""
        if "?" not in unit or not self.combined_counts_parts:
            return 1
        return len(expand_combined(unit, self.max_combined_length))


def check_limits(max_channels: int, topics_per_channel: int) -> list[tuple[str, str]]:
    """(setting, problem) for each limit outside what Genesys allows."""
    problems = []
    if not 1 <= max_channels <= MAX_CHANNELS_PER_CLIENT:
        problems.append(
            (
                "max_channels",
                f"must be 1…{MAX_CHANNELS_PER_CLIENT} (Genesys allows {MAX_CHANNELS_PER_CLIENT}"
                f" channels per OAuth client; a 21st evicts a live one), got {max_channels}",
            )
        )
    if not 1 <= topics_per_channel <= MAX_TOPICS_PER_CHANNEL:
        problems.append(
            (
                "topics_per_channel",
                f"must be 1…{MAX_TOPICS_PER_CHANNEL} (Genesys refuses more topics on a channel),"
                f" got {topics_per_channel}",
            )
        )
    return problems


@dataclass(frozen=True)
class TopicResult:
    """One ``ChannelTopic`` of a subscribe response."""

    id: str
    state: str  # "Permitted" | "Rejected"
    rejection_reason: str | None = None
    missing_permissions: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, entity: Mapping[str, Any]) -> TopicResult:
        """From the JSON object (``id``, ``state``, ``rejectionReason``, ``missingPermissions``)."""
        missing = entity.get("missingPermissions") or ()
        reason = entity.get("rejectionReason")
        return cls(
            id=str(entity.get("id", "")),
            state=str(entity.get("state", "")),
            rejection_reason=reason if isinstance(reason, str) else None,
            missing_permissions=tuple(str(p) for p in missing) if isinstance(missing, list) else (),
        )


@dataclass(frozen=True)
class Rejection:
    """A unit the server refused; it is not planned again until removed and re-added."""

    topic: str
    reason: str
    missing_permissions: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()  # the refused parts, when the server named expanded topics


@dataclass(frozen=True)
class Plan:
    """What to do now: PUT each list in ``channels`` (slot → full list; only changed slots)."""

    channels: dict[int, tuple[str, ...]]
    over_budget: tuple[str, ...]  # every wanted unit that fits nowhere (reason: "over budget")
    rejected: tuple[Rejection, ...]  # rejections recorded since the previous plan

    @property
    def unplaced(self) -> dict[str, str]:
        """Every unit not on a channel now (over budget or newly rejected) → why."""
        out = {unit: OVER_BUDGET for unit in self.over_budget}
        out.update({r.topic: r.reason for r in self.rejected})
        return out


@dataclass
class PlannerStats:
    channels: int = 0  # slots opened
    topics: int = 0  # topic budget in use
    units: int = 0  # units on channels
    over_budget: int = 0  # units waiting for room now
    rejected: int = 0  # rejected units remembered now
    lists_planned: int = 0  # channel lists handed out for a PUT
    permitted_results: int = 0
    rejected_results: int = 0


@dataclass
class _Unit:
    name: str
    cost: int
    priority: int
    order: int
    parts: tuple[str, ...]
    slot: int | None = None


@dataclass
class _Channel:
    units: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    used: int = 0
    sent: tuple[str, ...] | None = ()  # the list last handed out (None: must be re-sent)


class Planner:
    """Packs wanted units into at most ``limits.max_channels`` channels. :meth:`add` and
    :meth:`remove` what is wanted, send what :meth:`plan` returns, :meth:`record` the results."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._units: dict[str, _Unit] = {}  # wanted and not rejected: placed or over budget
        self._parts: dict[str, str] = {}  # expanded part → its combined unit
        self._waiting: dict[str, None] = {}  # wanted units on no channel
        self._channels: list[_Channel] = []
        self._rejected: dict[str, Rejection] = {}
        self._rejected_priority: dict[str, int] = {}
        self._new_rejections: list[Rejection] = []
        self._order = 0
        self._stats = PlannerStats()

    # -- what is wanted ------------------------------------------------------------------------

    def add(self, unit: str, *, priority: int = PRIORITY_DEFAULT) -> int | None:
        """Want ``unit``; the slot it is on, or None when it waits for room (reported in every
        plan as over budget) or was rejected before (:meth:`rejection`). Adding a wanted unit
        again changes nothing. Raises :class:`~ivrstream.protocol.topics.TopicError` for an
        empty, malformed or too long combined topic."""
        if unit in self._rejected:
            return None
        known = self._units.get(unit)
        if known is not None:
            return known.slot
        if not unit:
            raise TopicError("topic is empty")
        parts = tuple(expand_combined(unit, self.limits.max_combined_length)) if "?" in unit else ()
        self._order += 1
        entry = _Unit(unit, self.limits.cost(unit), priority, self._order, parts)
        self._units[unit] = entry
        for part in parts:
            self._parts.setdefault(part, unit)
        if not self._place(entry):
            self._waiting[unit] = None
        return entry.slot

    def remove(self, unit: str) -> bool:
        """Stop wanting ``unit`` (forgetting a rejection too); False if it was not wanted."""
        if self._rejected.pop(unit, None) is not None:
            del self._rejected_priority[unit]
            return True
        entry = self._units.pop(unit, None)
        if entry is None:
            return False
        self._forget_parts(entry)
        self._waiting.pop(unit, None)
        if entry.slot is not None:
            self._take(entry)
            self._fill()
        return True

    def update(self, wanted: Iterable[str], *, priority: int = PRIORITY_DEFAULT) -> None:
        """Make the units of ``priority`` exactly ``wanted``: remove the rest (forgetting their
        rejections, so a unit wanted again later is tried again), then add."""
        target = dict.fromkeys(wanted)
        known = [u.name for u in self._units.values() if u.priority == priority]
        known += [name for name, p in self._rejected_priority.items() if p == priority]
        for name in known:
            if name not in target:
                self.remove(name)
        for name in target:
            self.add(name, priority=priority)

    # -- what to send --------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The full new list of every channel that changed since the last plan, every unit that
        does not fit, and the rejections recorded since. Send every list (PUT) before the next
        plan; call :meth:`resend` for a list that could not be sent."""
        changed: dict[int, tuple[str, ...]] = {}
        for slot, channel in enumerate(self._channels):
            current = tuple(channel.units)
            if current != channel.sent:
                changed[slot] = current
                channel.sent = current
        self._stats.lists_planned += len(changed)
        rejected, self._new_rejections = tuple(self._new_rejections), []
        return Plan(changed, self.over_budget(), rejected)

    def resend(self, slot: int | None = None) -> None:
        """The list of ``slot`` (None: every slot) must be sent again: its PUT failed, or the
        channel was lost and re-created. The next :meth:`plan` includes it."""
        for index, channel in enumerate(self._channels):
            if slot is None or index == slot:
                channel.sent = None

    def record(
        self, slot: int, results: Iterable[TopicResult | Mapping[str, Any]]
    ) -> list[Rejection]:
        """Read the ``ChannelTopic`` results of the PUT of ``slot``; return the new rejections
        (also in the next plan). Results for units not on ``slot`` are ignored."""
        refused: dict[str, list[TopicResult]] = {}
        for raw in results:
            result = raw if isinstance(raw, TopicResult) else TopicResult.from_wire(raw)
            if result.state == PERMITTED:
                self._stats.permitted_results += 1
                continue
            if result.state != REJECTED:
                continue
            self._stats.rejected_results += 1
            name = result.id if result.id in self._units else self._parts.get(result.id)
            entry = self._units.get(name) if name is not None else None
            if entry is not None and entry.slot == slot:
                refused.setdefault(entry.name, []).append(result)
        new = [self._reject(self._units[name], found) for name, found in refused.items()]
        if new:
            self._fill()
        return new

    # -- what is known -------------------------------------------------------------------------

    def slot_of(self, unit: str) -> int | None:
        entry = self._units.get(unit)
        return None if entry is None else entry.slot

    def channel(self, slot: int) -> tuple[str, ...]:
        """The full list of ``slot`` as planned now (empty for a slot never opened)."""
        return tuple(self._channels[slot].units) if slot < len(self._channels) else ()

    def channels(self) -> dict[int, tuple[str, ...]]:
        """Every opened slot and its list as planned now."""
        return {slot: tuple(channel.units) for slot, channel in enumerate(self._channels)}

    def over_budget(self) -> tuple[str, ...]:
        """Wanted units on no channel, in the order they will get room."""
        waiting = sorted((self._units[name] for name in self._waiting), key=_queue_order)
        return tuple(u.name for u in waiting)

    def rejection(self, unit: str) -> Rejection | None:
        return self._rejected.get(unit)

    def rejections(self) -> dict[str, Rejection]:
        return dict(self._rejected)

    def room_for(self, cost: int) -> int:
        """How many more units of ``cost`` topics fit, in open slots and slots not yet opened."""
        if cost <= 0:
            raise ValueError("cost must be ≥ 1")
        per_channel = self.limits.topics_per_channel
        unopened = self.limits.max_channels - len(self._channels)
        room = sum((per_channel - c.used) // cost for c in self._channels)
        return room + unopened * (per_channel // cost)

    def statistics(self) -> PlannerStats:
        stats = self._stats
        stats.channels = len(self._channels)
        stats.topics = sum(c.used for c in self._channels)
        stats.units = sum(len(c.units) for c in self._channels)
        stats.over_budget = len(self._waiting)
        stats.rejected = len(self._rejected)
        return PlannerStats(**vars(stats))

    def __contains__(self, unit: object) -> bool:
        return unit in self._units or unit in self._rejected

    # -- internals -----------------------------------------------------------------------------

    def _place(self, entry: _Unit) -> bool:
        per_channel = self.limits.topics_per_channel
        for slot, channel in enumerate(self._channels):
            if channel.used + entry.cost <= per_channel:
                self._put(entry, slot)
                return True
        if len(self._channels) < self.limits.max_channels and entry.cost <= per_channel:
            self._channels.append(_Channel())
            self._put(entry, len(self._channels) - 1)
            return True
        return False

    def _put(self, entry: _Unit, slot: int) -> None:
        channel = self._channels[slot]
        channel.units[entry.name] = None
        channel.used += entry.cost
        entry.slot = slot

    def _take(self, entry: _Unit) -> None:
        assert entry.slot is not None
        channel = self._channels[entry.slot]
        del channel.units[entry.name]
        channel.used -= entry.cost
        entry.slot = None

    def _fill(self) -> None:
        """Give freed room to the units waiting for it (priority, then age)."""
        if not self._waiting:
            return
        for name in self.over_budget():
            if self._place(self._units[name]):
                del self._waiting[name]

    def _reject(self, entry: _Unit, found: list[TopicResult]) -> Rejection:
        reasons = dict.fromkeys(r.rejection_reason or REJECTED for r in found)
        missing = dict.fromkeys(p for r in found for p in r.missing_permissions)
        parts = tuple(r.id for r in found if r.id != entry.name)
        rejection = Rejection(entry.name, "; ".join(reasons), tuple(missing), parts)
        slot = entry.slot
        self._take(entry)
        if slot is not None:  # the server drops it at the channel's next PUT; no PUT just for it
            channel = self._channels[slot]
            if channel.sent is not None:
                channel.sent = tuple(u for u in channel.sent if u != entry.name)
        del self._units[entry.name]
        self._forget_parts(entry)
        self._rejected[entry.name] = rejection
        self._rejected_priority[entry.name] = entry.priority
        self._new_rejections.append(rejection)
        return rejection

    def _forget_parts(self, entry: _Unit) -> None:
        for part in entry.parts:
            if self._parts.get(part) == entry.name:
                del self._parts[part]


def _queue_order(unit: _Unit) -> tuple[int, int]:
    return unit.priority, unit.order
