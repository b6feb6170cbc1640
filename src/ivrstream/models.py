"""Wire models of both dialects (msgspec Structs), shared by the client and the emulator.

Field names are the wire's camelCase (``rename="camel"``) while Python reads snake_case.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# -- OAuth ---------------------------------------------------------------------------------------


class TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    scope: str | None = None


class OAuthError(msgspec.Struct, kw_only=True):
    error: str
    description: str = ""
    error_description: str = ""


# -- Event Streams -------------------------------------------------------------------------------

EVENT_TYPES = ("interaction:updated", "interaction:created")
CONTENT_TYPES = ("application/msgpack", "application/json")


class Subscription(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """The one message a client sends after the socket opens."""

    event_type: str  # always sent: no default, so omit_defaults never drops it
    data_types: list[str]
    filters: dict[str, str] = msgspec.field(default_factory=dict)
    retry: int = 60
    content_type: str = "application/json"  # the server's default when the field is absent
    resume_after: int | None = None


class Subscribed(msgspec.Struct, rename="camel", kw_only=True):
    """The server's answer to a valid subscription; ``sequence_id`` is the last id assigned."""

    type: Literal["subscribed"] = "subscribed"
    subscription_id: str
    sequence_id: int


class EventFrame(msgspec.Struct, rename="camel", kw_only=True):
    """One Event Streams event; every field is required."""

    event_type: str
    sequence_id: int
    timestamp: str
    data: dict[str, Any]


# -- Notifications -------------------------------------------------------------------------------


class Channel(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    connect_uri: str
    expires: str


class TopicRef(msgspec.Struct):
    id: str


class ChannelTopic(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    state: Literal["Permitted", "Rejected"] = "Permitted"
    rejection_reason: str | None = None
    missing_permissions: list[str] = msgspec.field(default_factory=list)
    self_uri: str | None = None


class ChannelTopicList(msgspec.Struct):
    entities: list[ChannelTopic]


class NotificationEnvelope(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    topic_name: str
    event_body: dict[str, Any]
    version: str | None = None
    metadata: dict[str, str] | None = None


# -- Errors from the REST API --------------------------------------------------------------------


class ApiError(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """The error body Genesys REST calls return."""

    status: int
    code: str
    message: str
    context_id: str | None = None
    details: list[dict[str, Any]] = msgspec.field(default_factory=list)


# -- Analytics -----------------------------------------------------------------------------------
# Conversation details (``shared/reference/genesys-schemas.md`` §4). Requests are faithful to the
# public schema so the backfill client can encode them; conversations stay plain dicts.


class NumericRange(msgspec.Struct, omit_defaults=True, kw_only=True):
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


class Predicate(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """One condition of a segment or conversation filter; ``type`` is inferred when absent."""

    type: Literal["dimension", "property", "metric"] | None = None
    dimension: str | None = None
    metric: str | None = None
    property_type: str | None = None  # segment filters only, with ``property``
    property: str | None = None
    operator: Literal["matches", "exists", "notExists"] = "matches"
    value: str | None = None
    range: NumericRange | None = None


class Clause(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A nested group of predicates inside a :class:`Filter`."""

    type: Literal["and", "or"]
    predicates: list[Predicate] = msgspec.field(default_factory=list)


class Filter(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A segment or conversation filter: ``type`` joins its predicates and clauses."""

    type: Literal["and", "or"]
    predicates: list[Predicate] = msgspec.field(default_factory=list)
    clauses: list[Clause] = msgspec.field(default_factory=list)


class PagingSpec(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    page_size: int = 25
    page_number: int = 1


OrderBy = Literal["conversationStart", "conversationEnd", "segmentStart", "segmentEnd"]
Order = Literal["asc", "desc", "unordered"]
JobState = Literal["QUEUED", "PENDING", "FULFILLED", "FAILED", "CANCELLED", "EXPIRED"]


class ConversationQuery(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Body of ``POST /api/v2/analytics/conversations/details/query``."""

    interval: str  # "start/end", ISO-8601
    conversation_filters: list[Filter] = msgspec.field(default_factory=list)
    segment_filters: list[Filter] = msgspec.field(default_factory=list)
    order: Order = "asc"
    order_by: OrderBy = "conversationStart"
    paging: PagingSpec | None = None


class AsyncConversationQuery(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Body of ``POST /api/v2/analytics/conversations/details/jobs`` (no paging)."""

    interval: str
    conversation_filters: list[Filter] = msgspec.field(default_factory=list)
    segment_filters: list[Filter] = msgspec.field(default_factory=list)
    order: Order = "asc"
    order_by: OrderBy = "conversationStart"
    limit: int | None = None
    start_of_day_interval_matching: bool | None = None


class ConversationQueryResponse(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``conversations`` is absent from the wire when empty, as Genesys omits empty arrays."""

    total_hits: int
    conversations: list[dict[str, Any]] = msgspec.field(default_factory=list)


class AsyncQueryResponse(msgspec.Struct, rename="camel", kw_only=True):
    job_id: str


class AsyncQueryStatus(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """A details job's state; read results only once ``state`` is ``FULFILLED``."""

    state: JobState
    error_message: str | None = None
    submission_date: str | None = None
    completion_date: str | None = None
    expiration_date: str | None = None


class ConversationAsyncQueryResponse(
    msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True
):
    """One page of job results; pass ``cursor`` back for the next page (absent on the last)."""

    conversations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    cursor: str | None = None
    data_availability_date: str | None = None


class DataAvailability(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    data_availability_date: str | None = None


# -- The canonical event -------------------------------------------------------------------------


class InteractionEvent(msgspec.Struct, kw_only=True):
    """One IVR interaction event as ivrstream stores and delivers it, whatever its source.

    ``event_type`` says what happened (``flow.start``, ``flow.end``, ``acd.start``, …; or the
    source's own type when it does not say). ``event_time`` is the server's time for the event,
    ``received_at`` ours. ``recovered`` marks an event that arrived late to fill a gap or came
    from backfill. ``extra`` keeps fields the source added that ivrstream does not know yet.
    """

    event_id: str
    source: str  # "eventstreams" | "notifications" | "backfill"
    event_type: str
    conversation_id: str
    sequence_id: int | None
    event_time: str
    received_at: str
    subscription_id: str | None = None
    source_event_type: str | None = None
    recovered: bool = False
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
