"""One ground truth: what a live socket missed is exactly what analytics gives back."""

import asyncio

from ivrstream.isotime import format_interval
from tests.emulator.client import bearer, open_stream, read_events, token


async def query_all(http, emu, access_token: str, start_ms: int, end_ms: int) -> list[dict]:
    conversations: list[dict] = []
    page = 1
    while True:
        body = {
            "interval": format_interval(start_ms, end_ms),
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": {"pageSize": 100, "pageNumber": page},
        }
        async with http.post(
            f"{emu.base_url}/api/v2/analytics/conversations/details/query",
            json=body,
            headers=bearer(access_token),
        ) as resp:
            assert resp.status == 200, await resp.text()
            result = await resp.json()
        batch = result.get("conversations", [])
        conversations.extend(batch)
        if len(batch) < 100:
            return conversations
        page += 1


async def test_conversations_a_socket_missed_are_in_analytics_with_the_same_facts(
    emulator_factory, http
):
    async with emulator_factory(rate=100, time_scale=600) as emu:
        access_token = await token(http, emu)
        ws, _ = await open_stream(http, emu, access_token)
        before = await read_events(ws, 20)
        await ws.close()
        await asyncio.sleep(0.3)  # events happen while nobody listens
        ws, ack = await open_stream(http, emu, access_token)  # no resumeAfter: the gap stays
        after = (await read_events(ws, 1))[0]
        await ws.close()
        missed = range(before[-1]["sequenceId"] + 1, after["sequenceId"])
        assert len(missed) > 10
        assigned = {
            e["seq"]: e for e in emu.ledger.entries("assigned", subscription=ack["subscriptionId"])
        }
        missed_conversations = {assigned[seq]["conversationId"] for seq in missed}

        now_ms = round(emu.clock.time() * 1000)
        found = await query_all(http, emu, access_token, emu.world.started_ms - 1, now_ms)
        by_id = {c["conversationId"]: c for c in found}
        assert missed_conversations <= set(by_id)
        assert len(by_id) == len(found)  # each conversation once
        # the same call, the same facts: flow, caller and start time agree with the stream
        calls = {c.conversation_id: c for c in emu.world.calls}
        for conversation_id in missed_conversations:
            call = calls[conversation_id]
            conversation = by_id[conversation_id]
            (customer,) = [p for p in conversation["participants"] if p["purpose"] == "customer"]
            assert customer["sessions"][0]["ani"] == call.ani
            ivr = [p for p in conversation["participants"] if p["purpose"] == "ivr"]
            if ivr:
                assert ivr[0]["sessions"][0]["flow"]["flowId"] == call.flow.id
        started = emu.world.calls_started_between(emu.world.started_ms - 1, now_ms)
        assert {c.conversation_id for c in started} <= set(by_id) <= set(calls)
