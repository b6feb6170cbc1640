"""Hostile input: whatever a broken or malicious server sends, intake quarantines it with a
reason, keeps memory bounded, and goes on."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.aio.intake import Intake
from ivrstream.clock import SystemClock
from ivrstream.config import JournalSettings, OrderingSettings
from ivrstream.hooks import Hooks
from ivrstream.journal import open_journal
from tests.aio.support import until

LIMIT = 64 * 1024
TIME = "2026-05-01T10:00:56.400Z"


def event(seq: int, data: object = None, **fields: object) -> dict:
    frame = {
        "eventType": "interaction:updated",
        "sequenceId": seq,
        "timestamp": TIME,
        "data": data if data is not None else {"conversationId": f"c-{seq}", "id": "x"},
    }
    frame.update(fields)
    return frame


def mp(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


def deep_msgpack(levels: int) -> bytes:
    frame = mp(event(1, {"conversationId": "c", "x": None}))
    return frame.replace(b"\xa1x\xc0", b"\xa1x" + b"\x91" * levels + b"\xc0")


HOSTILE: list[tuple[str, bytes, bool, str]] = [
    # (name, payload, is text, what the quarantine reason must say)
    (
        "invalid UTF-8",
        b'{"eventType":"interaction:updated","sequenceId":1,"timestamp":"'
        + TIME.encode()
        + b'","data":{"conversationId":"\xff\xfe"}}',
        True,
        "UTF-8",
    ),
    (
        "NaN literal",
        b'{"eventType":"interaction:updated","sequenceId":1,"timestamp":"'
        + TIME.encode()
        + b'","data":{"conversationId":"c","n":NaN}}',
        True,
        "invalid JSON",
    ),
    (
        "Infinity literal",
        b'{"eventType":"interaction:updated","sequenceId":1,"timestamp":"'
        + TIME.encode()
        + b'","data":{"conversationId":"c","n":Infinity}}',
        True,
        "invalid JSON",
    ),
    (
        "deeply nested JSON",
        b'{"eventType":"interaction:updated","sequenceId":1,"timestamp":"'
        + TIME.encode()
        + b'","data":{"conversationId":"c","n":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",
        True,
        "bytes, over",
    ),
    (
        "deeply nested JSON under the limit",
        b'{"eventType":"interaction:updated","sequenceId":1,'
        b'"timestamp":"'
        + TIME.encode()
        + b'","data":{"conversationId":"c","n":'
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}}",
        True,
        "RecursionError",
    ),
    ("deeply nested MessagePack", deep_msgpack(20_000), False, "RecursionError"),
    (
        "a 10 MB string",
        mp(event(1, {"conversationId": "c", "s": "x" * 10_000_000})),
        False,
        "bytes, over",
    ),
    ("a huge sequence id", mp(event(2**64 - 1)), False, "sequenceId"),
    ("a non-string key in data", mp(event(1, {1: "x"})), False, "Expected `str`"),
    (
        "a MessagePack extension value",
        mp(event(1, {"conversationId": "c", "x": msgspec.msgpack.Ext(5, b"abc")})),
        False,
        "extension type 5 is not supported",
    ),
    ("not an object", mp([1, 2, 3]), False, "invalid event"),
    (
        "random bytes",
        bytes(random.Random(1).getrandbits(8) for _ in range(300)),
        False,
        "invalid",
    ),
]


@pytest.fixture
async def intake(tmp_path):
    intake = Intake(
        JournalSettings(path=str(tmp_path / "j.db")),
        OrderingSettings(),
        SystemClock(),
        Hooks(),
        max_frame_bytes=LIMIT,
    )
    await intake.open()
    intake.subscribed("s", "eventstreams", "sub-1", 0, None)
    yield intake
    await intake.close()


@pytest.mark.parametrize(
    ("name", "payload", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
async def test_hostile_frames_are_quarantined_with_a_reason(intake, name, payload, text, reason):
    intake.on_frame("s", "es-1", payload, text)
    intake.on_frame("s", "es-1", mp(event(1)), False)  # and the stream goes on
    intake.flush()
    await until(lambda: intake.stats.committed == 1)
    with open_journal(intake.path) as journal:
        (entry,) = journal.quarantined(with_raw=True)
        assert journal.count() == 1
    assert reason in entry["reason"]
    assert len(entry["raw"]) <= LIMIT  # an oversized frame keeps only its first bytes
    assert entry["raw"] == payload[:LIMIT]
    assert entry["connection"] == "es-1"


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6 and data:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.8:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
            data[a:b] = data[a:b] * 2
    return bytes(data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2_000), st.booleans())
async def test_arbitrary_bytes_never_break_intake(intake, payload, text):
    before = intake.stats.quarantined + intake.stats.frames
    intake.on_frame("s", "es-fuzz", payload, text)  # must not raise
    assert intake.stats.quarantined + intake.stats.frames > before


async def test_thousands_of_mutated_frames_are_each_journaled_or_quarantined(intake):
    rng = random.Random(7)
    valid = [mp(event(n)) for n in range(1, 2_001)]
    frames = [mutate(rng, f) if rng.random() < 0.5 else f for f in valid]
    for frame in frames:
        intake.on_frame("s", "es-fuzz", frame, False)
    intake.flush()
    await until(lambda: intake.stats.committed + intake.stats.quarantined >= 1)
    await until(lambda: intake.statistics()["inflight"] == 0)  # everything submitted is durable
    stats = intake.statistics()
    handled = stats["committed"] + stats["quarantined"]
    (stream,) = stats["streams"].values()
    # every frame ends somewhere: journaled, quarantined, or counted as a duplicate/early frame
    assert (
        handled + stream["duplicate"] + stream["held"] + stream["late"]
        >= len(frames) - len([f for f in frames if f not in valid]) // 2
    )
    assert stats["quarantined"] > 100
