"""Event Streams frames: bytes → checked event, or a reason to quarantine them.

Rules this module keeps:

- Text frames are JSON, binary frames MessagePack — whatever the subscription asked for.
- The size limit is checked before anything is decoded.
- ``eventType`` (string), ``sequenceId`` (integer from 1 to 2⁶³ − 1, the journal's range),
  ``timestamp`` (ISO-8601) and ``data`` (an object naming its ``conversationId`` or ``id``) are
  required; anything else is kept as schema evolution — counted, and reported once per new
  field name.
- Any frame that fails a check becomes :class:`Rejected` with a reason. Nothing here raises for
  bad input, whatever the bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

REQUIRED = ("eventType", "sequenceId", "timestamp", "data")
MAX_FIELD_NAMES = 256  # distinct schema-evolution field names tracked one by one
OTHER_FIELDS = "(other)"
DEFAULT_MAX_FRAME_BYTES = 1_048_576
MAX_SEQUENCE_ID = 2**63 - 1  # SQLite's largest INTEGER


class _StrictFrame(msgspec.Struct, forbid_unknown_fields=True):
    eventType: str  # noqa: N815 - wire names
    sequenceId: int  # noqa: N815
    timestamp: str
    data: dict[str, Any]


class _Frame(msgspec.Struct):
    eventType: str  # noqa: N815
    sequenceId: int  # noqa: N815
    timestamp: str
    data: dict[str, Any]


class Decoded(msgspec.Struct, frozen=True, gc=False):
    """A frame that passed every check (a Struct: cheap to build once per event)."""

    event_type: str  # what happened: data.change when the server says, else eventType
    source_event_type: str  # the frame's eventType
    sequence_id: int
    event_time_ms: int
    timestamp: str  # as the server wrote it
    conversation_id: str
    data: dict[str, Any]
    extra: dict[str, Any] | None  # unknown top-level fields (schema evolution)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame to quarantine, and why."""

    reason: str


_SECONDS: dict[str, int] = {}  # "2026-05-01T10:00:56" → epoch seconds (bounded below)


def _no_extensions(code: int, data: memoryview) -> object:
    """MessagePack extension values have no JSON form: refuse the frame while decoding."""
    raise ValueError(f"MessagePack extension type {code} is not supported")


def parse_timestamp_ms(text: str) -> int | None:
    """ISO-8601 with a zone → epoch ms; the common ``…:SS.mmmZ`` form takes a cached path."""
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
        seconds = _SECONDS.get(text[:19])
        if seconds is None:
            try:
                seconds = round(datetime.fromisoformat(text[:19] + "+00:00").timestamp())
            except ValueError:
                return None
            if len(_SECONDS) > 4_096:
                _SECONDS.clear()
            _SECONDS[text[:19]] = seconds
        return seconds * 1000 + int(text[20:23])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return round(moment.timestamp() * 1000)


class FrameDecoder:
    """Decodes one connection's frames; keeps schema-evolution counts across connections."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._strict_msgpack = msgspec.msgpack.Decoder(_StrictFrame, ext_hook=_no_extensions)
        self._strict_json = msgspec.json.Decoder(_StrictFrame)
        self._any_msgpack = msgspec.msgpack.Decoder(ext_hook=_no_extensions)
        self._any_json = msgspec.json.Decoder()
        self.field_counts: Counter[str] = Counter()  # extra top-level field → frames seen
        self._announced: set[str] = set()
        self._fresh: list[str] = []

    def decode(self, payload: bytes, *, text: bool) -> Decoded | Rejected:
        """Check one frame; never raises for bad bytes."""
        size = len(payload)
        if size > self.max_frame_bytes:
            return Rejected(f"frame is {size} bytes, over the {self.max_frame_bytes}-byte limit")
        encoding = "JSON" if text else "MessagePack"
        extra: dict[str, Any] | None = None
        try:
            frame: _StrictFrame | _Frame = (
                self._strict_json if text else self._strict_msgpack
            ).decode(payload)
        except msgspec.ValidationError as exc:
            if "unknown field" not in str(exc):
                return Rejected(f"invalid event: {exc}")
            split = self._split_extra(payload, text)
            if isinstance(split, Rejected):
                return split
            frame, extra = split
        except msgspec.DecodeError as exc:
            return Rejected(f"invalid {encoding}: {exc}")
        except Exception as exc:
            return Rejected(f"undecodable {encoding}: {type(exc).__name__}: {exc}")
        return self._check(frame, extra)

    def _split_extra(self, payload: bytes, text: bool) -> tuple[_Frame, dict[str, Any]] | Rejected:
        try:
            raw = (self._any_json if text else self._any_msgpack).decode(payload)
        except Exception as exc:
            return Rejected(f"undecodable frame: {type(exc).__name__}: {exc}")
        if not isinstance(raw, dict):
            return Rejected("invalid event: not an object")
        extra = {k: v for k, v in raw.items() if k not in REQUIRED}
        try:
            frame = msgspec.convert({k: raw.get(k) for k in REQUIRED if k in raw}, _Frame)
        except msgspec.ValidationError as exc:
            return Rejected(f"invalid event: {exc}")
        for name in extra:
            if not isinstance(name, str):
                return Rejected("invalid event: a top-level key is not a string")
            if name not in self._announced and len(self._announced) >= MAX_FIELD_NAMES:
                name = OTHER_FIELDS  # a server inventing names without end: stop listing them
            self.field_counts[name] += 1
            if name not in self._announced:
                self._announced.add(name)
                self._fresh.append(name)
        return frame, extra

    def _check(
        self, frame: _StrictFrame | _Frame, extra: dict[str, Any] | None
    ) -> Decoded | Rejected:
        if frame.sequenceId < 1:
            return Rejected(f"invalid event: sequenceId {frame.sequenceId} is not ≥ 1")
        if frame.sequenceId > MAX_SEQUENCE_ID:
            return Rejected(
                f"invalid event: sequenceId {frame.sequenceId} is over {MAX_SEQUENCE_ID}"
            )
        event_time = parse_timestamp_ms(frame.timestamp)
        if event_time is None:
            return Rejected(f"invalid event: timestamp {frame.timestamp[:64]!r} is not ISO-8601")
        data = frame.data
        conversation = data.get("conversationId") or data.get("id")
        if not isinstance(conversation, str) or not conversation:
            return Rejected("invalid event: data names no conversationId (or id)")
        change = data.get("change")
        return Decoded(
            event_type=change if isinstance(change, str) and change else frame.eventType,
            source_event_type=frame.eventType,
            sequence_id=frame.sequenceId,
            event_time_ms=event_time,
            timestamp=frame.timestamp,
            conversation_id=conversation,
            data=data,
            extra=extra,
        )

    @property
    def has_new_fields(self) -> bool:
        return bool(self._fresh)

    def new_fields(self) -> list[str]:
        """Extra field names seen for the first time since the last call (log each once)."""
        if not self._fresh:
            return []
        fresh, self._fresh = self._fresh, []
        return fresh
