"""Stable event ids: the same real event gets the same id however often, and however, it arrives.

Recipe (``event_id``): a UUID in the version-7 layout whose 48-bit time field is the event's own
time (epoch milliseconds, from the server) and whose remaining 74 bits come from
``SHA-256("ivr-event/v1|" + conversation_id + "|" + event_type + "|" + event_time_ms)``.

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


def _uuid7_layout(time_ms: int, digest: bytes) -> str:
    rand = int.from_bytes(digest[:10], "big")  # 80 bits, 74 used
    value = (time_ms & _MASK_48) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def event_id(conversation_id: str, event_type: str, event_time_ms: int) -> str:
    """The id of "``event_type`` happened to ``conversation_id`` at ``event_time_ms``"."""
    key = f"ivr-event/v1|{conversation_id}|{event_type}|{event_time_ms}"
    return _uuid7_layout(event_time_ms, hashlib.sha256(key.encode()).digest())


def fallback_event_id(subscription: str, sequence_id: int, event_time_ms: int) -> str:
    """The id of an Event Streams frame that names no conversation or change."""
    key = f"ivr-event/v1/es|{subscription}|{sequence_id}"
    return _uuid7_layout(event_time_ms, hashlib.sha256(key.encode()).digest())
