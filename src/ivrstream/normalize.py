"""Notifications and analytics → canonical :class:`~ivrstream.models.InteractionEvent`.

One real event must get one event id whichever way it reaches us — live over Event Streams, live
over Notifications, or rebuilt from analytics by backfill — so every path here computes
``identity.event_id(conversation_id, kind, event_time_ms)`` with the detail-event kind
(``customer.start``, ``flow.start``, ``attributes``, ``flow.outcome``, ``flow.end``,
``acd.start``, ``acd.end``, ``customer.end``) and the event's own time in epoch milliseconds.

Rules this module keeps:

- **Notifications** (:func:`from_notification`): a ``v2.detail.events.conversation.<id>.<kind>``
  envelope is an event: its kind comes from the topic, its time from ``eventBody.eventTime``
  (an integer, epoch ms), its conversation from the body (or the topic when the body is silent;
  the two must agree). The whole ``eventBody`` is kept as ``data``. Flow metric records and queue
  conversation snapshots are not events to journal but *discovery* signals
  (:func:`discovered_conversations`); heartbeats, pongs and ``v2.system.*`` are neither (None).
  Anything else, or a body without a usable ``eventTime``, is :class:`~ivrstream.codec.Rejected`
  with a reason — the shell quarantines it. Nothing here raises for bad input.
- **Analytics** (:func:`rebuild`, :func:`from_analytics`): one conversation detail record →
  the events live detail events would have carried, ``source="backfill"``, ``recovered=True``.
  Which analytics field gives which kind's time:

  ============== ===================================================== =========
  kind           time (epoch ms) taken from                            rebuilt
  ============== ===================================================== =========
  customer.start earliest ``segmentStart`` of a customer session        yes
  customer.end   latest ``segmentEnd`` of a customer session            yes
  flow.start     earliest ``segmentStart`` of a session with ``flow``   yes
  flow.end       latest ``segmentEnd`` of that session                  yes
  acd.start      earliest ``segmentStart`` of an acd session            yes
  acd.end        latest ``segmentEnd`` of that acd session              yes
  flow.outcome   —                                                      **no**
  attributes     —                                                      **no**
  ============== ===================================================== =========

  The six "yes" kinds are rebuilt with the same time as the live event: a detail event is
  emitted at the segment boundary it reports, and analytics reports that boundary to the
  millisecond (the emulator renders both from one fact; the reference examples agree:
  ``flow.end`` eventTime ``…40.853`` = the IVR segment's end ``…10:01:40.853Z``). Genesys does not
  document this equality; it is the assumption everything here rests on.

  ``flow.outcome`` is not rebuilt: its ``eventTime`` is *not* ``flowOutcomeEndTimestamp`` — a
  published flow.outcome event carries ``flowOutcomeEndTime`` 1765551660853 but ``eventTime``
  1765551750107, after its last milestone and after the flow ended — and analytics has no other
  time for it, nor the milestones; an outcome that failed has no end timestamp at all. An id
  built from a guessed time would not de-duplicate against the live copy, so a journal that had
  both would deliver the outcome twice. The analytics outcomes ride along instead in the
  ``flow.end`` event's ``extra["flowOutcomes"]``.

  ``attributes`` is not rebuilt: the details query has no participant data, the jobs API only
  the merged result (no times, no count of updates).

  :attr:`Rebuilt.unrebuilt` names the kinds the conversation had, or may have had, that could not
  be rebuilt — count such a gap as *partly filled*. A conversation with a flow may have had
  attribute updates (they cannot be seen), one with flow outcomes had flow.outcome events, and a
  session whose boundary is missing or unreadable in an ended conversation lost that kind.

Pure: no clock (``received_at`` is an argument), no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from ivrstream.codec import Rejected
from ivrstream.identity import event_id
from ivrstream.isotime import TimeFormatError, format_ms, parse_ms
from ivrstream.models import InteractionEvent, NotificationEnvelope
from ivrstream.protocol.topics import (
    BY_PATTERN,
    CALL_ORDER,
    DETAIL_PREFIX,
    FLOW_METRICS,
    QUEUE_CONVERSATIONS,
    parse_topic,
)

__all__ = [
    "BACKFILL_SOURCE_TYPE",
    "NOT_REBUILT_KINDS",
    "REBUILT_KINDS",
    "Discovered",
    "Rebuilt",
    "Rejected",
    "TopicRole",
    "classify",
    "discovered_conversations",
    "from_analytics",
    "from_notification",
    "rebuild",
]

BACKFILL_SOURCE_TYPE = "v2.analytics.conversations.details"  # source_event_type of rebuilt events
REBUILT_KINDS = (
    "customer.start",
    "flow.start",
    "flow.end",
    "acd.start",
    "acd.end",
    "customer.end",
)
NOT_REBUILT_KINDS = ("attributes", "flow.outcome")
MAX_EVENT_TIME_MS = (1 << 48) - 1  # the event id's time field
HEARTBEAT_TOPIC = "channel.metadata"
SYSTEM_PREFIX = "v2.system."

_KIND_ORDER = {kind: i for i, kind in enumerate(CALL_ORDER)}
_FLOW_METRICS = BY_PATTERN[FLOW_METRICS]
_QUEUE_CONVERSATIONS = BY_PATTERN[QUEUE_CONVERSATIONS]
_FLOW_EXIT_FIELDS = ("exitReason", "transferType", "transferTargetName", "transferTargetAddress")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _received(received_at: str | int) -> str:
    return received_at if isinstance(received_at, str) else format_ms(received_at)


# -- Notifications -------------------------------------------------------------------------------


class TopicRole(StrEnum):
    EVENT = "event"  # a detail event: journal it (from_notification)
    DISCOVERY = "discovery"  # names conversations to subscribe (discovered_conversations)
    SYSTEM = "system"  # heartbeat, pong, v2.system.*: the channel's business, not data
    UNKNOWN = "unknown"  # nothing ivrstream subscribes to: quarantine


def classify(topic: str) -> TopicRole:
    """What a message on ``topic`` is for (by its shape; the id is checked later)."""
    if topic == HEARTBEAT_TOPIC or topic.startswith(SYSTEM_PREFIX):
        return TopicRole.SYSTEM
    if topic.startswith(DETAIL_PREFIX):
        return TopicRole.EVENT
    if _FLOW_METRICS.match(topic) is not None or _QUEUE_CONVERSATIONS.match(topic) is not None:
        return TopicRole.DISCOVERY
    return TopicRole.UNKNOWN


def from_notification(
    envelope: NotificationEnvelope, received_at: str | int
) -> InteractionEvent | Rejected | None:
    """The canonical event of a detail-event envelope; None for discovery and system messages
    (see :func:`classify`); :class:`Rejected` (quarantine it) for anything else.

    ``received_at``: when we received it, ISO-8601 or epoch ms.
    """
    topic = envelope.topic_name
    role = classify(topic)
    if role is TopicRole.SYSTEM or role is TopicRole.DISCOVERY:
        return None
    if role is TopicRole.UNKNOWN:
        return Rejected(f"unknown topic {_shorten(topic)}")
    parsed = parse_topic(topic)
    if not parsed.ok or parsed.spec is None or parsed.id is None:
        return Rejected(f"bad detail topic {_shorten(topic)}: {parsed.problem or 'no id'}")
    kind = parsed.spec.suffix[1:]
    body = envelope.event_body
    event_time = body.get("eventTime")
    if event_time is None:
        return Rejected(f"{kind} event has no eventTime")
    if type(event_time) is not int:
        return Rejected(f"{kind} event: eventTime {_shorten(event_time)} is not an integer")
    if not 0 <= event_time <= MAX_EVENT_TIME_MS:
        return Rejected(f"{kind} event: eventTime {event_time} is out of range")
    conversation = body.get("conversationId", parsed.id)
    if not isinstance(conversation, str) or not conversation:
        return Rejected(f"{kind} event: conversationId {_shorten(conversation)} is not an id")
    if conversation.lower() != parsed.id.lower():
        return Rejected(
            f"{kind} event names conversation {_shorten(conversation)} "
            f"on the topic of {_shorten(parsed.id)}"
        )
    return InteractionEvent(
        event_id=event_id(conversation, kind, event_time),
        source="notifications",
        event_type=kind,
        conversation_id=conversation,
        sequence_id=None,
        event_time=format_ms(event_time),
        received_at=_received(received_at),
        source_event_type=parsed.spec.pattern,
        extra={"metadata": dict(envelope.metadata)} if envelope.metadata else {},
        data=body,
    )


class Discovered(NamedTuple):
    """A conversation a discovery topic names: its start (epoch ms) and whether it is over,
    when the message says."""

    conversation_id: str
    start_ms: int | None
    ended: bool


_FLOW_ENDS_CALL = re.compile(r"DISCONNECT$")


def discovered_conversations(envelope: NotificationEnvelope) -> list[Discovered]:
    """The conversations a flow metric record or queue conversation snapshot names ([] for any
    other topic, or a body that names none).

    - ``v2.analytics.flow.<id>.metrics``: ``conversationId``, ``conversationStart``; ended when
      ``exitReason`` is one of the ``…DISCONNECT`` reasons (the call ended in the flow).
    - ``v2.routing.queues.<id>.conversations``: ``id``; the start is the earliest participant
      ``connectedTime``; ended when the customer participant has an ``endTime`` or all its
      calls are disconnected or terminated.
    """
    topic, body = envelope.topic_name, envelope.event_body
    if _FLOW_METRICS.match(topic) is not None:
        conversation = body.get("conversationId")
        if not isinstance(conversation, str) or not conversation:
            return []
        exit_reason = body.get("exitReason")
        ended = isinstance(exit_reason, str) and _FLOW_ENDS_CALL.search(exit_reason) is not None
        return [Discovered(conversation, _time_ms(body.get("conversationStart")), ended)]
    if _QUEUE_CONVERSATIONS.match(topic) is not None:
        conversation = body.get("id")
        if not isinstance(conversation, str) or not conversation:
            return []
        participants = _dicts(body.get("participants"))
        starts = [t for p in participants if (t := _time_ms(p.get("connectedTime"))) is not None]
        ended = any(p.get("purpose") == "customer" and _participant_over(p) for p in participants)
        return [Discovered(conversation, min(starts, default=None), ended)]
    return []


def _participant_over(participant: Mapping[str, Any]) -> bool:
    if participant.get("endTime"):
        return True
    calls = _dicts(participant.get("calls"))
    return bool(calls) and all(c.get("state") in ("disconnected", "terminated") for c in calls)


# -- Analytics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What one analytics conversation gave back.

    ``unrebuilt``: kinds the conversation had (or may have had) that analytics cannot rebuild —
    a gap it falls in is only partly filled. ``problem``: why nothing could be rebuilt (quarantine
    the record).
    """

    conversation_id: str | None
    events: list[InteractionEvent]
    unrebuilt: frozenset[str]
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None and not self.unrebuilt


def from_analytics(
    conversation: Mapping[str, Any], received_at: str | int
) -> list[InteractionEvent]:
    """The events :func:`rebuild` recovers (use :func:`rebuild` to learn what it could not)."""
    return rebuild(conversation, received_at).events


def rebuild(conversation: Mapping[str, Any], received_at: str | int) -> Rebuilt:
    """Rebuild the detail events of one analytics conversation record (from the details query
    or a details job), in event-time order; see the module docstring for what is exact."""
    cid = conversation.get("conversationId")
    if not isinstance(cid, str) or not cid:
        return Rebuilt(None, [], frozenset(), "analytics conversation has no conversationId")
    builder = _Builder(cid, conversation)
    for participant in _dicts(conversation.get("participants")):
        purpose = participant.get("purpose")
        if isinstance(participant.get("attributes"), dict) and participant["attributes"]:
            builder.missing.add("attributes")  # a details job shows the data, never its events
        for session in _dicts(participant.get("sessions")):
            if purpose == "customer":
                builder.customer(participant, session)
            if purpose == "acd":
                builder.acd(participant, session)
            if isinstance(session.get("flow"), dict):
                builder.flow(participant, session)
    received = _received(received_at)
    drafts = sorted(builder.drafts, key=lambda d: (d[1], _KIND_ORDER.get(d[0], 99)))
    events = [
        InteractionEvent(
            event_id=event_id(cid, kind, time_ms),
            source="backfill",
            event_type=kind,
            conversation_id=cid,
            sequence_id=None,
            event_time=format_ms(time_ms),
            received_at=received,
            source_event_type=BACKFILL_SOURCE_TYPE,
            recovered=True,
            extra=extra,
            data=data,
        )
        for kind, time_ms, data, extra in drafts
    ]
    return Rebuilt(cid, events, frozenset(builder.missing))


_Draft = tuple[str, int, dict[str, Any], dict[str, Any]]  # kind, time, data, extra


class _Span(NamedTuple):
    start: int | None  # earliest segmentStart
    end: int | None  # latest segmentEnd, when every segment has ended
    disconnect: str | None  # the last segment's disconnectType, in detail-event spelling
    queue_id: str | None  # the first segment's queueId


def _span(session: Mapping[str, Any]) -> _Span:
    segments = _dicts(session.get("segments"))
    starts = [_time_ms(s.get("segmentStart")) for s in segments]
    ends = [_time_ms(s.get("segmentEnd")) for s in segments]
    known_starts = [t for t in starts if t is not None]
    start = min(known_starts) if known_starts and len(known_starts) == len(starts) else None
    known_ends = [t for t in ends if t is not None]
    end = max(known_ends) if known_ends and len(known_ends) == len(ends) else None
    disconnect = next(
        (d for s in reversed(segments) if isinstance(d := s.get("disconnectType"), str)), None
    )
    queue_id = next((q for s in segments if isinstance(q := s.get("queueId"), str)), None)
    return _Span(start, end, _detail_enum(disconnect) if disconnect else None, queue_id)


class _Builder:
    """Collects the drafts of one conversation and the kinds it could not rebuild."""

    def __init__(self, cid: str, conversation: Mapping[str, Any]) -> None:
        self.cid = cid
        self.conversation = conversation
        self.ended = conversation.get("conversationEnd") is not None
        self.drafts: list[_Draft] = []
        self.missing: set[str] = set()
        self.participants = _dicts(conversation.get("participants"))
        contact = next(
            (
                s
                for p in self.participants
                if p.get("purpose") == "customer"
                for s in _dicts(p.get("sessions"))
            ),
            {},
        )
        self.ani, self.dnis = contact.get("ani"), contact.get("dnis")
        divisions = conversation.get("divisionIds")
        self.division = divisions[0] if isinstance(divisions, list) and divisions else None

    def _base(
        self, participant: Mapping[str, Any], session: Mapping[str, Any], time_ms: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"eventTime": time_ms, "conversationId": self.cid}
        direction = session.get("direction") or self.conversation.get("originatingDirection")
        media = session.get("mediaType")
        for key, value in (
            ("participantId", participant.get("participantId")),
            ("sessionId", session.get("sessionId")),
            ("mediaType", media.upper() if isinstance(media, str) else None),
            ("provider", session.get("provider")),
            ("direction", direction.upper() if isinstance(direction, str) else None),
            ("ani", session.get("ani") or self.ani),
            ("dnis", session.get("dnis") or self.dnis),
            ("divisionId", self.division),
        ):
            if value is not None:
                body[key] = value
        return body

    def _pair(
        self,
        kinds: tuple[str, str],
        span: _Span,
        participant: Mapping[str, Any],
        session: Mapping[str, Any],
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Bodies for the start and end kinds, or None where the time is unknown."""
        start = end = None
        if _usable(span.start):
            assert span.start is not None
            start = self._base(participant, session, span.start)
        else:
            self.missing.add(kinds[0])
        if _usable(span.end):
            assert span.end is not None
            end = self._base(participant, session, span.end)
        elif self.ended or span.end is not None:
            self.missing.add(kinds[1])  # it happened, but not at a time we can read
        return start, end

    def _add(self, kind: str, body: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.drafts.append((kind, body["eventTime"], body, extra or {}))

    def customer(self, participant: Mapping[str, Any], session: Mapping[str, Any]) -> None:
        span = _span(session)
        start, end = self._pair(("customer.start", "customer.end"), span, participant, session)
        if start is not None:
            self._add("customer.start", start)
        if end is not None:
            if span.disconnect:
                end["disconnectType"] = span.disconnect
            if span.start is not None:
                end["interactingDurationMs"] = end["eventTime"] - span.start
            self._add("customer.end", end)

    def flow(self, participant: Mapping[str, Any], session: Mapping[str, Any]) -> None:
        flow: dict[str, Any] = session["flow"]
        span = _span(session)
        start, end = self._pair(("flow.start", "flow.end"), span, participant, session)
        fields = {
            k: flow[k]
            for k in ("flowType", "flowId", "flowVersion", "flowName")
            if isinstance(flow.get(k), str)
        }
        self.missing.add("attributes")  # a flow may have set participant data: unseen here
        outcomes = _dicts(flow.get("outcomes"))
        if outcomes:
            self.missing.add("flow.outcome")
        if start is not None:
            start.update(fields)
            self._add("flow.start", start)
        if end is not None:
            end.update(fields)
            for key in (
                "exitReason",
                "transferType",
                "transferTargetName",
                "transferTargetAddress",
            ):
                if isinstance(flow.get(key), str):
                    end[key] = flow[key]
            if span.disconnect:
                end["disconnectType"] = span.disconnect
            if span.start is not None:
                end["connectedDurationMs"] = end["eventTime"] - span.start
            self._add("flow.end", end, {"flowOutcomes": outcomes} if outcomes else None)

    def acd(self, participant: Mapping[str, Any], session: Mapping[str, Any]) -> None:
        span = _span(session)
        start, end = self._pair(("acd.start", "acd.end"), span, participant, session)
        for body in (start, end):
            if body is not None and span.queue_id is not None:
                body["queueId"] = span.queue_id
        if start is not None:
            self._add("acd.start", start)
        if end is not None:
            if span.disconnect:
                end["disconnectType"] = span.disconnect
            if span.start is not None:
                end["connectedDurationMs"] = end["eventTime"] - span.start
            for key in ("usedRouting", "requestedRoutings"):
                if session.get(key) is not None:
                    end[key] = session[key]
            outcome, agent = self._acd_outcome(session, span)
            if outcome is not None:
                end["acdOutcome"] = outcome
            if agent is not None:
                end["answeredUserId"] = agent
            self._add("acd.end", end)

    def _acd_outcome(
        self, session: Mapping[str, Any], span: _Span
    ) -> tuple[str | None, str | None]:
        """ANSWERED / ABANDON / FLOW_OUT from the session's metrics (``tAnswered``,
        ``tAbandon``, ``tFlowOut``) when present; else ANSWERED when an agent of the same queue
        joined at or after the queue entry, ABANDON when the customer's side hung up."""
        names = {m.get("name") for m in _dicts(session.get("metrics"))}
        agent = self._answering_agent(span)
        if "tAnswered" in names:
            return "ANSWERED", agent
        if "tAbandon" in names:
            return "ABANDON", None
        if "tFlowOut" in names:
            return "FLOW_OUT", None
        if agent is not None:
            return "ANSWERED", agent
        if span.disconnect in ("ENDPOINT", "CLIENT", "PEER"):
            return "ABANDON", None
        return None, None

    def _answering_agent(self, span: _Span) -> str | None:
        if span.queue_id is None or span.start is None:
            return None
        for participant in self.participants:
            if participant.get("purpose") != "agent":
                continue
            user = participant.get("userId")
            for session in _dicts(participant.get("sessions")):
                for segment in _dicts(session.get("segments")):
                    joined = _time_ms(segment.get("segmentStart"))
                    if (
                        segment.get("queueId") == span.queue_id
                        and joined is not None
                        and joined >= span.start
                        and isinstance(user, str)
                    ):
                        return user
        return None


# -- small readers for untrusted JSON ------------------------------------------------------------


def _dicts(value: object) -> list[dict[str, Any]]:
    """The objects in a JSON array (anything else in it, or a non-array, is ignored)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _time_ms(value: object) -> int | None:
    """An ISO-8601 timestamp (or epoch-ms integer) → epoch ms; None when unreadable."""
    if type(value) is int:
        return value
    if not isinstance(value, str):
        return None
    try:
        return parse_ms(value)
    except (TimeFormatError, OverflowError, OSError):
        return None


def _usable(time_ms: int | None) -> bool:
    return time_ms is not None and 0 <= time_ms <= MAX_EVENT_TIME_MS


def _detail_enum(analytics_value: str) -> str:
    """Analytics ``camelCase`` enum → detail-event ``UPPER_SNAKE`` (``consultTransfer`` →
    ``CONSULT_TRANSFER``)."""
    return _CAMEL_HUMP.sub(r"_\1", analytics_value).upper()
