import aiohttp
import msgspec
import pytest

from ivrstream.emulator.fastmode import frame_header
from tests.emulator.client import open_stream, read_events, token


@pytest.mark.parametrize("length", [0, 125, 126, 65_535, 65_536, 1_000_000])
def test_frame_header_lengths_follow_rfc6455(length):
    header = frame_header(0x2, length)
    assert header[0] == 0x82  # FIN + binary, unmasked
    marker = header[1]
    if length < 126:
        assert (len(header), marker) == (2, length)
    elif length < 65_536:
        assert (len(header), marker) == (4, 126)
        assert int.from_bytes(header[2:4]) == length
    else:
        assert (len(header), marker) == (10, 127)
        assert int.from_bytes(header[2:10]) == length


@pytest.mark.parametrize(
    ("batch", "content_type"), [(64, "application/msgpack"), (1, "application/json")]
)
async def test_a_new_subscription_gets_the_pre_encoded_burst_then_the_live_stream(
    emulator_factory, http, batch, content_type
):
    async with emulator_factory(
        rate=200, time_scale=2000, fast_frames=3_000, fast_frame_bytes=900, fast_batch=batch
    ) as emu:
        ws, ack = await open_stream(http, emu, await token(http, emu), contentType=content_type)
        assert ack["sequenceId"] == 0
        events = await read_events(ws, 3_050)
        await ws.close()
        assert [e["sequenceId"] for e in events] == list(range(1, 3_051))
        assert all(e["eventType"] == "interaction:updated" for e in events[:3_000])
        (report,) = emu.ledger.entries("sent_range")
        assert (report["from"], report["to"], report["batch"]) == (1, 3_000, batch)
        assert report["framesPerSecond"] > 0
        encode = msgspec.msgpack.encode if "msgpack" in content_type else msgspec.json.encode
        sizes = {len(encode(e)) for e in events[:3_000]}
        assert min(sizes) >= 800
        assert max(sizes) <= 1_100  # "about" 900 bytes: some snapshots are larger unpadded


async def test_the_burst_frames_parse_with_a_standard_client(emulator_factory, http):
    async with emulator_factory(traffic=False, fast_frames=500, fast_batch=512) as emu:
        ws, _ = await open_stream(http, emu, await token(http, emu))
        for expected in range(1, 501):
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.BINARY
            assert msgspec.msgpack.decode(msg.data)["sequenceId"] == expected
        await ws.close()
