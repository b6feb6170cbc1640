"""The frame codec: what passes, every reason to quarantine, schema evolution, and fuzzing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    Decoded,
    FrameDecoder,
    Rejected,
    parse_timestamp_ms,
)

TIME = "2026-05-01T10:00:56.400Z"
TIME_MS = 1_777_629_656_400


def event(**changes: Any) -> dict[str, Any]:
    """A valid event frame; ``changes`` replace fields, ``None`` removes one."""
    frame: dict[str, Any] = {
        "eventType": "interaction:updated",
        "sequenceId": 41874,
        "timestamp": TIME,
        "data": {
            "id": "conv-1",
            "conversationId": "conv-1",
            "state": "ivr",
            "flow": {"id": "f", "name": "Main IVR", "version": "7.0"},
        },
    }
    for key, value in changes.items():
        if value is None:
            frame.pop(key, None)
        else:
            frame[key] = value
    return frame


def encode(frame: object, text: bool) -> bytes:
    return msgspec.json.encode(frame) if text else msgspec.msgpack.encode(frame)


both = pytest.mark.parametrize("text", [True, False], ids=["json", "msgpack"])


def decode(frame: object, text: bool, decoder: FrameDecoder | None = None) -> Decoded | Rejected:
    return (decoder or FrameDecoder()).decode(encode(frame, text), text=text)


def rejected(frame: object, text: bool) -> str:
    result = decode(frame, text)
    assert isinstance(result, Rejected), result
    return result.reason


# -- valid frames --------------------------------------------------------------------------------


@both
def test_a_valid_frame_decodes_to_every_field(text):
    result = decode(event(), text)
    assert result == Decoded(
        event_type="interaction:updated",
        source_event_type="interaction:updated",
        sequence_id=41874,
        event_time_ms=TIME_MS,
        timestamp=event()["timestamp"],
        conversation_id="conv-1",
        data=event()["data"],
        extra=None,
    )


@both
def test_data_naming_only_its_id_is_enough(text):
    result = decode(event(data={"id": "only-id"}), text)
    assert isinstance(result, Decoded)
    assert result.conversation_id == "only-id"


@both
def test_conversation_id_wins_over_id(text):
    result = decode(event(data={"id": "leg", "conversationId": "conv"}), text)
    assert isinstance(result, Decoded)
    assert result.conversation_id == "conv"


@both
def test_the_smallest_valid_sequence_id_is_one(text):
    result = decode(event(sequenceId=1), text)
    assert isinstance(result, Decoded)
    assert result.sequence_id == 1


@both
def test_the_largest_storable_sequence_id_passes_and_one_more_is_quarantined(text):
    ok = decode(event(sequenceId=2**63 - 1), text)
    assert isinstance(ok, Decoded)
    assert rejected(event(sequenceId=2**63), text) == (  # SQLite's INTEGER is 64-bit signed
        f"invalid event: sequenceId {2**63} is over {2**63 - 1}"
    )
    assert "is over" in rejected(event(sequenceId=2**64 - 1), text)


@pytest.mark.parametrize(
    ("stamp", "ms"),
    [
        ("2026-05-01T10:00:56.400Z", TIME_MS),
        ("2026-05-01T10:00:56.400+00:00", TIME_MS),
        ("2026-05-01T12:00:56.400+02:00", TIME_MS),
        ("2026-05-01T10:00:56Z", TIME_MS - 400),
        ("2026-05-01T10:00:56.4004Z", TIME_MS),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_timestamps_with_an_offset_become_epoch_milliseconds(stamp, ms):
    assert parse_timestamp_ms(stamp) == ms
    result = decode(event(timestamp=stamp), text=True)
    assert isinstance(result, Decoded)
    assert result.event_time_ms == ms


# -- event_type ----------------------------------------------------------------------------------


@both
def test_event_type_is_data_change_when_the_server_says(text):
    frame = event(data={"conversationId": "c", "change": "flow.start"})
    result = decode(frame, text)
    assert isinstance(result, Decoded)
    assert result.event_type == "flow.start"
    assert result.source_event_type == "interaction:updated"


@both
@pytest.mark.parametrize(
    "change", [None, "", 7, ["flow.start"]], ids=["absent", "empty", "int", "list"]
)
def test_event_type_falls_back_to_the_frames_event_type(text, change):
    data: dict[str, Any] = {"conversationId": "c"}
    if change is not None:
        data["change"] = change
    result = decode(event(eventType="interaction:created", data=data), text)
    assert isinstance(result, Decoded)
    assert result.event_type == "interaction:created"
    assert result.source_event_type == "interaction:created"


# -- every reason to quarantine ------------------------------------------------------------------


@both
def test_a_frame_over_the_size_limit_is_rejected_before_decoding(text):
    payload = encode(event(), text)
    limit = len(payload)
    assert isinstance(FrameDecoder(limit).decode(payload, text=text), Decoded)  # exactly: fine
    result = FrameDecoder(limit - 1).decode(payload, text=text)
    assert result == Rejected(f"frame is {limit} bytes, over the {limit - 1}-byte limit")
    garbage = b"\xff" * (limit + 1)  # never decoded: the size is the reason, not the bytes
    oversized = FrameDecoder(limit).decode(garbage, text=text)
    assert isinstance(oversized, Rejected)
    assert oversized.reason.startswith(f"frame is {limit + 1} bytes")


def test_the_default_limit_is_one_mebibyte():
    assert FrameDecoder().max_frame_bytes == DEFAULT_MAX_FRAME_BYTES == 1_048_576
    result = FrameDecoder().decode(b" " * (DEFAULT_MAX_FRAME_BYTES + 1), text=True)
    assert isinstance(result, Rejected)
    assert "1048577 bytes" in result.reason


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"eventType": "x"', b"", b"\xff\xfe", encode(event(), True) + b" trailing"],
    ids=["garbage", "unterminated", "empty", "not-utf8", "trailing"],
)
def test_invalid_json_is_rejected(payload):
    result = FrameDecoder().decode(payload, text=True)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid JSON: ")


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"", encode(event(), False)[:-3], b"\x81\xa9eventType"],
    ids=["reserved-byte", "empty", "truncated", "map-without-value"],
)
def test_invalid_msgpack_is_rejected(payload):
    result = FrameDecoder().decode(payload, text=False)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid MessagePack: ")


@both
@pytest.mark.parametrize("missing", ["eventType", "sequenceId", "timestamp", "data"])
@pytest.mark.parametrize("with_extra", [False, True], ids=["plain", "with-extra-field"])
def test_a_missing_required_field_is_rejected_by_name(text, missing, with_extra):
    frame = event(**{missing: None})
    if with_extra:
        frame["schemaVersion"] = 2
    reason = rejected(frame, text)
    assert reason.startswith("invalid event: ")
    assert f"missing required field `{missing}`" in reason


@both
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("eventType", 5),
        ("sequenceId", "41874"),
        ("sequenceId", 1.5),
        ("sequenceId", True),
        ("timestamp", 1_777_629_656_400),
        ("data", "conv-1"),
        ("data", ["conv-1"]),
    ],
)
@pytest.mark.parametrize("with_extra", [False, True], ids=["plain", "with-extra-field"])
def test_a_field_of_the_wrong_type_is_rejected_by_name(text, name, value, with_extra):
    frame = event(**{name: value})
    if with_extra:
        frame["schemaVersion"] = 2
    reason = rejected(frame, text)
    assert reason.startswith("invalid event: Expected")
    assert f"$.{name}" in reason


@both
@pytest.mark.parametrize("seq", [0, -1, -(2**63)])
def test_a_sequence_id_below_one_is_rejected(text, seq):
    assert rejected(event(sequenceId=seq), text) == (f"invalid event: sequenceId {seq} is not ≥ 1")


@both
@pytest.mark.parametrize(
    "stamp", ["yesterday", "", "2026-13-01T00:00:00Z", "10:00:56Z", "2026-05-01T10:00:56.400z"]
)
def test_a_timestamp_that_is_not_iso_8601_is_rejected(text, stamp):
    reason = rejected(event(timestamp=stamp), text)
    assert reason == f"invalid event: timestamp {stamp!r} is not ISO-8601"


@both
def test_the_rejection_quotes_at_most_64_characters_of_a_bad_timestamp(text):
    reason = rejected(event(timestamp="x" * 10_000), text)
    assert "x" * 64 in reason
    assert "x" * 65 not in reason


@both
@pytest.mark.parametrize("stamp", ["2026-05-01T10:00:56.400", "2026-05-01T10:00:56", "2026-05-01"])
def test_a_timestamp_without_a_timezone_is_rejected(text, stamp):
    assert parse_timestamp_ms(stamp) is None
    assert "is not ISO-8601" in rejected(event(timestamp=stamp), text)


@both
@pytest.mark.parametrize(
    "data",
    [{}, {"state": "ivr"}, {"conversationId": ""}, {"id": ""}, {"id": 5}, {"conversationId": None}],
    ids=["empty", "no-ids", "empty-conversation", "empty-id", "int-id", "null-conversation"],
)
def test_data_that_names_no_conversation_is_rejected(text, data):
    assert rejected(event(data=data), text) == (
        "invalid event: data names no conversationId (or id)"
    )


@both
@pytest.mark.parametrize("frame", [[1, 2], "event", 5, None, True], ids=repr)
def test_a_frame_that_is_not_an_object_is_rejected(text, frame):
    reason = rejected(frame, text)
    assert reason.startswith("invalid event: Expected `object`")


def test_a_msgpack_frame_with_a_non_string_key_is_rejected():
    frame: dict[Any, Any] = event()
    frame[7] = "seven"
    assert rejected(frame, text=False).startswith("invalid event: ")


# -- schema evolution ----------------------------------------------------------------------------


@both
def test_extra_top_level_fields_are_kept_not_rejected(text):
    frame = event(region="eu-west-1", schemaVersion=2, tags={"a": [1, 2]})
    result = decode(frame, text)
    assert isinstance(result, Decoded)
    assert result.extra == {"region": "eu-west-1", "schemaVersion": 2, "tags": {"a": [1, 2]}}
    assert result.sequence_id == 41874
    assert result.conversation_id == "conv-1"
    assert result.event_time_ms == TIME_MS


def test_extra_fields_are_counted_per_frame_and_each_new_name_is_reported_once():
    decoder = FrameDecoder()
    assert decoder.new_fields() == []
    for i in range(50):
        text = i % 2 == 0
        frame = event(sequenceId=i + 1, region="eu")
        if i >= 10:
            frame["schemaVersion"] = 2
        if i == 30:
            frame["tenant"] = "t"
        result = decode(frame, text, decoder)
        assert isinstance(result, Decoded)
        fresh = decoder.new_fields()
        if i == 0:
            assert fresh == ["region"]
        elif i == 10:
            assert fresh == ["schemaVersion"]
        elif i == 30:
            assert fresh == ["tenant"]
        else:
            assert fresh == []
    assert decoder.field_counts == {"region": 50, "schemaVersion": 40, "tenant": 1}


def test_new_fields_accumulate_until_asked_for():
    decoder = FrameDecoder()
    decode(event(a=1, b=2), True, decoder)
    decode(event(b=2, c=3), False, decoder)
    decode(event(a=1), True, decoder)
    assert decoder.new_fields() == ["a", "b", "c"]
    assert decoder.new_fields() == []
    decode(event(a=1, b=2, c=3), True, decoder)
    assert decoder.new_fields() == []
    assert decoder.field_counts == {"a": 3, "b": 3, "c": 2}


def test_frames_without_extra_fields_count_nothing():
    decoder = FrameDecoder()
    for text in (True, False):
        result = decode(event(), text, decoder)
        assert isinstance(result, Decoded)
        assert result.extra is None
    assert decoder.field_counts == {}
    assert decoder.new_fields() == []


# -- nothing ever raises -------------------------------------------------------------------------

FAST = settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(FAST, max_examples=2_000)
@given(
    payload=st.binary(max_size=512),
    text=st.booleans(),
    limit=st.just(DEFAULT_MAX_FRAME_BYTES) | st.integers(0, 600),
)
def test_arbitrary_bytes_never_raise(payload, text, limit):
    result = FrameDecoder(limit).decode(payload, text=text)
    assert isinstance(result, Decoded | Rejected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

field_values = {
    "eventType": st.sampled_from(["interaction:updated", "interaction:created", ""]) | json_values,
    "sequenceId": st.integers(-3, 2**64 - 1) | json_values,
    "timestamp": st.sampled_from([TIME, "2026-05-01T10:00:56", "nope", ""]) | json_values,
    "data": st.fixed_dictionaries(
        {},
        optional={
            "conversationId": st.text(max_size=8) | json_values,
            "id": st.text(max_size=8),
            "change": st.sampled_from(["flow.start", "flow.end"]) | json_values,
        },
    )
    | json_values,
}


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """Frames near the schema: each required field present (usually valid) or not, plus extras."""
    frame: dict[str, Any] = {}
    for name, strategy in field_values.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # missing
        valid = event()[name]
        frame[name] = valid if draw(st.booleans()) else draw(strategy)
    frame.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    return frame


def encodable(frame: dict[str, Any], text: bool) -> bytes | None:
    try:
        return encode(frame, text)
    except (OverflowError, TypeError, ValueError):
        return None  # e.g. integers MessagePack cannot hold


@settings(FAST, max_examples=1_000)
@given(frame=frames(), text=st.booleans())
def test_any_frame_near_the_schema_decodes_or_is_rejected(frame, text):
    payload = encodable(frame, text)
    if payload is None:
        return
    result = FrameDecoder().decode(payload, text=text)
    assert isinstance(result, Decoded | Rejected)
    if isinstance(result, Decoded):
        assert 1 <= result.sequence_id < 2**63
        assert isinstance(result.conversation_id, str)
        assert result.conversation_id
        assert isinstance(result.event_type, str)
        extra = {k: v for k, v in frame.items() if k not in event()}
        assert (result.extra or {}) == extra


VALID = [
    event(),
    event(data={"conversationId": "c", "change": "flow.end", "ani": "tel:+15551234"}),
    event(schemaVersion=2, region="eu-west-1", tags=[1, 2.5, None, True]),
    event(sequenceId=1, data={"id": "x" * 40, "nested": {"a": [{"b": -7}]}}),
]
VALID_PAYLOADS = [(encode(frame, text), text) for frame in VALID for text in (True, False)]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid frame's bytes with some bytes flipped, cut, inserted or the end truncated."""
    original, text = draw(st.sampled_from(VALID_PAYLOADS))
    payload = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not payload:
            break
        at = draw(st.integers(0, len(payload) - 1))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        if action == "flip":
            payload[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            payload[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del payload[at : at + draw(st.integers(1, 8))]
        elif action == "insert":
            payload[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del payload[at:]
    return bytes(payload), text


@FAST
@given(case=mutated())
def test_mutated_valid_frames_never_raise(case):
    payload, text = case
    result = FrameDecoder().decode(payload, text=text)
    assert isinstance(result, Decoded | Rejected)
    if isinstance(result, Rejected):
        assert result.reason
