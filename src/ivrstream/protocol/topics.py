"""Notification topics for IVR: the catalogue, parsing one topic, and combined topics.

Rules (``shared/reference/genesys-cloud.md``, "Topics for IVR"; ``genesys-schemas.md`` 2.1–2.2):

- A topic is a pattern with its ``{id}`` replaced by one concrete id. Over a WebSocket there is no
  wildcard: the literal ``{id}`` (or ``*``) is rejected — "wildcards are only supported by
  EventBridge".
- Ids must look like UUIDs (8-4-4-4-12 hexadecimal digits, either case).
- ``v2.system.*`` topics are messages the server sends on its own; nobody subscribes to them.
- A combined topic ``prefix?suffixA&suffixB`` stands for ``prefix.suffixA`` and
  ``prefix.suffixB``; the whole combined string is at most 200 characters (a plain topic is not
  measured). :func:`expand_combined` reads one, :func:`combine` writes them.

Assumptions (Genesys does not document them; keep them in one place so they are easy to change):

- Required permissions: detail events need ``analytics:conversationDetail:view``, queue
  conversations ``routing:queue:view``, flow metrics ``analytics:flowMetrics:view``.
- :func:`combine` splits a catalogue topic right after its id (``…conversation.<id>?flow.start&…``),
  as Genesys' own examples do (``v2.users.{id}?presence&routingStatus``); it never moves the id
  into the suffixes. Other topics are split at their last dot.
- Whether flow metrics reach a WebSocket is unconfirmed: the catalogue says ``All`` transports;
  check ``transports`` from ``availabletopics`` at run time (:func:`over_websocket`).

Pure: standard library only, no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ID = "{id}"
WILDCARDS = frozenset({ID, "*"})
MAX_COMBINED_LENGTH = 200
MAX_TOPICS_PER_CHANNEL = 1_000
MAX_CHANNELS_PER_CLIENT = 20
ALL_TRANSPORTS = "All"
EVENTBRIDGE = "EventBridge"
WEBSOCKET_TRANSPORTS = frozenset({ALL_TRANSPORTS, "Websocket", "WebSocket"})

DETAIL_VIEW = "analytics:conversationDetail:view"
QUEUE_VIEW = "routing:queue:view"
FLOW_METRICS_VIEW = "analytics:flowMetrics:view"

DETAIL_PREFIX = "v2.detail.events.conversation."
QUEUE_CONVERSATIONS = "v2.routing.queues.{id}.conversations"
FLOW_METRICS = "v2.analytics.flow.{id}.metrics"
SOCKET_CLOSING = "v2.system.socket_closing"
NO_LONGER_SUBSCRIBED = "v2.system.no_longer_subscribed.{id}"
TOKEN_REVOKED = "v2.system.token_revoked.{id}"  # noqa: S105 - a topic name, not a secret

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class TopicError(ValueError):
    """A combined topic that cannot be expanded, or a topic that cannot be combined."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic pattern of the catalogue, as ``availabletopics`` describes it."""

    pattern: str
    parameter: str | None  # what ``{id}`` stands for (``topicParameters``); None without ``{id}``
    description: str
    body: str  # the class name of the eventBody, from the SDK's notification mappings
    permissions: tuple[str, ...] = ()
    transports: tuple[str, ...] = (ALL_TRANSPORTS,)
    subscribable: bool = True

    @property
    def prefix(self) -> str:
        return self.pattern.partition(ID)[0]

    @property
    def suffix(self) -> str:
        return self.pattern.partition(ID)[2]

    def topic(self, ident: str) -> str:
        """The concrete topic for ``ident``."""
        return self.pattern.replace(ID, ident) if self.parameter else self.pattern

    def match(self, topic: str) -> str | None:
        """The id part of ``topic`` if it has this pattern's shape ("" without ``{id}``)."""
        if self.parameter is None:
            return "" if topic == self.pattern else None
        prefix, suffix = self.prefix, self.suffix
        if len(topic) <= len(prefix) + len(suffix):
            return None
        if not (topic.startswith(prefix) and topic.endswith(suffix)):
            return None
        return topic[len(prefix) : len(topic) - len(suffix)]


# the detail event kinds in the order a call lives them (breaks ties within one millisecond)
CALL_ORDER = (
    "customer.start",
    "flow.start",
    "attributes",
    "flow.outcome",
    "flow.end",
    "acd.start",
    "acd.end",
    "customer.end",
)

DETAIL_KINDS: dict[str, tuple[str, str]] = {
    "flow.start": (
        "A conversation entered an Architect flow (an IVR when flowType is INBOUNDCALL)",
        "FlowStartDetailEventTopicFlowStartEvent",
    ),
    "flow.end": (
        "A conversation left an Architect flow: exitReason, transferType",
        "FlowEndDetailEventTopicFlowEndEvent",
    ),
    "flow.outcome": (
        "A flow outcome was reached, with its milestones",
        "FlowOutcomeDetailEventTopicFlowOutcomeEvent",
    ),
    "customer.start": (
        "The customer joined the conversation (call arrival)",
        "CustomerStartDetailEventTopicCustomerStartEvent",
    ),
    "customer.end": (
        "The customer left the conversation (hang-up)",
        "CustomerEndDetailEventTopicCustomerEndEvent",
    ),
    "acd.start": (
        "The conversation was transferred to a queue",
        "AcdStartDetailEventTopicAcdStartEvent",
    ),
    "acd.end": (
        "The conversation left the queue: acdOutcome ANSWERED, ABANDON or FLOW_OUT",
        "AcdEndDetailEventTopicAcdEndEvent",
    ),
    "attributes": (
        "Participant data was set on the conversation (by the flow)",
        "AttributeDetailEventTopicAttributeUpdateEvent",
    ),
}


def _detail_spec(kind: str) -> TopicSpec:
    description, body = DETAIL_KINDS[kind]
    return TopicSpec(
        f"{DETAIL_PREFIX}{ID}.{kind}", "conversationId", description, body, (DETAIL_VIEW,)
    )


CATALOGUE: tuple[TopicSpec, ...] = (
    *(_detail_spec(kind) for kind in DETAIL_KINDS),
    TopicSpec(
        QUEUE_CONVERSATIONS,
        "queueId",
        "Full conversation snapshots of the calls that reach the queue",
        "QueueConversationEventTopicConversation",
        (QUEUE_VIEW,),
    ),
    TopicSpec(
        FLOW_METRICS,
        "flowId",
        "Per-call flow metric records (conversationId, exitReason, ani, dnis, …)",
        "FlowMetricsTopicFlowMetricRecord",
        (FLOW_METRICS_VIEW,),
    ),
    TopicSpec(
        SOCKET_CLOSING,
        None,
        "The server will close this socket soon: reconnect within a minute",
        "SystemMessage",
        subscribable=False,
    ),
    TopicSpec(
        NO_LONGER_SUBSCRIBED,
        "channelId",
        "The channel was replaced or removed: create a new one",
        "SystemMessage",
        subscribable=False,
    ),
    TopicSpec(
        TOKEN_REVOKED,
        "channelId",
        "The token that created the channel was revoked",
        "SystemMessage",
        subscribable=False,
    ),
)
BY_PATTERN: dict[str, TopicSpec] = {spec.pattern: spec for spec in CATALOGUE}


def detail_topic(conversation_id: str, kind: str) -> str:
    """``v2.detail.events.conversation.<id>.<kind>`` (``kind`` from :data:`DETAIL_KINDS`)."""
    if kind not in DETAIL_KINDS:
        raise ValueError(f"unknown detail event kind {kind!r}; known: {', '.join(DETAIL_KINDS)}")
    return f"{DETAIL_PREFIX}{conversation_id}.{kind}"


def conversation_topics(conversation_id: str) -> list[str]:
    """Every IVR detail topic of one conversation."""
    return [detail_topic(conversation_id, kind) for kind in DETAIL_KINDS]


def queue_topic(queue_id: str) -> str:
    return QUEUE_CONVERSATIONS.replace(ID, queue_id)


def flow_metrics_topic(flow_id: str) -> str:
    return FLOW_METRICS.replace(ID, flow_id)


def over_websocket(transports: Iterable[str]) -> bool:
    """Can a topic with these ``transports`` (from ``availabletopics``) be used on a socket?"""
    return any(t in WEBSOCKET_TRANSPORTS for t in transports)


def missing_permissions(spec: TopicSpec, granted: Iterable[str]) -> list[str]:
    """The permissions ``spec`` needs that ``granted`` lacks, in catalogue order."""
    have = set(granted)
    return [p for p in spec.permissions if p not in have]


# -- one topic -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedTopic:
    """What :func:`parse_topic` found: the pattern and id, or why the topic is not valid."""

    topic: str
    spec: TopicSpec | None = None
    id: str | None = None
    problem: str | None = None  # None: the topic may be subscribed (permissions aside)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _judge(topic: str, spec: TopicSpec, ident: str) -> ParsedTopic:
    if not spec.subscribable:
        return ParsedTopic(topic, spec, ident or None, "v2.system topics cannot be subscribed")
    if ident in WILDCARDS:
        return ParsedTopic(topic, spec, None, "wildcards are only supported by EventBridge")
    if not _UUID.match(ident):
        problem = f"{spec.parameter} must be a UUID, got {_shorten(ident)!r}"
        return ParsedTopic(topic, spec, None, problem)
    return ParsedTopic(topic, spec, ident)


def parse_topic(topic: str) -> ParsedTopic:
    """Which catalogue pattern ``topic`` is and for which id, or the reason it is not valid.

    Expand combined topics (:func:`expand_combined`) first; one given here is refused.
    """
    if not topic:
        return ParsedTopic(topic, problem="topic is empty")
    if "?" in topic:
        return ParsedTopic(topic, problem="combined topic: expand it first")
    first_problem: ParsedTopic | None = None
    for spec in CATALOGUE:
        ident = spec.match(topic)
        if ident is None:
            continue
        parsed = _judge(topic, spec, ident)
        if parsed.ok:
            return parsed
        first_problem = first_problem or parsed
    if first_problem is not None:
        return first_problem
    if topic.startswith("v2.system."):
        return ParsedTopic(topic, problem="v2.system topics cannot be subscribed")
    return ParsedTopic(topic, problem="unknown topic")


# -- combined topics -----------------------------------------------------------------------------


def expand_combined(topic: str, max_length: int = MAX_COMBINED_LENGTH) -> list[str]:
    """``"p?a&b"`` → ``["p.a", "p.b"]`` (duplicates once); a plain topic → ``[topic]``.

    Raises :class:`TopicError` for a combined string longer than ``max_length`` or malformed.
    """
    if "?" not in topic:
        return [topic]
    if len(topic) > max_length:
        raise TopicError(f"combined topic is {len(topic)} characters; the limit is {max_length}")
    prefix, _, rest = topic.partition("?")
    if "?" in rest:
        raise TopicError("a combined topic has exactly one '?'")
    suffixes = rest.split("&")
    if not prefix or not all(suffixes):
        raise TopicError("a combined topic is 'prefix?suffix&suffix' with no empty part")
    return [f"{prefix}.{suffix}" for suffix in dict.fromkeys(suffixes)]


def split_topic(topic: str) -> tuple[str, str] | None:
    """Where :func:`combine` cuts ``topic`` into (prefix, suffix); None if it stands alone."""
    if "&" in topic:
        return None
    for spec in CATALOGUE:
        if spec.parameter is None or len(spec.suffix) < 2:
            continue
        ident = spec.match(topic)
        if ident is not None and "." not in ident:
            return topic[: -len(spec.suffix)], spec.suffix[1:]
    prefix, dot, suffix = topic.rpartition(".")
    if not dot or not prefix or not suffix:
        return None
    return prefix, suffix


def combine(topics: Iterable[str], max_length: int = MAX_COMBINED_LENGTH) -> list[str]:
    """Pack ``topics`` sharing a prefix into combined strings of at most ``max_length``.

    ``expand_combined`` of the result gives back exactly the set of ``topics``. Topics that share
    no prefix (or contain ``&``) stay plain, and a plain topic is never lengthened. Raises
    :class:`TopicError` for a topic containing ``?`` (it could not be told from a combined one).
    """
    groups: dict[str, list[str]] = {}
    out: list[str] = []
    for topic in dict.fromkeys(topics):
        if "?" in topic:
            raise TopicError(f"topic {_shorten(topic)!r} contains '?'")
        split = split_topic(topic)
        if split is None:
            out.append(topic)
        else:
            groups.setdefault(split[0], []).append(split[1])
    for prefix, suffixes in groups.items():
        out.extend(_pack(prefix, suffixes, max_length))
    return out


def _pack(prefix: str, suffixes: list[str], max_length: int) -> list[str]:
    packed: list[str] = []
    chunk: list[str] = []
    length = len(prefix) + 1  # the prefix and its '?'
    for suffix in suffixes:
        extra = len(suffix) + (1 if chunk else 0)
        if chunk and length + extra > max_length:
            packed.append(_joined(prefix, chunk))
            chunk, length, extra = [], len(prefix) + 1, len(suffix)
        chunk.append(suffix)
        length += extra
    if chunk:
        packed.append(_joined(prefix, chunk))
    return packed


def _joined(prefix: str, suffixes: list[str]) -> str:
    if len(suffixes) == 1:
        return f"{prefix}.{suffixes[0]}"
    return f"{prefix}?{'&'.join(suffixes)}"
