"""IVR coverage over Notifications: which conversations get their detail topics, and for how long.

Over a WebSocket there is no org-wide wildcard, so each conversation's detail topics must be
subscribed by id. Rules this module keeps:

- **Base topics** — ``v2.analytics.flow.<flowId>.metrics`` for each flow id (coverage
  ``"flows"``) and ``v2.routing.queues.<queueId>.conversations`` for each queue id (coverage
  ``"queues"``) — are planned first, at :data:`~ivrstream.protocol.planner.PRIORITY_BASE`, and
  kept: room freed by a released conversation goes to a base topic waiting for room first.
- A conversation **discovered** (:meth:`Coverage.discovered`: a flow metric record, a queue
  snapshot, a discovery poll) gets the detail topics of ``detail_kinds`` at once — by default as
  one combined topic ``v2.detail.events.conversation.<id>?flow.start&…`` (≤ 200 characters), so
  a conversation is one unit on one channel and one line of a PUT. It costs
  :func:`conversation_cost` topics of the budget (8 with every kind, under the planner's
  ``COMBINED_COUNTS_PARTS`` assumption). Conversation ids are compared in lower case.
- Its topics are **released** ``release_grace`` seconds after its end is known — a
  ``customer.end`` event (:meth:`Coverage.observe`) or ``conversationEnd`` from analytics
  (:meth:`Coverage.ended`) — or ``conversation_ttl`` seconds after it started (when the start is
  unknown: after it was first seen), whichever comes first. :meth:`Coverage.tick` releases.
- **Nothing discovered is lost silently.** Every conversation sighted is either covered live or
  handed out for backfill (:meth:`Coverage.backfill`), and handed out **at most once**, for the
  first of these reasons:

  - *seen late* — first seen more than ``late_after`` seconds after it started (its early events
    were sent before its topics existed; judged as soon as the start is known), or first seen
    after its end was reported (never subscribed);
  - *over budget* — no room for its topics (it is not covered later either);
  - *rejected* — the server refused its topics; after a rejection naming missing permissions
    no further conversation is tried (:attr:`Coverage.blocked`);
  - *end not seen* — released by ``conversation_ttl`` although ``customer.end`` was subscribed:
    its last events may be missing.
- A conversation is remembered for ``forget_after`` seconds after its release, so a late
  sighting (a flow metric record after the hang-up) neither re-subscribes nor re-reports it.
- Sightings are ignored (not tracked, not handed out) when conversation coverage is off, or
  when the id is not a UUID (counted as ``invalid_ids``).

Assumptions (Genesys does not document them; each is a constant or setting):

- :data:`RELEASE_GRACE` — detail events of one conversation arrive in any order across topics;
  10 s after ``customer.end`` the trailing ``flow.end`` / ``flow.outcome`` / ``acd.end`` have come.
- :data:`LATE_AFTER` — a conversation subscribed within 5 s of its start is counted as covered
  live (a start time that is unknown never counts as late).
- :data:`FORGET_AFTER` — no discovery source reports a conversation 15 minutes after it ended.
- ``conversation_ttl`` (setting, 4 h) — no IVR conversation that never reports its end lasts
  longer.
- A backfill hand-out means "fetch the whole conversation from analytics once it has ended";
  the journal de-duplicates what also came live, so one hand-out per conversation is enough.

Times are seconds on one clock (epoch seconds, so that start times from events compare with
``now``); detail event times are epoch milliseconds — divide by 1,000 first.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ivrstream.protocol.planner import (
    PRIORITY_BASE,
    PRIORITY_DEFAULT,
    Limits,
    Plan,
    Planner,
    PlannerStats,
    Rejection,
    TopicResult,
    check_limits,
)
from ivrstream.protocol.topics import (
    DETAIL_PREFIX,
    TopicError,
    combine,
    detail_topic,
    flow_metrics_topic,
    parse_topic,
    queue_topic,
)

if TYPE_CHECKING:
    from ivrstream.config import NotificationsSettings

RELEASE_GRACE = 10.0
LATE_AFTER = 5.0
FORGET_AFTER = 900.0
PRIORITY_CONVERSATION = PRIORITY_DEFAULT
END_KIND = "customer.end"
EXAMPLE_ID = "00000000-0000-0000-0000-000000000000"  # any UUID: every id has the same length


class Reason(StrEnum):
    """Why a conversation needs backfill."""

    SEEN_LATE = "seen late"
    OVER_BUDGET = "over budget"
    REJECTED = "rejected"
    END_NOT_SEEN = "end not seen"


class State(StrEnum):
    COVERED = "covered"  # its topics are planned
    ENDING = "ending"  # covered; released when the grace period ends
    UNCOVERED = "uncovered"  # known, no topics (over budget or rejected)
    DONE = "done"  # released; remembered so a late sighting changes nothing


@dataclass(frozen=True)
class Backfill:
    """A conversation to fetch from analytics (best once it ended: the whole conversation,
    de-duplicated on event identity). Live events, if any, start at ``seen_at``."""

    conversation_id: str
    reason: Reason
    started_at: float | None
    seen_at: float
    detail: str = ""  # the rejection reason, for REJECTED


@dataclass
class CoverageStats:
    """Counts since the start; ``discovered == covered_total + seen_after_end + over_budget +
    rejected`` always holds."""

    discovered: int = 0  # conversations sighted (a forgotten one sighted again counts again)
    covered: int = 0  # conversations whose topics are planned now
    covered_total: int = 0  # conversations given detail topics the server did not refuse
    seen_late: int = 0  # sighted too late for all their events live (any outcome)
    seen_after_end: int = 0  # … of which already over when first seen (never subscribed)
    over_budget: int = 0
    rejected: int = 0  # refused by the server, or not tried after a missing-permission refusal
    released: int = 0
    released_by_ttl: int = 0
    backfill: int = 0  # conversations handed out for backfill
    invalid_ids: int = 0  # sightings whose conversation id is not a UUID (ignored)
    remembered: int = 0  # conversations tracked now (any state)


@dataclass
class _Conversation:
    id: str
    state: State
    seen_at: float
    started_at: float | None
    deadline: float  # COVERED/UNCOVERED: ttl; ENDING: end of grace; DONE: forget
    units: tuple[str, ...] = ()
    sighted: bool = True  # False: only its end is known (ended() before any sighting)
    handed_out: bool = False


# -- the arithmetic ------------------------------------------------------------------------------


def base_topics(settings: NotificationsSettings, *, flow_ids: Iterable[str] = ()) -> list[str]:
    """Flow metric topics (coverage "flows": ``settings.flow_ids`` plus ``flow_ids``, e.g.
    resolved from ``flow_names``) then queue conversation topics (coverage "queues")."""
    topics: list[str] = []
    if "flows" in settings.coverage:
        topics += [flow_metrics_topic(i) for i in dict.fromkeys([*settings.flow_ids, *flow_ids])]
    if "queues" in settings.coverage:
        topics += [queue_topic(i) for i in dict.fromkeys(settings.queue_ids)]
    return topics


def conversation_units(
    conversation_id: str, kinds: Iterable[str], *, combined: bool = True
) -> tuple[str, ...]:
    """The subscription entries of one conversation: its detail topics, combined or plain."""
    topics = [detail_topic(conversation_id, kind) for kind in dict.fromkeys(kinds)]
    return tuple(combine(topics)) if combined else tuple(topics)


def conversation_cost(kinds: Iterable[str], limits: Limits, *, combined: bool = True) -> int:
    """Topics one conversation uses of the budget (0 without kinds)."""
    return sum(limits.cost(u) for u in conversation_units(EXAMPLE_ID, kinds, combined=combined))


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Budget:
    """The topic arithmetic of a configuration (what ``ivrstream validate`` shows). The limits
    are the ones used: the settings clamped to Genesys' (values outside are in ``problems``)."""

    base_topics: int  # valid base topics from the configuration (flow_names resolve later)
    base_channels: int  # channels the base topics alone need
    max_channels: int
    topics_per_channel: int
    conversation_units: int  # subscription entries per conversation (combined topics)
    conversation_cost: int  # topics per conversation (0: conversations not covered)
    concurrent_conversations: int | None  # conversations covered at once (None: not covered)
    released_on_end: bool  # customer.end subscribed: topics released at hang-up, not by ttl
    combined_counts_parts: bool
    problems: tuple[tuple[str, str], ...]  # (field, message)


def budget(settings: NotificationsSettings, *, combined: bool = True) -> Budget:
    """Plan the base topics of ``settings`` and count the room left for conversations."""
    problems: list[tuple[str, str]] = [
        (f"notifications.{name}", message)
        for name, message in check_limits(settings.max_channels, settings.topics_per_channel)
    ]
    coverage = set(settings.coverage)
    if not coverage:
        problems.append(("notifications.coverage", "is empty: nothing would be subscribed"))
    topics: list[str] = []
    for name, ids, make in (
        ("flow_ids", settings.flow_ids, flow_metrics_topic),
        ("queue_ids", settings.queue_ids, queue_topic),
    ):
        for index, ident in enumerate(ids):
            parsed = parse_topic(make(ident))
            if parsed.ok:
                topics.append(parsed.topic)
            elif parsed.spec is not None and parsed.spec.parameter is not None:
                problems.append((f"notifications.{name}[{index}]", str(parsed.problem)))
            else:  # empty, or containing '?': not even the shape of a topic
                problems.append(
                    (
                        f"notifications.{name}[{index}]",
                        f"must be a UUID, got {_shorten(ident)!r}",
                    )
                )
    if "queues" in coverage and not settings.queue_ids:
        problems.append(
            ("notifications.queue_ids", "coverage includes queues but no queue ids are listed")
        )
    wanted = set(base_topics(settings))
    topics = [t for t in dict.fromkeys(topics) if t in wanted]
    limits = Limits.from_settings(settings)
    planner = Planner(limits)
    for topic in topics:
        planner.add(topic, priority=PRIORITY_BASE)
    waiting = len(planner.over_budget())
    if waiting:
        problems.append(
            (
                "notifications.max_channels",
                f"{len(topics)} base topics do not fit in {limits.max_channels} channel(s) of"
                f" {limits.topics_per_channel} topics ({waiting} left over)",
            )
        )
    units, cost, concurrent = 0, 0, None
    kinds = tuple(dict.fromkeys(settings.detail_kinds))
    if "conversations" in coverage:
        units = len(conversation_units(EXAMPLE_ID, kinds, combined=combined))
        cost = conversation_cost(kinds, limits, combined=combined)
        if cost == 0:
            problems.append(
                ("notifications.detail_kinds", "coverage includes conversations but no kinds")
            )
        else:
            concurrent = planner.room_for(cost)
            if concurrent == 0 and not waiting:
                problems.append(
                    (
                        "notifications.max_channels",
                        f"no room for a single conversation ({cost} topics) beside the base topics",
                    )
                )
        if not {"flows", "queues"} & coverage and not settings.discovery_interval > 0:
            problems.append(
                (
                    "notifications.coverage",
                    "conversations are found by flow metrics, queue topics or a discovery poll:"
                    " add flows or queues, or set discovery_interval > 0",
                )
            )
    if not settings.conversation_ttl > 0:
        problems.append(("notifications.conversation_ttl", "must be greater than 0"))
    return Budget(
        base_topics=len(topics),
        base_channels=len(planner.channels()),
        max_channels=limits.max_channels,
        topics_per_channel=limits.topics_per_channel,
        conversation_units=units,
        conversation_cost=cost,
        concurrent_conversations=concurrent,
        released_on_end=END_KIND in kinds,
        combined_counts_parts=limits.combined_counts_parts,
        problems=tuple(problems),
    )


# -- the lifecycle -------------------------------------------------------------------------------


class Coverage:
    """The conversations covered by detail topics, within the planner's budget.

    Feed it sightings (:meth:`discovered`), events (:meth:`observe`), ends (:meth:`ended`) and
    time (:meth:`tick`, by :meth:`next_deadline`); send what :meth:`plan` returns and
    :meth:`record` the results; backfill what :meth:`backfill` hands out.
    """

    def __init__(
        self,
        settings: NotificationsSettings,
        *,
        flow_ids: Iterable[str] = (),
        limits: Limits | None = None,
        combined: bool = True,
        late_after: float = LATE_AFTER,
        release_grace: float = RELEASE_GRACE,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        """Raises :class:`~ivrstream.protocol.topics.TopicError` for a base topic that is not
        valid (``ivrstream validate`` names it first)."""
        self.planner = Planner(limits or Limits.from_settings(settings))
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(settings.detail_kinds))
        self.enabled = "conversations" in settings.coverage and bool(self.kinds)
        self.ttl = settings.conversation_ttl
        self.combined = combined
        self.late_after = late_after
        self.release_grace = release_grace
        self.forget_after = forget_after
        self.cost = conversation_cost(self.kinds, self.planner.limits, combined=combined)
        self._conversations: dict[str, _Conversation] = {}
        self._by_unit: dict[str, str] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._backfill: list[Backfill] = []
        self._blocked: Rejection | None = None  # detail topics refused for missing permissions
        self._stats = CoverageStats()
        self.set_base(base_topics(settings, flow_ids=flow_ids))

    def set_base(self, topics: Iterable[str]) -> None:
        """Make the base topics exactly ``topics`` (e.g. once ``flow_names`` are resolved)."""
        topics = list(dict.fromkeys(topics))
        for topic in topics:
            parsed = parse_topic(topic)
            if not parsed.ok:
                raise TopicError(f"base topic {_shorten(topic)!r}: {parsed.problem}")
        self.planner.update(topics, priority=PRIORITY_BASE)

    @property
    def blocked(self) -> Rejection | None:
        """The missing-permission refusal that stopped conversation coverage (None: not
        stopped). Every conversation sighted since is handed out as rejected."""
        return self._blocked

    # -- inputs --------------------------------------------------------------------------------

    def discovered(
        self, conversation_id: str, now: float, *, started_at: float | None = None
    ) -> bool:
        """A conversation was seen (``started_at``: its start, if the source says). Plans its
        detail topics the first time; True while they are planned. A conversation that cannot
        be covered is handed out for backfill (see :meth:`backfill`)."""
        if not self.enabled:
            return False
        conversation_id = conversation_id.lower()
        known = self._conversations.get(conversation_id)
        if known is not None:
            self._sighted_again(known, now, started_at)
            return known.state in (State.COVERED, State.ENDING)
        if not self._valid(conversation_id):
            self._stats.invalid_ids += 1
            return False
        deadline = (started_at if started_at is not None else now) + self.ttl
        record = _Conversation(conversation_id, State.UNCOVERED, now, started_at, deadline)
        self._conversations[conversation_id] = record
        self._schedule(record)
        self._stats.discovered += 1
        late = self._late(record)
        if late:
            self._stats.seen_late += 1
        if self._blocked is not None:
            self._uncover(record, Reason.REJECTED, self._blocked.reason)
            return False
        units = conversation_units(conversation_id, self.kinds, combined=self.combined)
        placed = [
            unit
            for unit in units
            if self.planner.add(unit, priority=PRIORITY_CONVERSATION) is not None
        ]
        if len(placed) < len(units):
            for unit in units:
                self.planner.remove(unit)
            self._uncover(record, Reason.OVER_BUDGET)
            return False
        record.state, record.units = State.COVERED, units
        self._by_unit.update(dict.fromkeys(units, conversation_id))
        self._stats.covered_total += 1
        if late:
            self._hand_out(record, Reason.SEEN_LATE)
        return True

    def observe(self, topic: str, now: float) -> None:
        """An event arrived on ``topic``: a ``customer.end`` starts its conversation's release."""
        suffix = f".{END_KIND}"
        if topic.startswith(DETAIL_PREFIX) and topic.endswith(suffix):
            self.ended(topic[len(DETAIL_PREFIX) : -len(suffix)], now)

    def ended(self, conversation_id: str, now: float) -> None:
        """The conversation is over (``customer.end``, or ``conversationEnd`` from analytics):
        release its topics after the grace period. An unknown one is remembered as done, so a
        later sighting does not subscribe it (that sighting hands it out as seen late)."""
        if not self.enabled:
            return
        conversation_id = conversation_id.lower()
        record = self._conversations.get(conversation_id)
        if record is None:
            if not self._valid(conversation_id):
                return
            record = _Conversation(conversation_id, State.DONE, now, None, now + self.forget_after)
            record.sighted = False
            self._conversations[conversation_id] = record
            self._schedule(record)
        elif record.state == State.COVERED:
            record.state = State.ENDING
            record.deadline = min(record.deadline, now + self.release_grace)
            self._schedule(record)
        elif record.state == State.UNCOVERED:
            self._done(record, now)

    def tick(self, now: float) -> None:
        """Release conversations whose grace period or ttl is over; forget old ones."""
        while self._deadlines and self._deadlines[0][0] <= now:
            when, conversation_id = heapq.heappop(self._deadlines)
            record = self._conversations.get(conversation_id)
            if record is None or record.deadline != when:
                continue  # superseded
            if record.state == State.DONE:
                del self._conversations[conversation_id]
                continue
            if record.state == State.COVERED:  # the ttl ran out before any end was known
                self._stats.released_by_ttl += 1
                if END_KIND in self.kinds:
                    self._hand_out(record, Reason.END_NOT_SEEN)
            self._done(record, now)

    def record(
        self, slot: int, results: Iterable[TopicResult | Mapping[str, Any]]
    ) -> list[Rejection]:
        """Read the results of the PUT of ``slot``. A rejected conversation is uncovered and
        handed out for backfill; rejected base topics are reported in the next plan."""
        rejections = self.planner.record(slot, results)
        for rejection in rejections:
            conversation_id = self._by_unit.get(rejection.topic)
            record = self._conversations.get(conversation_id) if conversation_id else None
            if record is None or record.state not in (State.COVERED, State.ENDING):
                continue
            if rejection.missing_permissions and self._blocked is None:
                self._blocked = rejection
            self._release_units(record)
            self._stats.covered_total -= 1
            self._uncover(record, Reason.REJECTED, rejection.reason)
        return rejections

    # -- outputs -------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The channel lists to PUT now (see :meth:`Planner.plan`)."""
        return self.planner.plan()

    def backfill(self) -> list[Backfill]:
        """Conversations to backfill since the last call (each handed out once)."""
        out, self._backfill = self._backfill, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has work next (None: nothing scheduled)."""
        while self._deadlines:
            when, conversation_id = self._deadlines[0]
            record = self._conversations.get(conversation_id)
            if record is not None and record.deadline == when:
                return when
            heapq.heappop(self._deadlines)
        return None

    def state(self, conversation_id: str) -> State | None:
        record = self._conversations.get(conversation_id.lower())
        return None if record is None else record.state

    def covered(self) -> list[str]:
        """Conversations whose detail topics are planned now, oldest first."""
        return [
            c.id for c in self._conversations.values() if c.state in (State.COVERED, State.ENDING)
        ]

    def room(self) -> int:
        """How many more conversations fit now."""
        return self.planner.room_for(self.cost) if self.enabled and self.cost else 0

    def statistics(self) -> tuple[CoverageStats, PlannerStats]:
        stats = self._stats
        stats.covered = sum(
            1 for c in self._conversations.values() if c.state in (State.COVERED, State.ENDING)
        )
        stats.remembered = len(self._conversations)
        return CoverageStats(**vars(stats)), self.planner.statistics()

    # -- internals -----------------------------------------------------------------------------

    def _valid(self, conversation_id: str) -> bool:
        return parse_topic(detail_topic(conversation_id, self.kinds[0])).ok

    def _late(self, record: _Conversation) -> bool:
        started = record.started_at
        return started is not None and record.seen_at - started > self.late_after

    def _sighted_again(self, record: _Conversation, now: float, started_at: float | None) -> None:
        if not record.sighted:  # only its end was known: it is over, and nothing came live
            record.sighted, record.seen_at = True, now
            record.started_at = record.started_at if started_at is None else started_at
            self._stats.discovered += 1
            self._stats.seen_late += 1
            self._stats.seen_after_end += 1
            self._hand_out(record, Reason.SEEN_LATE)
            return
        if record.started_at is not None or started_at is None:
            return
        record.started_at = started_at  # judged now what could not be judged at the sighting
        if self._late(record):  # covered (or released) with its early events missing
            self._stats.seen_late += 1
            self._hand_out(record, Reason.SEEN_LATE)  # no-op if already handed out
        if record.state != State.DONE and started_at + self.ttl < record.deadline:
            record.deadline = started_at + self.ttl
            self._schedule(record)

    def _schedule(self, record: _Conversation) -> None:
        heapq.heappush(self._deadlines, (record.deadline, record.id))

    def _hand_out(self, record: _Conversation, reason: Reason, detail: str = "") -> None:
        if record.handed_out:
            return
        record.handed_out = True
        self._stats.backfill += 1
        self._backfill.append(
            Backfill(record.id, reason, record.started_at, record.seen_at, detail)
        )

    def _uncover(self, record: _Conversation, reason: Reason, detail: str = "") -> None:
        record.state = State.UNCOVERED
        if reason == Reason.OVER_BUDGET:
            self._stats.over_budget += 1
        else:
            self._stats.rejected += 1
        self._hand_out(record, reason, detail)

    def _release_units(self, record: _Conversation) -> None:
        for unit in record.units:
            self.planner.remove(unit)
            self._by_unit.pop(unit, None)
        record.units = ()

    def _done(self, record: _Conversation, now: float) -> None:
        if record.state in (State.COVERED, State.ENDING):
            self._release_units(record)
            self._stats.released += 1
        record.state = State.DONE
        record.deadline = now + self.forget_after
        self._schedule(record)
