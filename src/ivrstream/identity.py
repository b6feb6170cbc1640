"""Stable event ids: the same real event gets the same id however often, and however, it arrives.

Recipe (``event_id``): a UUID in the version-7 layout whose 48-bit time field is the event's own
time (epoch milliseconds, from the server) and whose remaining 74 bits come from
``SHA-256("ivr-event/v1|" + len:conversation_id + "|" + len:event_type + "|" + event_time_ms)``
(each text field prefixed by its length, so no two different events share a key).

- Live Event Streams frames, a resent frame, a Notifications copy and a copy rebuilt from
  analytics by backfill all carry the same conversation, kind of change and time, so they get
  the same id; the journal's unique index and every sink de-duplicate on it.
- Ids sort by event time, which keeps the journal's unique index append-mostly (fast inserts).
- When a frame lacks a conversation or a kind of change, the id falls back to the
  subscription and sequence id (``fallback_event_id``): still stable across resends.
"""

from __future__ import annotations

import hashlib

_MASK_48 = (1 << 48) - 1


# hex digit → the same digit with its top two bits set to 10 (the RFC 4122 variant)
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid7_layout(time_ms: int, digest_hex: str) -> str:
    """Bytes 0–5: the time; 6–15: the first 10 digest bytes, with the version nibble (7) in
    byte 6 and the variant bits (10) in byte 8 — 74 bits of the digest survive. (String
    operations on purpose: this runs once per event.)"""
    t = f"{time_ms & _MASK_48:012x}"
    h = digest_hex
    return f"{t[:8]}-{t[8:]}-7{h[1:4]}-{_VARIANT[h[4]]}{h[5:8]}-{h[8:20]}"


_TYPE_PARTS: dict[str, str] = {}  # event type → its "|len:type|" part of the key


def event_id(conversation_id: str, event_type: str, event_time_ms: int) -> str:
    """The id of "``event_type`` happened to ``conversation_id`` at ``event_time_ms``"."""
    type_part = _TYPE_PARTS.get(event_type)
    if type_part is None:
        type_part = f"|{len(event_type)}:{event_type}|"
        if len(_TYPE_PARTS) < 1_000:
            _TYPE_PARTS[event_type] = type_part
    key = f"ivr-event/v1|{len(conversation_id)}:{conversation_id}{type_part}{event_time_ms}"
    return _uuid7_layout(event_time_ms, hashlib.sha256(key.encode()).hexdigest())


def fallback_event_id(subscription: str, sequence_id: int, event_time_ms: int) -> str:
    """The id of an Event Streams frame that names no conversation or change."""
    key = f"ivr-event/v1/es|{len(subscription)}:{subscription}|{sequence_id}"
    return _uuid7_layout(event_time_ms, hashlib.sha256(key.encode()).hexdigest())
