"""The Notifications surface of the emulator, over real sockets on 127.0.0.1 port 0."""

import asyncio
import contextlib
import re
import uuid
from collections import defaultdict

import aiohttp
import msgspec
import pytest

from ivrstream.emulator.config import ClientSpec
from ivrstream.emulator.notifications import make_malformed
from ivrstream.emulator.render import notifications_for
from ivrstream.emulator.traffic import FLOWS, QUEUES
from ivrstream.isotime import parse_ms
from ivrstream.protocol.topics import (
    DETAIL_KINDS,
    DETAIL_VIEW,
    combine,
    conversation_topics,
    detail_topic,
    flow_metrics_topic,
    queue_topic,
)
from ivrstream.testing import FakeClock
from tests.emulator.client import (
    NOTIFICATIONS,
    bearer,
    channel_status,
    create_channel,
    ping,
    receive_events,
    receive_json,
    subscribe,
    token,
    ws_url,
)

CONV = "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f"
HEARTBEAT = {"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}}
FLOW_TOPIC = flow_metrics_topic(FLOWS[0].id)
LIMITED = ClientSpec(
    client_id="limited", secret="limited-secret", permissions=frozenset({DETAIL_VIEW})
)


def collect_facts(emu):
    facts = []
    emu.world.subscribe(facts.append)
    return facts


def expected_bodies(facts):
    out = defaultdict(list)
    for fact in facts:
        for topic, body in notifications_for(fact):
            out[topic].append(body)
    return out


async def get_json(http, emu, access, path, **params):
    async with http.get(f"{emu.base_url}{path}", headers=bearer(access), params=params) as resp:
        return resp.status, await resp.json()


async def topics_of(http, emu, access, channel_id):
    status, body = await get_json(
        http, emu, access, f"{NOTIFICATIONS}/channels/{channel_id}/subscriptions"
    )
    assert status == 200
    return [entity["id"] for entity in body["entities"]]


async def assert_closed(ws, code=None):
    """The next frame other than a heartbeat is the close (with ``code``)."""
    msg = await ws.receive(timeout=3)
    while msg.type == aiohttp.WSMsgType.TEXT and msgspec.json.decode(msg.data) == HEARTBEAT:
        msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    if code is not None:
        assert ws.close_code == code


def assert_event(frame, expected):
    assert set(frame) == {"topicName", "version", "eventBody", "metadata"}
    assert frame["version"] == "2"
    uuid.UUID(frame["metadata"]["CorrelationId"])
    assert frame["eventBody"] in expected[frame["topicName"]]


# -- channels ------------------------------------------------------------------------------------


async def test_create_channel_answers_like_genesys(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    assert re.fullmatch(r"streaming-0-[a-z0-9]{26}", channel["id"])
    assert channel["connectUri"] == f"ws://127.0.0.1:{emulator.port}/channels/{channel['id']}"
    expires = parse_ms(channel["expires"]) / 1000
    assert expires == pytest.approx(emulator.clock.time() + 86_400, abs=5)
    assert await channel_status(http, emulator, access, channel["id"]) == 200
    assert await channel_status(http, emulator, access, "streaming-0-nosuchchannel") == 404


async def test_channel_calls_need_a_token(emulator, http):
    url = f"{emulator.base_url}{NOTIFICATIONS}"
    async with http.post(f"{url}/channels") as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "bad.credentials"
    async with http.get(f"{url}/availabletopics", headers=bearer("forged")) as resp:
        assert resp.status == 401


async def test_list_shows_this_tokens_channels_and_hides_other_tokens_ids(emulator_factory, http):
    async with emulator_factory(traffic=False, clients=[ClientSpec(), LIMITED]) as emu:
        first, second = await token(http, emu), await token(http, emu)
        mine = [await create_channel(http, emu, first) for _ in range(2)]
        theirs = await create_channel(http, emu, second)
        path = f"{NOTIFICATIONS}/channels"
        _, listed = await get_json(http, emu, first, path)
        assert listed["entities"] == mine
        _, listed = await get_json(http, emu, first, path, includechannels="oauthclient")
        assert len(listed["entities"]) == 3
        assert [e for e in listed["entities"] if "id" in e] == mine
        assert {"expires": theirs["expires"]} in listed["entities"]
        other_client = await token(http, emu, "limited", "limited-secret")
        _, listed = await get_json(http, emu, other_client, path, includechannels="oauthclient")
        assert listed["entities"] == []
        assert await channel_status(http, emu, other_client, theirs["id"]) == 404
        assert await channel_status(http, emu, first, theirs["id"]) == 200


async def test_the_21st_channel_evicts_the_least_recently_used_unconnected_first(emulator, http):
    access = await token(http, emulator)
    channels = [await create_channel(http, emulator, access) for _ in range(20)]
    async with contextlib.AsyncExitStack() as stack:
        oldest = await stack.enter_async_context(http.ws_connect(channels[0]["connectUri"]))
        await ping(oldest)
        channels.append(await create_channel(http, emulator, access))
        assert await channel_status(http, emulator, access, channels[1]["id"]) == 404
        for channel in [channels[0], *channels[2:]]:
            assert await channel_status(http, emulator, access, channel["id"]) == 200
        _, listed = await get_json(
            http, emulator, access, f"{NOTIFICATIONS}/channels", includechannels="oauthclient"
        )
        assert len(listed["entities"]) == 20
        # now every channel is connected: the least recently used connected one goes
        for channel in channels[2:]:
            ws = await stack.enter_async_context(http.ws_connect(channel["connectUri"]))
            await ping(ws)
        await create_channel(http, emulator, access)
        notice = await receive_json(oldest)
        assert notice["topicName"] == f"v2.system.no_longer_subscribed.{channels[0]['id']}"
        assert notice["version"] == "2"
        await assert_closed(oldest, 1000)
        assert await channel_status(http, emulator, access, channels[0]["id"]) == 404
        assert await channel_status(http, emulator, access, channels[2]["id"]) == 200


async def test_fire_evict_channel_takes_an_unconnected_channel_first(emulator, http):
    access = await token(http, emulator)
    connected = await create_channel(http, emulator, access)
    idle = await create_channel(http, emulator, access)
    async with http.ws_connect(connected["connectUri"]) as ws:
        await ping(ws)
        assert emulator.fire("evict_channel") == {"action": "evict_channel", "channels": 1}
        assert await channel_status(http, emulator, access, idle["id"]) == 404
        assert await channel_status(http, emulator, access, connected["id"]) == 200
        emulator.fire("evict_channel")
        notice = await receive_json(ws)
        assert notice["topicName"].startswith("v2.system.no_longer_subscribed.")
        await assert_closed(ws)
    assert emulator.fire("evict_channel")["channels"] == 0


async def test_channel_expiry_kills_the_channel_and_its_socket(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False, channel_ttl=100) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        assert parse_ms(channel["expires"]) == round((clock.time() + 100) * 1000)
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)
            await clock.advance(99)
            assert await channel_status(http, emu, access, channel["id"]) == 200
            await clock.advance(1)
            await assert_closed(ws, 1000)
        assert await channel_status(http, emu, access, channel["id"]) == 404
        async with http.ws_connect(channel["connectUri"]) as ws:
            answer = await receive_json(ws)
            assert answer["result"] == "404"
            assert answer["message"]
            await assert_closed(ws)


async def test_resubscribing_extends_the_channel(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False, channel_ttl=100) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        await clock.advance(60)
        status, _ = await subscribe(
            http, emu, access, channel["id"], [detail_topic(CONV, "flow.end")]
        )
        assert status == 200
        _, listed = await get_json(http, emu, access, f"{NOTIFICATIONS}/channels")
        assert parse_ms(listed["entities"][0]["expires"]) == round((clock.time() + 100) * 1000)
        await clock.advance(90)  # 150 s after creation: alive thanks to the subscription
        assert await channel_status(http, emu, access, channel["id"]) == 200
        await clock.advance(10)
        assert await channel_status(http, emu, access, channel["id"]) == 404
        status, _ = await subscribe(http, emu, access, channel["id"], [])
        assert status == 404


async def test_fire_expire_channels(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    async with http.ws_connect(channel["connectUri"]) as ws:
        await ping(ws)
        assert emulator.fire("expire_channels")["channels"] == 1
        await assert_closed(ws)
    assert await channel_status(http, emulator, access, channel["id"]) == 404


async def test_revoked_token_ends_its_channels(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    async with http.ws_connect(channel["connectUri"]) as ws:
        await ping(ws)
        emulator.fire("revoke_tokens")
        notice = await receive_json(ws)
        assert notice["topicName"] == f"v2.system.token_revoked.{channel['id']}"
        await assert_closed(ws)
    fresh = await token(http, emulator)
    assert await channel_status(http, emulator, fresh, channel["id"]) == 404


# -- subscriptions -------------------------------------------------------------------------------


async def test_post_adds_put_replaces_delete_removes(emulator, http):
    access = await token(http, emulator)
    channel_id = (await create_channel(http, emulator, access))["id"]
    first = [detail_topic(CONV, "flow.start"), queue_topic(QUEUES[0].id)]
    status, body = await subscribe(http, emulator, access, channel_id, first)
    assert status == 200
    assert body["entities"] == [{"id": t, "state": "Permitted"} for t in first]
    combined = f"v2.detail.events.conversation.{CONV}?flow.end&flow.start&attributes"
    status, body = await subscribe(http, emulator, access, channel_id, [combined])
    assert status == 200
    expected = [*first, detail_topic(CONV, "flow.end"), detail_topic(CONV, "attributes")]
    assert [e["id"] for e in body["entities"]] == expected
    assert await topics_of(http, emulator, access, channel_id) == expected
    status, body = await subscribe(http, emulator, access, channel_id, [FLOW_TOPIC], method="PUT")
    assert status == 200
    assert await topics_of(http, emulator, access, channel_id) == [FLOW_TOPIC]
    url = f"{emulator.base_url}{NOTIFICATIONS}/channels/{channel_id}/subscriptions"
    async with http.delete(url, headers=bearer(access)) as resp:
        assert resp.status == 204
    assert await topics_of(http, emulator, access, channel_id) == []


async def test_unknown_channel_and_bad_body(emulator, http):
    access = await token(http, emulator)
    for method in ("POST", "PUT"):
        status, body = await subscribe(
            http, emulator, access, "streaming-0-gone", [FLOW_TOPIC], method=method
        )
        assert (status, body["code"]) == (404, "not.found")
    status, _ = await get_json(
        http, emulator, access, f"{NOTIFICATIONS}/channels/streaming-0-gone/subscriptions"
    )
    assert status == 404
    url = f"{emulator.base_url}{NOTIFICATIONS}/channels/streaming-0-gone/subscriptions"
    async with http.delete(url, headers=bearer(access)) as resp:
        assert resp.status == 404
    async with http.ws_connect(ws_url(emulator, "/channels/streaming-0-gone")) as ws:
        assert (await receive_json(ws))["result"] == "404"
        await assert_closed(ws)
    channel_id = (await create_channel(http, emulator, access))["id"]
    url = f"{emulator.base_url}{NOTIFICATIONS}/channels/{channel_id}/subscriptions"
    async with http.post(url, data=b'{"id": "x"}', headers=bearer(access)) as resp:
        assert resp.status == 400


async def test_the_1001st_topic_is_a_400(emulator, http):
    access = await token(http, emulator)
    channel_id = (await create_channel(http, emulator, access))["id"]
    conversations = [str(uuid.UUID(int=i + 1, version=4)) for i in range(125)]
    thousand = [t for c in conversations for t in conversation_topics(c)]
    status, body = await subscribe(http, emulator, access, channel_id, combine(thousand))
    assert status == 200
    assert len(body["entities"]) == 1000
    one_more = [detail_topic(CONV, "flow.start")]
    for ignore_errors in (False, True):
        status, body = await subscribe(
            http, emulator, access, channel_id, one_more, ignore_errors=ignore_errors
        )
        assert status == 400
        assert "at most 1000 topics" in body["message"]
        assert body["details"][0]["requested"] == 1001
    status, _ = await subscribe(http, emulator, access, channel_id, thousand[:5])  # already there
    assert status == 200
    assert len(await topics_of(http, emulator, access, channel_id)) == 1000
    status, _ = await subscribe(
        http, emulator, access, channel_id, [*thousand, *one_more], method="PUT"
    )
    assert status == 400
    status, _ = await subscribe(
        http, emulator, access, channel_id, [*thousand[1:], *one_more], method="PUT"
    )
    assert status == 200


async def test_a_201_character_combined_topic_is_rejected(emulator, http):
    access = await token(http, emulator)
    channel_id = (await create_channel(http, emulator, access))["id"]
    every_kind = f"v2.detail.events.conversation.{CONV}?" + "&".join(DETAIL_KINDS)
    assert len(every_kind) == 156
    at_limit = every_kind + "&attributes" * 4  # repeats count towards the length
    assert len(at_limit) == 200
    status, body = await subscribe(http, emulator, access, channel_id, [at_limit])
    assert status == 200
    assert len(body["entities"]) == 8
    too_long = every_kind + "&flow.end" * 5
    assert len(too_long) == 201
    status, body = await subscribe(http, emulator, access, channel_id, [too_long])
    assert status == 400
    assert "201 characters; the limit is 200" in body["message"]
    status, body = await subscribe(
        http, emulator, access, channel_id, [too_long], ignore_errors=True
    )
    assert status == 200
    assert body["entities"][-1]["id"] == too_long
    assert body["entities"][-1]["state"] == "Rejected"


async def test_the_id_wildcard_is_rejected(emulator, http):
    access = await token(http, emulator)
    channel_id = (await create_channel(http, emulator, access))["id"]
    wildcard = "v2.detail.events.conversation.{id}.flow.start"
    valid = detail_topic(CONV, "flow.start")
    status, body = await subscribe(http, emulator, access, channel_id, [valid, wildcard])
    assert status == 400
    assert wildcard in body["message"]
    assert "wildcards are only supported by EventBridge" in body["message"]
    assert await topics_of(http, emulator, access, channel_id) == []  # all or nothing


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("v2.detail.events.conversation.not-a-uuid.flow.start", "conversationId must be a UUID"),
        (f"v2.users.{CONV}.presence", "unknown topic"),
        ("v2.system.socket_closing", "v2.system topics cannot be subscribed"),
    ],
)
async def test_invalid_topics_fail_the_request(emulator, http, topic, reason):
    access = await token(http, emulator)
    channel_id = (await create_channel(http, emulator, access))["id"]
    status, body = await subscribe(http, emulator, access, channel_id, [topic])
    assert status == 400
    assert body["details"] == [
        {
            "errorCode": "topic.rejected",
            "entityId": topic,
            "errorMessage": body["details"][0]["errorMessage"],
            "missingPermissions": [],
        }
    ]
    assert body["details"][0]["errorMessage"].startswith(reason)


async def test_ignore_errors_lists_missing_permissions(emulator_factory, http):
    async with emulator_factory(traffic=False, clients=[LIMITED]) as emu:
        access = await token(http, emu, "limited", "limited-secret")
        channel_id = (await create_channel(http, emu, access))["id"]
        topics = [detail_topic(CONV, "flow.start"), queue_topic(QUEUES[0].id), FLOW_TOPIC]
        status, body = await subscribe(http, emu, access, channel_id, topics)
        assert status == 400
        assert [d["missingPermissions"] for d in body["details"]] == [
            ["routing:queue:view"],
            ["analytics:flowMetrics:view"],
        ]
        status, body = await subscribe(http, emu, access, channel_id, topics, ignore_errors=True)
        assert status == 200
        assert body["entities"] == [
            {"id": topics[0], "state": "Permitted"},
            {
                "id": topics[1],
                "state": "Rejected",
                "rejectionReason": "Missing permissions",
                "missingPermissions": ["routing:queue:view"],
            },
            {
                "id": topics[2],
                "state": "Rejected",
                "rejectionReason": "Missing permissions",
                "missingPermissions": ["analytics:flowMetrics:view"],
            },
        ]
        assert await topics_of(http, emu, access, channel_id) == [topics[0]]


async def test_flow_metrics_can_be_withheld_from_websockets(emulator_factory, http):
    async with emulator_factory(traffic=False, flow_metrics_websocket=False) as emu:
        access = await token(http, emu)
        channel_id = (await create_channel(http, emu, access))["id"]
        status, body = await subscribe(http, emu, access, channel_id, [FLOW_TOPIC])
        assert status == 400
        assert "not available over WebSocket" in body["message"]
        _, catalogue = await get_json(
            http, emu, access, f"{NOTIFICATIONS}/availabletopics", expand="transports"
        )
        transports = {e["id"]: e["transports"] for e in catalogue["entities"]}
        assert transports["v2.analytics.flow.{id}.metrics"] == ["EventBridge"]
        assert transports["v2.routing.queues.{id}.conversations"] == ["All"]


async def test_available_topics_catalogue(emulator, http):
    access = await token(http, emulator)
    path = f"{NOTIFICATIONS}/availabletopics"
    expand = "schema,transports,requiresPermissions,topicParameters"
    status, catalogue = await get_json(http, emulator, access, path, expand=expand)
    assert status == 200
    entries = {e["id"]: e for e in catalogue["entities"]}
    assert len(entries) == 10
    assert not any(pattern.startswith("v2.system") for pattern in entries)
    flow_start = entries["v2.detail.events.conversation.{id}.flow.start"]
    assert flow_start["requiresPermissions"] == ["analytics:conversationDetail:view"]
    assert flow_start["transports"] == ["All"]
    assert flow_start["topicParameters"] == ["conversationId"]
    assert flow_start["schema"]["title"] == "FlowStartDetailEventTopicFlowStartEvent"
    assert entries["v2.routing.queues.{id}.conversations"]["topicParameters"] == ["queueId"]
    _, bare = await get_json(http, emulator, access, path)
    assert all("transports" not in e and e["description"] for e in bare["entities"])


# -- the socket ----------------------------------------------------------------------------------


async def test_ping_gets_pong(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    async with http.ws_connect(channel["connectUri"]) as ws:
        await ws.send_str("not json")  # ignored
        await ws.send_json({"message": "ping"})
        assert await receive_json(ws) == {
            "topicName": "channel.metadata",
            "eventBody": {"message": "pong"},
        }


async def test_a_second_socket_disconnects_the_first(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    async with http.ws_connect(channel["connectUri"]) as first:
        await ping(first)
        async with http.ws_connect(channel["connectUri"]) as second:
            await ping(second)
            await assert_closed(first, 1000)
            await ping(second)
            assert emulator.status()["notifications"]["sockets"] == 1


async def test_heartbeats_follow_the_clock(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)
            await clock.advance(29)
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.05)
            await clock.advance(1)
            assert await receive_json(ws) == HEARTBEAT
            await clock.advance(30)
            assert await receive_json(ws) == HEARTBEAT


async def test_heartbeats_on_the_real_clock(emulator_factory, http):
    async with emulator_factory(traffic=False, heartbeat_interval=0.02) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        async with http.ws_connect(channel["connectUri"]) as ws:
            for _ in range(3):
                assert await receive_json(ws) == HEARTBEAT


async def test_socket_closing_then_close_after_the_grace(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False, socket_closing_grace=60) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)
            assert emu.fire("socket_closing")["sockets"] == 1
            notice = await receive_json(ws)
            assert notice["topicName"] == "v2.system.socket_closing"
            assert notice["version"] == "2"
            assert notice["eventBody"] == {"message": "Socket closing for maintenance"}
            uuid.UUID(notice["metadata"]["CorrelationId"])
            await clock.advance(59)
            await ping(ws)
            await clock.advance(1)
            await assert_closed(ws, 1001)
        assert await channel_status(http, emu, access, channel["id"]) == 200
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)


async def test_stall_silences_heartbeats_and_pongs(emulator_factory, http):
    clock = FakeClock()
    async with emulator_factory(clock=clock, traffic=False) as emu:
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)
            await clock.advance(30)
            assert await receive_json(ws) == HEARTBEAT
            emu.fire("stall")
            await clock.advance(30)
            await ws.send_json({"message": "ping"})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.1)


async def test_malformed_frames_of_every_kind(emulator_factory, http):
    async with emulator_factory(traffic=False) as emu:
        emu.set_faults(oversized_bytes=5_000)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)
            assert emu.fire("malformed")["frames"] == 5
            invalid_json = await ws.receive(timeout=3)
            with pytest.raises(msgspec.DecodeError):
                msgspec.json.decode(invalid_json.data)
            assert (await ws.receive(timeout=3)).type == aiohttp.WSMsgType.BINARY
            assert "topicName" not in await receive_json(ws)
            assert isinstance((await receive_json(ws))["eventBody"], str)
            oversized = await ws.receive(timeout=3)
            assert len(oversized.data) > 5_000
    with pytest.raises(ValueError, match="unknown malformed kind"):
        make_malformed("nonsense", 10)


# -- events --------------------------------------------------------------------------------------


async def test_flow_metrics_events_match_the_traffic(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        facts = collect_facts(emu)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        assert (await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC]))[0] == 200
        async with http.ws_connect(channel["connectUri"]) as ws:
            events = await receive_events(ws, 20)
        expected = expected_bodies(facts)
        for event in events:
            assert event["topicName"] == FLOW_TOPIC
            assert event["eventBody"]["flowId"] == FLOWS[0].id
            assert_event(event, expected)
        correlation_ids = {e["metadata"]["CorrelationId"] for e in events}
        assert len(correlation_ids) == 20


async def test_detail_events_for_a_discovered_conversation(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        facts = collect_facts(emu)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC])
        async with http.ws_connect(channel["connectUri"]) as ws:
            while True:
                (event,) = await receive_events(ws, 1)
                if event["eventBody"]["metric"] == "nFlow":
                    break
            conversation = event["eventBody"]["conversationId"]
            topics = combine(conversation_topics(conversation))
            assert len(topics) == 1
            status, _ = await subscribe(http, emu, access, channel["id"], topics)
            assert status == 200
            details = []
            last_kinds = (".flow.end", ".customer.end")  # customer.end: flow.end came too soon
            async with asyncio.timeout(8):
                while not details or not details[-1]["topicName"].endswith(last_kinds):
                    (event,) = await receive_events(ws, 1)
                    if event["topicName"].startswith("v2.detail."):
                        details.append(event)
        expected = expected_bodies(facts)
        prefix = f"v2.detail.events.conversation.{conversation}."
        for event in details:
            assert event["topicName"].startswith(prefix)
            assert event["eventBody"]["conversationId"] == conversation
            assert_event(event, expected)


async def test_queue_conversation_snapshots(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        facts = collect_facts(emu)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        queue_topics = [queue_topic(q.id) for q in QUEUES]
        assert (await subscribe(http, emu, access, channel["id"], queue_topics))[0] == 200
        async with http.ws_connect(channel["connectUri"]) as ws:
            events = await receive_events(ws, 10)
        expected = expected_bodies(facts)
        for event in events:
            assert event["topicName"] in queue_topics
            purposes = {p["purpose"] for p in event["eventBody"]["participants"]}
            assert {"customer", "ivr", "acd"} <= purposes
            assert_event(event, expected)


async def test_events_while_no_socket_is_open_are_lost(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        facts = collect_facts(emu)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC])
        async with http.ws_connect(channel["connectUri"]) as ws:
            await receive_events(ws, 3)
        gap_start = len(facts)
        gap_filled = asyncio.Event()
        emu.world.subscribe(lambda _: len(facts) >= gap_start + 100 and gap_filled.set())
        await asyncio.wait_for(gap_filled.wait(), 5)
        gap = facts[gap_start : len(facts)]
        gap_records = {
            body["recordId"]
            for fact in gap
            for topic, body in notifications_for(fact)
            if topic == FLOW_TOPIC
        }
        assert gap_records  # the gap had events for this topic
        async with http.ws_connect(channel["connectUri"]) as ws:
            events = await receive_events(ws, 10)
        assert not {e["eventBody"]["recordId"] for e in events} & gap_records


async def test_frame_faults_apply_to_events(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        emu.set_faults(duplicate=1.0)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC])
        async with http.ws_connect(channel["connectUri"]) as ws:
            await ping(ws)  # control frames are never duplicated
            events = await receive_events(ws, 20)
        assert events[0::2] == events[1::2]
        duplicates = list(emu.ledger.entries("sent", dialect="notifications", fault="duplicate"))
        assert len(duplicates) >= 10
        assert all(d["topic"] == FLOW_TOPIC for d in duplicates)


async def test_drop_after_aborts_the_socket(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        emu.set_faults(drop_after=3)
        access = await token(http, emu)
        channel = await create_channel(http, emu, access)
        await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC])
        async with http.ws_connect(channel["connectUri"]) as ws:
            await receive_events(ws, 3)
            msg = await ws.receive(timeout=3)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# -- secrets and statistics ----------------------------------------------------------------------


async def test_the_ledger_never_holds_a_channel_id(emulator_factory, http):
    async with emulator_factory(rate=50, time_scale=100) as emu:
        access = await token(http, emu)
        channels = [await create_channel(http, emu, access) for _ in range(3)]
        for channel in channels:
            await subscribe(http, emu, access, channel["id"], [FLOW_TOPIC])
        async with http.ws_connect(channels[0]["connectUri"]) as first:
            await ping(first)
            async with http.ws_connect(channels[0]["connectUri"]) as second:
                await receive_events(second, 3)
                await assert_closed(first)
                emu.fire("evict_channel")
                emu.fire("socket_closing")
                emu.fire("revoke_tokens")
        async with http.ws_connect(channels[0]["connectUri"]) as dead:
            assert (await receive_json(dead))["result"] == "404"
        async with http.get(f"{emu.base_url}/emulator/ledger") as resp:
            ledger = await resp.text()
        status = msgspec.json.encode(emu.status()).decode()
        assert '"kind":"channel"' in ledger
        assert "ch-" in ledger
        for channel in channels:
            secret = channel["id"].removeprefix("streaming-0-")
            assert secret not in ledger
            assert secret not in status


async def test_statistics(emulator, http):
    access = await token(http, emulator)
    channel = await create_channel(http, emulator, access)
    await create_channel(http, emulator, access)
    await subscribe(http, emulator, access, channel["id"], conversation_topics(CONV))
    async with http.ws_connect(channel["connectUri"]) as ws:
        await ping(ws)
        stats = emulator.status()["notifications"]
    assert stats["channels"] == 2
    assert stats["sockets"] == 1
    assert stats["subscribedTopics"] == 8
    assert stats["channelsByClient"] == {"demo-client": 2}
    assert sorted(stats["topicsByChannel"].values()) == [0, 8]
