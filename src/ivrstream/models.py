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

    event_type: str = "interaction:updated"
    data_types: list[str] = msgspec.field(default_factory=lambda: ["interaction"])
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
