"""Faults: spec parsing, the control endpoint, and each frame fault on a real socket."""

import asyncio
from collections import Counter

import aiohttp
import msgspec
import pytest

from ivrstream.emulator.faults import FaultSettings, FaultSpecError, OutFrame, parse_spec
from tests.emulator.client import decode, ledger, open_stream, read_events, token

FAST = {"rate": 200, "time_scale": 2000}


def test_spec_parsing():
    settings = parse_spec(
        "drop_after=300, duplicate=0.01,reorder=0.02,malformed_kinds=invalid_json+oversized"
    )
    assert settings.drop_after == 300
    assert settings.duplicate == 0.01
    assert settings.reorder == 0.02
    assert settings.malformed_kinds == ["invalid_json", "oversized"]
    assert parse_spec("") == FaultSettings()


@pytest.mark.parametrize(
    "spec",
    ["drop_after", "explode=1", "duplicate=2", "drop_after=soon", "malformed_kinds=gibberish"],
)
def test_bad_specs_say_what_is_wrong(spec):
    with pytest.raises(FaultSpecError):
        parse_spec(spec)


async def test_control_endpoint_sets_faults_and_fires_actions(emulator, http):
    url = f"{emulator.base_url}/emulator/faults"
    async with http.post(url, json={"set": {"duplicate": 0.5}, "actions": ["lose_buffer"]}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["settings"]["duplicate"] == 0.5
    assert body["fired"] == [{"action": "lose_buffer", "events": 0}]
    async with http.get(url) as resp:
        assert (await resp.json())["duplicate"] == 0.5
    async with http.post(url, json={"set": {"nonsense": 1}}) as resp:
        assert resp.status == 400
    async with http.post(url, json={"actions": ["explode"]}) as resp:
        assert resp.status == 400


async def frames_until_closed(ws: aiohttp.ClientWebSocketResponse, limit: int = 10_000) -> list:
    out = []
    while len(out) < limit:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            break
        out.append(decode(msg))
    return out


async def test_drop_after_n_frames_aborts_each_socket(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        emu.set_faults(drop_after=40)
        bearer = await token(http, emu)
        for _ in range(2):
            ws, _ = await open_stream(http, emu, bearer)
            frames = await frames_until_closed(ws)
            assert len(frames) == 40
            assert ws.close_code == 1006  # no close frame: an abrupt drop
        assert emu.ledger.fault_counts["drop"] == 2


async def test_drop_action_aborts_every_open_socket(emulator, http):
    bearer = await token(http, emulator)
    sockets = [(await open_stream(http, emulator, bearer))[0] for _ in range(3)]
    assert emulator.fire("drop")["sockets"] == 3
    for ws in sockets:
        assert await frames_until_closed(ws) == []
        assert ws.close_code == 1006


async def test_stall_keeps_the_socket_open_but_silent(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        emu.set_faults(stall_after=25)
        ws, ack = await open_stream(http, emu, await token(http, emu))
        events = await read_events(ws, 25)
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
        assert not ws.closed
        assigned = [e for e in emu.ledger.entries("assigned", subscription=ack["subscriptionId"])]
        assert len(assigned) > 25  # the subscription moved on; this socket did not
        assert [e["sequenceId"] for e in events] == list(range(1, 26))
        await ws.close()


async def test_duplicates_repeat_frames_and_are_recorded(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        emu.set_faults(duplicate=1.0)
        ws, _ = await open_stream(http, emu, await token(http, emu))
        events = await read_events(ws, 40)
        await ws.close()
        sequence = [e["sequenceId"] for e in events]
        assert sequence == [n for n in range(1, 21) for _ in range(2)]
        sent = await ledger(http, emu, "sent")
        assert sum(1 for e in sent if e.get("fault") == "duplicate") >= 20


async def test_reordered_frames_all_arrive(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        emu.set_faults(reorder=0.3)
        ws, _ = await open_stream(http, emu, await token(http, emu))
        events = await read_events(ws, 300)
        await ws.close()
        sequence = [e["sequenceId"] for e in events]
        assert sequence != sorted(sequence)
        # every id up to a point is there; only the held-back frame may still be in flight
        assert set(range(1, max(sequence) - 1)) <= set(sequence)
        assert emu.ledger.fault_counts["reorder"] > 20


@pytest.mark.parametrize("content_type", ["application/msgpack", "application/json"])
async def test_malformed_frames_of_every_kind(emulator_factory, http, content_type):
    async with emulator_factory(**FAST) as emu:
        emu.set_faults(malformed=1.0, oversized_bytes=200_000)
        ws, _ = await open_stream(http, emu, await token(http, emu), contentType=content_type)
        kinds = Counter()
        good = 0
        while sum(kinds.values()) < 10:
            msg = await ws.receive(timeout=5)
            try:
                frame = decode(msg)
            except (msgspec.DecodeError, UnicodeDecodeError):
                kinds["undecodable"] += 1
                continue
            if "sequenceId" not in frame:
                kinds["missing_field"] += 1
            elif not isinstance(frame["sequenceId"], int):
                kinds["wrong_type"] += 1
            elif len(msg.data) > 100_000:
                kinds["oversized"] += 1
            else:
                good += 1
        await ws.close()
        assert kinds["undecodable"] >= 4  # invalid JSON and invalid MessagePack
        assert kinds["missing_field"]
        assert kinds["wrong_type"]
        assert kinds["oversized"]
        assert good >= 9
        assert emu.ledger.fault_counts["malformed"] >= sum(kinds.values())


async def test_malformed_action_sends_one_of_each_kind_now(emulator, http):
    ws, _ = await open_stream(http, emulator, await token(http, emulator))
    assert emulator.fire("malformed")["frames"] == 5
    messages = [await ws.receive(timeout=5) for _ in range(5)]
    assert [m.type for m in messages].count(aiohttp.WSMsgType.TEXT) >= 1
    assert [m.type for m in messages].count(aiohttp.WSMsgType.BINARY) >= 1
    await ws.close()


async def test_a_socket_that_cannot_keep_up_is_cut_off_with_1013(emulator_factory, http):
    async with emulator_factory(traffic=False, send_queue_limit=5) as emu:
        ws, _ = await open_stream(http, emu, await token(http, emu))
        (socket,) = emu.sockets()
        for n in range(10):  # faster than any writer: no await in between
            socket.send_event(OutFrame(msgspec.json.encode({"n": n}), text=True, seq=n))
        frames = await frames_until_closed(ws)
        assert [f["n"] for f in frames] == [0, 1, 2, 3, 4]
        assert ws.close_code == 1013
        assert emu.ledger.fault_counts["send_queue_overflow"] >= 1
