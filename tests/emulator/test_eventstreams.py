"""The Event Streams socket against event-streams.md: auth, limits, sequencing, resend, faults."""

import asyncio

import aiohttp
import msgspec
import pytest

from ivrstream.emulator.traffic import FLOWS
from ivrstream.protocol.eventstreams import MAX_PAYLOAD_BYTES
from ivrstream.testing import FakeClock
from tests.emulator.client import (
    decode,
    ledger,
    open_stream,
    read_events,
    subscription,
    token,
    ws_url,
)

FAST = {"rate": 200, "time_scale": 2000}  # plenty of events, whole calls in milliseconds


async def refused_status(http, emu, **kwargs) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(ws_url(emu), **kwargs)
    return info.value.status


async def test_upgrade_needs_a_valid_token(emulator, http):
    assert await refused_status(http, emulator) == 401
    assert await refused_status(http, emulator, headers={"Authorization": "Bearer forged"}) == 401


async def test_upgrade_needs_the_view_interaction_scope(emulator, http):
    narrow = await token(http, emulator, scope="analytics")
    assert (
        await refused_status(http, emulator, headers={"Authorization": f"Bearer {narrow}"}) == 403
    )


async def test_expired_token_is_refused(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False, token_ttl=60) as emu:
        bearer = await token(http, emu)
        await clock.advance(61)
        assert await refused_status(http, emu, headers={"Authorization": f"Bearer {bearer}"}) == 401


async def test_token_in_the_query_string_still_works_for_the_seeds_clients(emulator, http):
    bearer = await token(http, emulator)
    async with http.ws_connect(ws_url(emulator) + f"?access_token={bearer}") as ws:
        await ws.send_json(subscription())
        assert decode(await ws.receive(timeout=5))["type"] == "subscribed"


async def test_the_101st_connection_is_closed_with_4029(emulator, http):
    bearer = await token(http, emulator)
    headers = {"Authorization": f"Bearer {bearer}"}
    sockets = [await http.ws_connect(ws_url(emulator), headers=headers) for _ in range(100)]
    try:
        extra = await http.ws_connect(ws_url(emulator), headers=headers)
        msg = await extra.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert extra.close_code == 4029
        # closing one frees a place
        await sockets.pop().close()
        await asyncio.sleep(0.05)
        ws, _ = await open_stream(http, emulator, bearer)
        sockets.append(ws)
    finally:
        for ws in sockets:
            await ws.close()


def padded_subscription(total_bytes: int) -> bytes:
    base = msgspec.json.encode(subscription(filters={"interaction.x": ""}))
    body = msgspec.json.encode(
        subscription(filters={"interaction.x": "a" * (total_bytes - len(base))})
    )
    assert len(body) == total_bytes
    return body


@pytest.mark.parametrize(
    ("size", "accepted"), [(MAX_PAYLOAD_BYTES, True), (MAX_PAYLOAD_BYTES + 1, False)]
)
async def test_subscription_size_limit(emulator, http, size, accepted):
    bearer = await token(http, emulator)
    async with http.ws_connect(
        ws_url(emulator), headers={"Authorization": f"Bearer {bearer}"}
    ) as ws:
        await ws.send_str(padded_subscription(size).decode())
        msg = await ws.receive(timeout=5)
        if accepted:
            assert decode(msg)["type"] == "subscribed"
        else:
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 4003
            assert "65537 bytes exceeds the 65536-byte limit" in msg.extra


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"eventType": "interaction:deleted"}, "eventType"),
        ({"dataTypes": ["user"]}, "dataTypes"),
        ({"dataTypes": []}, "dataTypes"),
        ({"filters": {"routing type": "IVR"}}, "filters"),
        ({"filters": {"interaction.id": "contains:"}}, "filters"),
        ({"retry": 301}, "retry"),
        ({"contentType": "text/xml"}, "contentType"),
    ],
)
async def test_invalid_subscriptions_close_with_4003_naming_the_field(
    emulator, http, overrides, named
):
    bearer = await token(http, emulator)
    async with http.ws_connect(
        ws_url(emulator), headers={"Authorization": f"Bearer {bearer}"}
    ) as ws:
        await ws.send_json(subscription(**overrides))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4003
        assert named in msg.extra


async def test_silence_instead_of_a_subscription_closes_with_4003(emulator_factory, http):
    async with emulator_factory(traffic=False, subscribe_timeout=0.1) as emu:
        bearer = await token(http, emu)
        async with http.ws_connect(
            ws_url(emu), headers={"Authorization": f"Bearer {bearer}"}
        ) as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 4003


@pytest.mark.parametrize(
    ("content_type", "frame_type"),
    [
        ("application/msgpack", aiohttp.WSMsgType.BINARY),
        ("application/json", aiohttp.WSMsgType.TEXT),
    ],
)
async def test_content_type_picks_the_frame_encoding(
    emulator_factory, http, content_type, frame_type
):
    async with emulator_factory(**FAST) as emu:
        ws, _ = await open_stream(http, emu, await token(http, emu), contentType=content_type)
        msg = await ws.receive(timeout=5)
        assert msg.type == frame_type
        event = decode(msg)
        assert set(event) == {"eventType", "sequenceId", "timestamp", "data"}
        assert event["data"]["routing"]["type"] == "IVR"
        await ws.close()


async def test_sequence_ids_are_consecutive_and_match_the_ledger(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        ws, ack = await open_stream(http, emu, await token(http, emu))
        events = await read_events(ws, 300)
        await ws.close()
        assert [e["sequenceId"] for e in events] == list(range(1, 301))
        assigned = {
            e["seq"]: e
            for e in await ledger(http, emu, "assigned")
            if e["subscription"] == ack["subscriptionId"]
        }
        for event in events:
            entry = assigned[event["sequenceId"]]
            assert entry["conversationId"] == event["data"]["conversationId"]
            assert entry["fact"].split("/")[-1] == event["data"]["change"]


async def test_event_types_split_created_from_updated(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        bearer = await token(http, emu)
        created, _ = await open_stream(http, emu, bearer, eventType="interaction:created")
        events = await read_events(created, 20)
        await created.close()
        assert {e["eventType"] for e in events} == {"interaction:created"}
        assert {e["data"]["change"] for e in events} == {"customer.start"}


async def test_filters_select_events(emulator_factory, http):
    flow = FLOWS[1]
    async with emulator_factory(**FAST) as emu:
        bearer = await token(http, emu)
        ws, _ = await open_stream(
            http, emu, bearer, filters={"interaction.flow.name": f"eq:{flow.name}"}
        )
        events = await read_events(ws, 30)
        await ws.close()
        assert {e["data"]["flow"]["id"] for e in events} == {flow.id}
        conversation = events[0]["data"]["conversationId"]
        ws, _ = await open_stream(
            http, emu, bearer, filters={"interaction.id": f"eq:{conversation}"}
        )
        await ws.close()
        contains, _ = await open_stream(
            http, emu, bearer, filters={"interaction.menuPath": "contains:billing"}
        )
        events = await read_events(contains, 10)
        await contains.close()
        assert all("billing" in e["data"]["menuPath"] for e in events)


async def test_resume_after_resends_what_the_server_still_holds(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        bearer = await token(http, emu)
        ws, ack = await open_stream(http, emu, bearer)
        first = await read_events(ws, 50)
        await ws.close()
        await asyncio.sleep(0.2)  # events keep coming for the subscription while nobody listens
        ws, ack2 = await open_stream(http, emu, bearer, resumeAfter=first[-1]["sequenceId"])
        assert ack2["subscriptionId"] == ack["subscriptionId"]
        assert ack2["sequenceId"] > 50
        resumed = await read_events(ws, ack2["sequenceId"] - 50 + 20)
        await ws.close()
        assert [e["sequenceId"] for e in resumed] == list(range(51, 51 + len(resumed)))


async def test_events_older_than_the_retry_window_are_gone(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, rate=20, time_scale=50) as emu:
        bearer = await token(http, emu)
        ws, _ack = await open_stream(http, emu, bearer, retry=2)
        await clock.advance(1)
        await ws.close()
        await clock.advance(10)  # far beyond retry while disconnected
        ws, _ack2 = await open_stream(http, emu, bearer, retry=2, resumeAfter=0)
        await clock.advance(0.01)
        resumed = await read_events(ws, 3)
        await ws.close()
        assert resumed[0]["sequenceId"] > 1  # a gap the client must see and recover
        sequence = [e["sequenceId"] for e in resumed]
        assert sequence == list(range(sequence[0], sequence[0] + 3))


async def test_lost_resend_buffer_leaves_a_visible_gap(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        bearer = await token(http, emu)
        ws, _ = await open_stream(http, emu, bearer)
        await read_events(ws, 10)
        await ws.close()
        await asyncio.sleep(0.1)
        emu.fire("lose_buffer")
        ws, _ack = await open_stream(http, emu, bearer, resumeAfter=10)
        (event,) = await read_events(ws, 1)
        await ws.close()
        assert event["sequenceId"] > 11  # 11 onwards were forgotten: the client sees the jump
        assert emu.ledger.fault_counts["lose_buffer"] == 1


async def test_token_expiry_mid_stream_closes_with_4001(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False, token_ttl=30) as emu:
        ws, _ = await open_stream(http, emu, await token(http, emu))
        await clock.advance(31)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4001


async def test_revoked_tokens_close_sockets_with_4001(emulator, http):
    ws, _ = await open_stream(http, emulator, await token(http, emulator))
    emulator.fire("revoke_tokens")
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4001


async def test_a_hot_standby_pair_sees_the_same_sequence(emulator_factory, http):
    async with emulator_factory(**FAST) as emu:
        bearer = await token(http, emu)
        primary, ack1 = await open_stream(http, emu, bearer)
        standby, ack2 = await open_stream(http, emu, bearer, resumeAfter=ack1["sequenceId"])
        assert ack1["subscriptionId"] == ack2["subscriptionId"]
        a = await read_events(primary, 100)
        b = await read_events(standby, 100)
        await primary.close()
        await standby.close()
        assert [e["sequenceId"] for e in a] == [e["sequenceId"] for e in b]


async def test_schema_evolution_adds_unannounced_fields(emulator_factory, http):
    async with emulator_factory(**FAST, schema_evolution_share=0.5) as emu:
        ws, _ = await open_stream(http, emu, await token(http, emu))
        events = await read_events(ws, 200)
        await ws.close()
    extra = [set(e) - {"eventType", "sequenceId", "timestamp", "data"} for e in events]
    evolved = [fields for fields in extra if fields]
    assert 50 <= len(evolved) <= 150
    assert set().union(*evolved) <= {"schemaVersion", "traceId", "partition", "region"}
