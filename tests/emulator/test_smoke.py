import asyncio

import aiohttp

from tests.emulator.client import decode, subscription, token, ws_url


async def test_event_streams_delivers_consecutive_sequence_ids(emulator_factory, http):
    async with emulator_factory(rate=200, time_scale=2000) as emu:
        bearer = await token(http, emu)
        async with http.ws_connect(
            ws_url(emu), headers={"Authorization": f"Bearer {bearer}"}
        ) as ws:
            await ws.send_json(subscription())
            ack = decode(await ws.receive())
            assert ack["type"] == "subscribed"
            seqs = []
            while len(seqs) < 200:
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.type == aiohttp.WSMsgType.BINARY
                seqs.append(decode(msg)["sequenceId"])
            assert seqs == list(range(1, 201))
