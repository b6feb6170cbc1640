"""Event ids: deterministic, UUIDv7-shaped, time-ordered, and distinct for distinct events."""

from __future__ import annotations

import hashlib
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ivrstream.identity import event_id, fallback_event_id

T = 1_777_629_656_400  # 2026-05-01T10:00:56.400Z


def parsed(text: str) -> uuid.UUID:
    value = uuid.UUID(text)
    assert str(value) == text  # canonical form: lower-case, hyphenated
    return value


def recipe(key: str, time_ms: int) -> str:
    """The documented layout, written out independently: 6 bytes of time, then 10 bytes of the
    digest with the version nibble (7) and the RFC variant bits (10) stamped in."""
    raw = bytearray(time_ms.to_bytes(6, "big") + hashlib.sha256(key.encode()).digest()[:10])
    raw[6] = 0x70 | raw[6] & 0x0F
    raw[8] = 0x80 | raw[8] & 0x3F
    return str(uuid.UUID(bytes=bytes(raw)))


def test_the_same_event_always_gets_the_same_id():
    assert event_id("conv-1", "flow.start", T) == event_id("conv-1", "flow.start", T)
    # pinned: every journal and sink de-duplicates on these, so the recipe must never drift
    assert event_id("conv-1", "flow.start", T) == "019de2fb-f550-7839-ad5d-5af10df3dc8b"
    assert event_id("conv-1", "flow.start", T) == recipe(
        f"ivr-event/v1|6:conv-1|10:flow.start|{T}", T
    )
    assert fallback_event_id("sub-1", 41, T) == recipe("ivr-event/v1/es|5:sub-1|41", T)


def test_an_id_is_a_version_7_rfc_uuid_whose_time_is_the_events():
    value = parsed(event_id("conv-1", "flow.start", T))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == T


def test_ids_differ_when_conversation_type_or_time_differ():
    base = event_id("conv-1", "flow.start", T)
    others = {
        event_id("conv-2", "flow.start", T),
        event_id("conv-1", "flow.end", T),
        event_id("conv-1", "flow.start", T + 1),
    }
    assert base not in others
    assert len(others) == 3


def test_ids_sort_by_event_time_whatever_the_conversation():
    times = [T - 86_400_000, T - 1, T, T + 1, T + 3_600_000]
    ids = [
        event_id(f"conv-{i % 2}", "flow.start" if i % 3 else "acd.start", t)
        for i, t in enumerate(times)
    ]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids


def test_fallback_ids_are_stable_per_subscription_and_sequence():
    first = fallback_event_id("sub-1", 41, T)
    assert first == fallback_event_id("sub-1", 41, T)
    assert first != fallback_event_id("sub-1", 42, T)
    assert first != fallback_event_id("sub-2", 41, T)
    value = parsed(first)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == T


def test_fallback_ids_never_collide_with_event_ids():
    assert fallback_event_id("conv-1", 1, T) != event_id("conv-1", "1", T)


def test_the_random_part_comes_from_the_content_not_the_time():
    later = parsed(event_id("conv-1", "flow.start", T + 1))
    now = parsed(event_id("conv-1", "flow.start", T))
    assert later.int & ((1 << 80) - 1) != now.int & ((1 << 80) - 1)


@settings(max_examples=300, deadline=None)
@given(
    conversation=st.text(max_size=40),
    kind=st.text(max_size=20),
    time_ms=st.integers(0, 2**48 - 1),
    other_ms=st.integers(0, 2**48 - 1),
)
def test_any_input_gives_a_well_formed_time_ordered_id(conversation, kind, time_ms, other_ms):
    text = event_id(conversation, kind, time_ms)
    value = parsed(text)
    assert (value.version, value.variant) == (7, uuid.RFC_4122)
    assert value.int >> 80 == time_ms
    other = event_id(conversation, kind, other_ms)
    if time_ms < other_ms:
        assert text < other
    assert text == event_id(conversation, kind, time_ms)
    fallback = parsed(fallback_event_id(conversation, other_ms, time_ms))
    assert (fallback.version, fallback.variant, fallback.int >> 80) == (7, uuid.RFC_4122, time_ms)
