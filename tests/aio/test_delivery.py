"""End to end: emulator → subscriber → journal → webhook, PostgreSQL, NATS and JSON lines."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from ivrstream.aio.subscriber import Subscriber
from ivrstream.journal import open_journal
from ivrstream.receiver import Receiver
from tests.aio.sinks_support import (
    delete_stream,
    journal_index,
    jsonl_ids,
    nats_ids,
    postgres_ids,
    receiver_ids,
)
from tests.aio.support import (
    FAST_TRAFFIC,
    assert_matches_ledger,
    committed,
    es_config,
    journal_events,
    until,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST_RETRIES = {"retry_base": 0.02, "retry_cap": 0.2, "max_attempts": 50}


def caught_up(sub: Subscriber) -> bool:
    return all(d.position >= sub.intake.last_pos for d in sub.dispatchers)


async def drained(sub: Subscriber, within: float = 30) -> None:
    """Wait until nothing more arrives (the emulator is paused) and every sink has it all."""
    seen = -1
    while True:
        await until(lambda: caught_up(sub), within=within)
        await asyncio.sleep(0.1)
        if sub.intake.stats.frames == seen and caught_up(sub):
            return
        seen = sub.intake.stats.frames


async def test_every_event_reaches_every_sink_once_in_conversation_order(
    emulator_factory, tmp_path, postgres_dsn, nats_url
):
    stream = f"IVR_{uuid.uuid4().hex[:8].upper()}"
    prefix = f"t{uuid.uuid4().hex[:8]}.events"
    async with (
        emulator_factory(**FAST_TRAFFIC) as emu,
        Receiver(secret=SECRET, db=tmp_path / "received.db") as receiver,
    ):
        emu.set_faults(drop_after=400, duplicate=0.02, reorder=0.02)
        journal = tmp_path / "j.db"
        config = es_config(
            emu,
            journal,
            sinks={
                "webhook": {"url": receiver.url, "secret": SECRET, **FAST_RETRIES},
                "postgres": {"dsn": postgres_dsn, **FAST_RETRIES},
                "nats": {
                    "servers": [nats_url],
                    "stream": stream,
                    "subject_prefix": prefix,
                    **FAST_RETRIES,
                },
                "jsonl": {"path": str(tmp_path / "events.jsonl"), **FAST_RETRIES},
            },
        )
        try:
            async with Subscriber(config) as sub:
                await committed(sub, 2_000, within=30)
                emu.world.paused = True
                await drained(sub)
                stats = sub.statistics()["sinks"]
                shared = sub.tail.hits
            assert_matches_ledger(journal, emu)
            events = journal_events(journal)
            expected = {e["event_id"] for e in events}
            position, conversation = journal_index(events)
            stores = [
                await receiver_ids(receiver),
                jsonl_ids(tmp_path / "events.jsonl"),
                await postgres_ids(postgres_dsn),
                await nats_ids(nats_url, stream),
            ]
        finally:
            await delete_stream(nats_url, stream)
    for stored in stores:
        stored.assert_once_each(expected)
        if stored.name != "postgres":  # PostgreSQL keeps no arrival order to check
            stored.assert_conversation_order(position, conversation)
    assert all(s["dead_lettered"] == 0 for s in stats.values())
    assert shared > 0  # sinks that keep up share one read of the newest events
    with open_journal(journal) as j:
        assert set(j.cursors()) == {"webhook", "postgres", "nats", "jsonl"}


async def test_a_receiver_outage_costs_nothing_and_slows_nobody_else(emulator_factory, tmp_path):
    async with (
        emulator_factory(**FAST_TRAFFIC) as emu,
        Receiver(secret=SECRET, db=tmp_path / "received.db") as receiver,
    ):
        journal = tmp_path / "j.db"
        config = es_config(
            emu,
            journal,
            sinks={
                "webhook": {"url": receiver.url, "secret": SECRET, **FAST_RETRIES},
                "jsonl": {"path": str(tmp_path / "events.jsonl")},
            },
        )
        async with Subscriber(config) as sub:
            await committed(sub, 300)
            webhook, jsonl = sub.dispatchers
            receiver.set_faults(fail_rate=1.0, status=503)
            before = sub.intake.stats.committed
            await until(lambda: webhook.stats.retries >= 3)
            receiver.set_faults(fail_rate=1.0, status=429, retry_after=0)
            await until(lambda: webhook.stats.retries >= 6)
            stuck_at = webhook.position
            # meanwhile intake and the other sink go on
            await until(lambda: sub.intake.stats.committed > before + 200)
            await until(lambda: jsonl.position >= before + 200)
            assert webhook.position == stuck_at
            receiver.set_faults(fail_rate=0.0)
            emu.world.paused = True
            await drained(sub)
        injected = receiver.stats()["injected_by_cause"]
        events = journal_events(journal)
        stored = await receiver_ids(receiver)
    stored.assert_once_each({e["event_id"] for e in events})
    assert sum(injected.values()) >= 6
    assert webhook.stats.dead_lettered == 0


async def test_a_poison_event_is_dead_lettered_and_the_rest_flow_on(emulator_factory, tmp_path):
    accepted: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        events = await request.json()
        if any(e["sequence_id"] == 25 for e in events):  # this one event is never accepted
            return web.json_response({"error": "unprocessable"}, status=422)
        accepted.extend(e["event_id"] for e in events)
        return web.json_response({"received": len(events)})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with emulator_factory(**FAST_TRAFFIC) as emu:
            journal = tmp_path / "j.db"
            config = es_config(emu, journal, sinks={"webhook": {"url": url, "lanes": 2}})
            async with Subscriber(config) as sub:
                await committed(sub, 200)
                emu.world.paused = True
                await drained(sub)
        with open_journal(journal) as j:
            letters = j.dead_letters("webhook")
    finally:
        await runner.cleanup()
    events = journal_events(journal)
    (poison,) = [e["event_id"] for e in events if e["sequence_id"] == 25]
    assert [d["event_id"] for d in letters] == [poison]
    assert "422" in letters[0]["error"]
    assert sorted(accepted) == sorted(e["event_id"] for e in events if e["event_id"] != poison)
