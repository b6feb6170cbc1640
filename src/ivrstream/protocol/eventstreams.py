"""Event Streams subscriptions: build, measure and validate them (client and server alike).

Rules (``shared/reference/event-streams.md``):

- The payload is one JSON text message of at most 65,536 bytes, measured on the exact bytes sent.
- ``eventType`` is ``interaction:updated`` or ``interaction:created``; ``dataTypes`` is non-empty
  and, for those event types, exactly ``["interaction"]``.
- ``filters`` maps dotted field paths under the data type (``interaction.routing.type``) to a
  literal (equality) or an operator-prefixed operand: ``eq:``, ``gt:``, ``contains:``.
- ``retry`` is 0–300 seconds; ``contentType`` is ``application/msgpack`` or ``application/json``;
  ``resumeAfter`` (our extension) is a non-negative sequence id.
- An organisation has at most 100 concurrent connections.

Every violation is reported at once, each naming its field and the limit. The server closes the
socket with 4003 for any of them (4029 for the connection quota).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from ivrstream.models import CONTENT_TYPES, EVENT_TYPES, Subscription

MAX_PAYLOAD_BYTES = 65_536
MAX_CONNECTIONS_PER_ORG = 100
MAX_RETRY_SECONDS = 300
INTERACTION_DATA_TYPES = ["interaction"]
FILTER_OPERATORS = ("eq", "gt", "contains")
KNOWN_FIELDS = frozenset(
    {"eventType", "dataTypes", "filters", "retry", "contentType", "resumeAfter"}
)
_FILTER_PATH = re.compile(r"^[a-z][A-Za-z0-9]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_OPERATOR = re.compile(r"^(eq|gt|contains):")

CLOSE_TOKEN_INVALID = 4001
CLOSE_SUBSCRIPTION_FORBIDDEN = 4003
CLOSE_QUOTA_EXCEEDED = 4029


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, what is wrong, and the limit if there is one."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Verdict:
    """The result of checking a subscription: empty ``violations`` means it may be sent."""

    violations: tuple[Violation, ...]
    byte_size: int
    subscription: Subscription | None

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class FilterCondition:
    """A parsed filter: ``path`` (without the data type) compared by ``operator`` to ``operand``."""

    data_type: str
    path: tuple[str, ...]
    operator: str  # "eq" | "gt" | "contains"
    operand: str


def encode_subscription(subscription: Subscription) -> bytes:
    """The exact bytes to send (and to measure)."""
    return msgspec.json.encode(subscription)


def parse_filter(key: str, value: str) -> FilterCondition:
    """``("interaction.routing.type", "eq:IVR")`` → a condition. Call :func:`check_filter` first."""
    data_type, _, rest = key.partition(".")
    match = _OPERATOR.match(value)
    if match:
        operator, operand = match.group(1), value[match.end() :]
    else:
        operator, operand = "eq", value
    return FilterCondition(data_type, tuple(rest.split(".")), operator, operand)


def check_filter(key: object, value: object, data_types: list[str]) -> list[Violation]:
    field = f"filters[{key!r}]"
    problems: list[Violation] = []
    if not isinstance(key, str) or not _FILTER_PATH.match(key):
        problems.append(Violation(field, "key must be a dotted field path like 'interaction.id'"))
    elif key.split(".", 1)[0] not in data_types:
        problems.append(
            Violation(field, f"path must start with a subscribed data type {data_types}")
        )
    if not isinstance(value, str):
        problems.append(Violation(field, "value must be a string"))
        return problems
    condition = parse_filter(str(key), value)
    if not condition.operand:
        problems.append(Violation(field, f"'{condition.operator}:' needs an operand"))
    return problems


def check_subscription_bytes(
    payload: bytes, *, active_connections: int = 0, max_connections: int = MAX_CONNECTIONS_PER_ORG
) -> Verdict:
    """Check the exact bytes of a subscription message; used by both client and server.

    ``active_connections`` is how many sockets the organisation already has open besides this one.
    """
    violations: list[Violation] = []
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        violations.append(
            Violation("payload", f"{size} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
        )
    if active_connections >= max_connections:
        violations.append(
            Violation(
                "connections",
                f"{active_connections} open, the organisation may have at most {max_connections}",
            )
        )
    try:
        raw = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        violations.append(Violation("payload", f"not valid JSON ({exc})"))
        return Verdict(tuple(violations), size, None)
    if not isinstance(raw, dict):
        violations.append(Violation("payload", "must be a JSON object"))
        return Verdict(tuple(violations), size, None)
    violations.extend(_check_fields(raw))
    subscription = None
    if not violations:
        subscription = msgspec.convert(raw, Subscription)
    return Verdict(tuple(violations), size, subscription)


def check_subscription(subscription: Subscription, *, active_connections: int = 0) -> Verdict:
    """Check a subscription the client is about to send, measured on its encoded bytes."""
    return check_subscription_bytes(
        encode_subscription(subscription), active_connections=active_connections
    )


def _check_fields(raw: dict[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    for name in sorted(set(raw) - KNOWN_FIELDS):
        out.append(Violation(name, "unknown field"))
    event_type = raw.get("eventType")
    if event_type not in EVENT_TYPES:
        out.append(
            Violation("eventType", f"must be one of {list(EVENT_TYPES)}, got {event_type!r}")
        )
    data_types = raw.get("dataTypes")
    if not isinstance(data_types, list) or not data_types:
        out.append(Violation("dataTypes", "must be a non-empty list"))
        data_types = []
    elif not all(isinstance(d, str) for d in data_types):
        out.append(Violation("dataTypes", "must be a list of strings"))
    elif event_type in EVENT_TYPES and data_types != INTERACTION_DATA_TYPES:
        out.append(
            Violation(
                "dataTypes",
                f"restricted data type: {event_type} carries only {INTERACTION_DATA_TYPES}",
            )
        )
    filters = raw.get("filters", {})
    if not isinstance(filters, dict):
        out.append(Violation("filters", "must be an object of path → value"))
    else:
        for key, value in filters.items():
            out.extend(check_filter(key, value, [d for d in data_types if isinstance(d, str)]))
    retry = raw.get("retry", 60)
    if not isinstance(retry, int) or isinstance(retry, bool) or not 0 <= retry <= MAX_RETRY_SECONDS:
        out.append(Violation("retry", f"must be an integer 0–{MAX_RETRY_SECONDS}, got {retry!r}"))
    content_type = raw.get("contentType", "application/json")
    if content_type not in CONTENT_TYPES:
        out.append(
            Violation("contentType", f"must be one of {list(CONTENT_TYPES)}, got {content_type!r}")
        )
    resume_after = raw.get("resumeAfter")
    if resume_after is not None and (
        not isinstance(resume_after, int) or isinstance(resume_after, bool) or resume_after < 0
    ):
        out.append(Violation("resumeAfter", f"must be a sequence id ≥ 0, got {resume_after!r}"))
    return out


def build_subscription(
    *,
    event_type: str,
    data_types: list[str],
    filters: dict[str, str],
    retry: int,
    content_type: str,
    interaction_id: str | None = None,
) -> Subscription:
    """The subscription a configuration asks for (``interaction_id`` adds an ``eq:`` filter)."""
    merged = dict(filters)
    if interaction_id:
        merged["interaction.id"] = f"eq:{interaction_id}"
    return Subscription(
        event_type=event_type,
        data_types=list(data_types),
        filters=merged,
        retry=retry,
        content_type=content_type,
    )


def stream_key(subscription: Subscription, client_id: str, url: str) -> str:
    """Our name for a subscription's sequence: the same payload, client and server → same key."""
    identity = msgspec.json.encode(
        [
            url,
            client_id,
            subscription.event_type,
            subscription.data_types,
            sorted(subscription.filters.items()),
        ]
    )
    return "es-" + hashlib.sha256(identity).hexdigest()[:16]
