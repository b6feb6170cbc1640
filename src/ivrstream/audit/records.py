"""Audit records: what each line holds, how it is encoded and hashed, and builders for each kind.

Rules this module keeps:

- A line is the canonical JSON of one record (keys sorted, no whitespace); the record's hash is
  the hex SHA-256 of exactly those bytes, without the newline. ``prev`` is the previous record's
  hash, 64 zeros for the first record of the trail.
- Every record has ``seq`` (1, 2, 3… across the whole trail, never reset), ``audit_id``,
  ``kind``, ``logged_at`` (ISO-8601 ms, UTC) and ``prev``; the writer assigns all five.
- ``file_opened``, ``checkpoint`` and ``torn_line_repaired`` are written by the log itself;
  callers append ``event`` records and operational kinds only.
- Operational records never carry secrets: their text values pass through the log redactor, and
  the builders take hashes and counts (configuration hash, topic count), never the values.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, NamedTuple, Protocol

import msgspec

from ivrstream.logs import REDACTOR

ZERO_HASH = "0" * 64
FILE_PATTERN = re.compile(r"^audit-(\d{8})-(\d{6})\.jsonl$")
FILE_GLOB = "audit-*.jsonl"

EVENT = "event"
FILE_OPENED = "file_opened"
CHECKPOINT = "checkpoint"
TORN_LINE_REPAIRED = "torn_line_repaired"

OPERATIONAL_KINDS = frozenset(
    {
        "service_start",
        "service_stop",
        "config_loaded",
        "connection_opened",
        "connection_closed",
        "auth_failure",
        "subscription_sent",
        "gap_opened",
        "gap_closed",
        "dead_lettered",
        "dlq_retry",
        "dlq_purge",
        "verification",
    }
)
WRITER_KINDS = frozenset({FILE_OPENED, CHECKPOINT, TORN_LINE_REPAIRED})
KINDS = OPERATIONAL_KINDS | WRITER_KINDS | {EVENT}
SEALED_FIELDS = frozenset({"seq", "audit_id", "kind", "logged_at", "prev"})
ASSIGNED_FIELDS = SEALED_FIELDS - {"kind"}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical JSON of ``record``: what a line holds and what gets hashed or signed."""
    return msgspec.json.encode(record, order="sorted")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_name(day: str, number: int) -> str:
    """``audit-YYYYMMDD-NNNNNN.jsonl``: names sort in chain order (the day never goes back)."""
    return f"audit-{day}-{number:06d}.jsonl"


def parse_record(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a line that is a well-formed audit record, else ``(None, why)``."""
    try:
        record = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None, "no valid seq"
    prev = record.get("prev")
    if not isinstance(prev, str) or not _HEX64.match(prev):
        return None, "no valid prev hash"
    for name in ("kind", "audit_id", "logged_at"):
        if not isinstance(record.get(name), str):
            return None, f"no {name}"
    return record, None


# -- builders: what the service appends ----------------------------------------------------------


class EventFacts(NamedTuple):
    """What an event record says about one journaled event, before the log seals it."""

    event_id: str
    event_type: str | None
    sequence_id: int | None
    event_time: str | None  # ISO-8601, as in the event
    received_at: str | None  # ISO-8601, when ivrstream received it
    body: bytes  # the canonical event as journaled: its SHA-256 goes in the record


class EventLike(Protocol):
    """Anything with the fields of :class:`EventFacts` — a sink's ``Delivery`` read from the
    journal is one, so the service hands deliveries to the log as they are."""

    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str | None: ...
    @property
    def sequence_id(self) -> int | None: ...
    @property
    def event_time(self) -> str | None: ...
    @property
    def received_at(self) -> str | None: ...
    @property
    def body(self) -> bytes: ...


class _EventLine(msgspec.Struct):
    """An event record as one line; fields in sorted order, so encoding it gives exactly
    :func:`canonical` of the same record as a dict (a test holds the two together)."""

    audit_id: str
    event_id: str
    event_sha256: str
    event_time: str | None
    event_type: str | None
    kind: str
    logged_at: str
    prev: str
    receive_latency_ms: float | None
    seq: int
    sequence_id: int | None


_encode_line = msgspec.json.Encoder().encode
_ONE_MS = timedelta(milliseconds=1)


def latency_ms(event_time: str | None, received_at: str | None) -> float | None:
    """``received_at - event_time`` in ms (an ISO-8601 time without an offset is UTC); None
    when either is missing or not ISO-8601."""
    if event_time is None or received_at is None:
        return None
    try:
        received, happened = datetime.fromisoformat(received_at), datetime.fromisoformat(event_time)
    except (TypeError, ValueError):
        return None
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    if happened.tzinfo is None:
        happened = happened.replace(tzinfo=UTC)
    return (received - happened) / _ONE_MS


def event_line(facts: EventLike, *, seq: int, prev: str, logged_at: str, audit_id: str) -> bytes:
    """The sealed event record for ``facts`` as its canonical line (no newline)."""
    return _encode_line(
        _EventLine(  # positional, in the declared (sorted) order: the hot path
            audit_id,
            facts.event_id,
            sha256(facts.body).hexdigest(),
            facts.event_time,
            facts.event_type or None,
            EVENT,
            logged_at,
            prev,
            latency_ms(facts.event_time, facts.received_at),
            seq,
            facts.sequence_id,
        )
    )


def event_facts(body: bytes) -> EventFacts:
    """:class:`EventFacts` read from a canonical event itself."""
    fields = msgspec.json.decode(body)
    if not isinstance(fields, dict) or not isinstance(fields.get("event_id"), str):
        raise ValueError("not a canonical event: no event_id")

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    sequence_id = fields.get("sequence_id")
    return EventFacts(
        event_id=fields["event_id"],
        event_type=text("event_type"),
        sequence_id=sequence_id
        if isinstance(sequence_id, int) and not isinstance(sequence_id, bool)
        else None,
        event_time=text("event_time"),
        received_at=text("received_at"),
        body=body,
    )


def event_record(
    body: bytes,
    *,
    event_id: str,
    event_type: str | None,
    sequence_id: int | None,
    event_time: str | None,
    receive_latency_ms: float | None,
) -> dict[str, Any]:
    """The record for one journaled event as a dict (the log seals it); ``body`` is the
    canonical event bytes as journaled. The service writes :class:`EventFacts` instead, through
    the writer's faster ``append_events``; both give the same line."""
    return {
        "kind": EVENT,
        "event_id": event_id,
        "event_type": event_type,
        "sequence_id": sequence_id,
        "event_time": event_time,
        "receive_latency_ms": receive_latency_ms,
        "event_sha256": sha256_hex(body),
    }


def event_record_from_body(
    body: bytes, *, receive_latency_ms: float | None = None
) -> dict[str, Any]:
    """:func:`event_record` with the fields read from the canonical event itself; the latency,
    unless given, is ``received_at - event_time``."""
    facts = event_facts(body)
    if receive_latency_ms is None:
        receive_latency_ms = latency_ms(facts.event_time, facts.received_at)
    return event_record(
        body,
        event_id=facts.event_id,
        event_type=facts.event_type,
        sequence_id=facts.sequence_id,
        event_time=facts.event_time,
        receive_latency_ms=receive_latency_ms,
    )


def operational(kind: str, **fields: Any) -> dict[str, Any]:
    """A record of an operational fact; text values are scrubbed of registered secrets."""
    if kind not in OPERATIONAL_KINDS:
        raise ValueError(f"not an operational audit kind: {kind!r}")
    reserved = SEALED_FIELDS.intersection(fields)
    if reserved:
        raise ValueError(f"fields the log assigns: {sorted(reserved)}")
    record: dict[str, Any] = {"kind": kind}
    for name, value in fields.items():
        record[name] = REDACTOR.scrub(value) if isinstance(value, str) else value
    return record


def service_start(version: str, **fields: Any) -> dict[str, Any]:
    return operational("service_start", version=version, **fields)


def service_stop(reason: str, **fields: Any) -> dict[str, Any]:
    return operational("service_stop", reason=reason, **fields)


def config_loaded(config: bytes, *, source: str | None = None) -> dict[str, Any]:
    """The configuration's SHA-256 (of the bytes it was loaded from), never its values."""
    return operational("config_loaded", config_sha256=sha256_hex(config), source=source)


def connection_opened(connection: str, *, dialect: str, **fields: Any) -> dict[str, Any]:
    return operational("connection_opened", connection=connection, dialect=dialect, **fields)


def connection_closed(
    connection: str, *, reason: str, code: int | None = None, **fields: Any
) -> dict[str, Any]:
    return operational(
        "connection_closed", connection=connection, reason=reason, code=code, **fields
    )


def auth_failure(reason: str, *, status: int | None = None, **fields: Any) -> dict[str, Any]:
    return operational("auth_failure", reason=reason, status=status, **fields)


def subscription_sent(connection: str, topics: list[str], **fields: Any) -> dict[str, Any]:
    """How many topics and their hash (sorted, newline-joined); topic names may carry ids."""
    digest = sha256_hex("\n".join(sorted(topics)).encode())
    return operational(
        "subscription_sent",
        connection=connection,
        topics=len(topics),
        topics_sha256=digest,
        **fields,
    )


def gap_opened(
    gap_id: str, *, stream: str, first_seq: int, last_seq: int, **window: Any
) -> dict[str, Any]:
    """``window``: ``time_from``/``time_to`` (epoch ms) for a gap in time rather than sequence."""
    return operational(
        "gap_opened",
        gap_id=gap_id,
        stream=stream,
        first_seq=first_seq,
        last_seq=last_seq,
        **window,
    )


def gap_closed(gap_id: str, *, state: str, **counts: Any) -> dict[str, Any]:
    """``counts``: what closed it (``filled`` events, a ``note``) when a backfill did."""
    return operational("gap_closed", gap_id=gap_id, state=state, **counts)


def dead_lettered(sink: str, *, event_id: str, error: str, attempts: int) -> dict[str, Any]:
    return operational(
        "dead_lettered", sink=sink, event_id=event_id, error=error, attempts=attempts
    )


def dlq_retry(sink: str | None, *, count: int) -> dict[str, Any]:
    return operational("dlq_retry", sink=sink, count=count)


def dlq_purge(sink: str | None, *, count: int) -> dict[str, Any]:
    return operational("dlq_purge", sink=sink, count=count)
