"""The subscriber against the emulator over real sockets: every event once, in order."""

from __future__ import annotations

import asyncio

import pytest

from ivrstream.aio.eventstreams import EventStreamsSource
from ivrstream.aio.subscriber import Subscriber
from ivrstream.clock import ScaledClock
from ivrstream.emulator.config import ClientSpec
from ivrstream.errors import GiveUp, InvalidClient, MissingScope, SubscriptionRejected
from ivrstream.identity import event_id
from ivrstream.journal import open_journal
from tests.aio.support import (
    FAST_TRAFFIC,
    assert_matches_ledger,
    committed,
    es_config,
    journal_events,
    until,
)


async def test_every_event_once_in_sequence_order(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        async with Subscriber(es_config(emu, journal)) as sub:
            await committed(sub, 1_000)
        report = assert_matches_ledger(journal, emu)
        assert report["first"] == 1
        assert report["missing"] == 0
        assert report["events"] >= 1_000


async def test_iterating_yields_committed_events_in_journal_order(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        async with Subscriber(es_config(emu, journal)) as sub:
            seen = []
            async for event in sub:
                seen.append(event)
                if len(seen) == 300:
                    break
            assert [e.sequence_id for e in seen] == list(range(1, 301))
            assert all(e.source == "eventstreams" for e in seen)
            assert {e.event_type for e in seen} <= {
                "flow.start",
                "flow.end",
                "flow.outcome",
                "attributes",
                "acd.start",
                "acd.end",
                "customer.end",
            }


async def test_drops_duplicates_reorders_and_malformed_frames_lose_nothing(
    emulator_factory, tmp_path
):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(
            drop_after=250,
            duplicate=0.03,
            reorder=0.03,
            malformed=0.01,
            oversized_bytes=2_000_000,
        )
        journal = tmp_path / "j.db"
        async with Subscriber(es_config(emu, journal)) as sub:
            await committed(sub, 2_500, within=30)
            stats = sub.statistics()
        report = assert_matches_ledger(journal, emu)
        assert report["missing"] == 0
        streams = stats["intake"]["streams"].values()
        assert sum(s["duplicate"] for s in streams) > 0
        assert sum(s["early"] for s in streams) > 0
        assert stats["source"]["connections"] >= 8
        with open_journal(journal) as j:
            reasons = {q["reason"].split(":")[0] for q in j.quarantined(1_000)}
            raw = j.quarantined(1_000, with_raw=True)
        assert {"invalid JSON", "invalid MessagePack", "invalid event"} <= reasons
        assert any(r.startswith("frame is ") for r in (q["reason"] for q in raw))
        sent_malformed = [
            e for e in emu.ledger.entries("sent") if e.get("fault", "").startswith("malformed")
        ]
        assert len(raw) >= 0.9 * len(sent_malformed) > 0
        assert all(len(q["raw"]) == q["size"] for q in raw)


async def test_a_forgotten_resend_buffer_leaves_an_open_gap_not_a_hidden_one(
    emulator_factory, tmp_path
):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        gaps_seen = []
        async with Subscriber(es_config(emu, journal)) as sub:
            sub.on("gap", lambda **gap: gaps_seen.append(gap))
            await committed(sub, 300)
            # the socket goes quiet while events happen, the server forgets them, the socket
            # drops: resuming cannot bring them back
            emu.fire("stall")
            await asyncio.sleep(0.1)
            emu.fire("lose_buffer")
            emu.fire("drop")
            await until(lambda: bool(gaps_seen))
            before = sub.intake.stats.committed
            await committed(sub, before + 300)
        report = assert_matches_ledger(journal, emu)
        assert report["missing"] > 0
        (gap,) = [g for g in report["gaps"] if g.state == "open"]
        assert gap.resend_requested
        assert gap.time_from is not None
        assert gap.time_to is not None
        assert gap.time_from <= gap.time_to
        assert gaps_seen[0]["first"] == gap.first_seq


async def test_token_expiry_mid_stream_costs_nothing(emulator_factory, tmp_path):
    clock = ScaledClock(20)  # token lifetimes in clock seconds, 20x faster than real
    async with emulator_factory(clock=clock, token_ttl=30, rate=10, time_scale=100) as emu:
        journal = tmp_path / "j.db"
        async with Subscriber(es_config(emu, journal), clock=clock) as sub:
            await until(lambda: sub.tokens is not None and sub.tokens.refreshes >= 3, within=20)
            emu.fire("revoke_tokens")  # and once the hard way: 4001 on the open socket
            await until(lambda: sub.source.endings.get("token", 0) >= 1)
            count = sub.intake.stats.committed
            await committed(sub, count + 200)
            endings = dict(sub.source.endings)
        report = assert_matches_ledger(journal, emu)
        assert report["missing"] == 0
        assert endings.get("token", 0) >= 1
        assert emu.ledger.counts["token_issued"] >= 4


async def test_a_stalled_socket_is_replaced_by_the_idle_watchdog(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(stall_after=150)
        journal = tmp_path / "j.db"
        config = es_config(emu, journal, eventstreams={"idle_timeout": 0.3})
        async with Subscriber(config) as sub:
            await until(lambda: sub.source.endings.get("idle", 0) >= 2)
            emu.set_faults(stall_after=None)
            count = sub.intake.stats.committed
            await committed(sub, count + 200)
        assert assert_matches_ledger(journal, emu)["missing"] == 0


async def test_schema_evolution_fields_are_kept_and_counted(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC, schema_evolution_share=0.3) as emu:
        journal = tmp_path / "j.db"
        fields = []
        async with Subscriber(es_config(emu, journal)) as sub:
            sub.on("schema_field", lambda name: fields.append(name))
            await committed(sub, 400)
            counts = sub.statistics()["intake"]["schema_fields"]
        events = journal_events(journal)
        evolved = [e for e in events if e["extra"]]
        assert 60 <= len(evolved) <= 200
        assert set(fields) == set(counts)
        assert len(fields) == len(set(fields))  # each new name announced once
        assert set().union(*(e["extra"] for e in evolved)) == set(fields)


async def test_4003_stops_with_a_clear_error(emulator_factory, tmp_path):
    async with emulator_factory(traffic=False) as emu:
        emu.set_faults(forbid_subscriptions=True)
        async with Subscriber(es_config(emu, tmp_path / "j.db")) as sub:
            with pytest.raises(SubscriptionRejected, match="4003"):
                await asyncio.wait_for(sub.wait(), 10)
        assert emu.ledger.fault_counts["forbid_subscriptions"] == 1  # not retried


async def test_4029_backs_off_and_gives_up_after_max_attempts(emulator_factory, tmp_path):
    async with emulator_factory(traffic=False, max_connections=0) as emu:
        config = es_config(emu, tmp_path / "j.db", reconnect={"max_attempts": 4})
        given_up = []
        reconnecting = []
        async with Subscriber(config) as sub:
            sub.on("max_reconnects", lambda **kw: given_up.append(kw))
            sub.on("reconnecting", lambda **kw: reconnecting.append(kw))
            with pytest.raises(GiveUp, match="4 reconnect attempts"):
                await asyncio.wait_for(sub.wait(), 10)
        assert [r["reason"] for r in reconnecting] == ["quota"] * 4
        assert given_up == [{"attempts": 5, "reason": "quota"}]
        assert emu.ledger.fault_counts["connection_quota"] == 5


async def test_bad_credentials_name_the_client(emulator_factory, tmp_path):
    async with emulator_factory(traffic=False) as emu:
        config = es_config(emu, tmp_path / "j.db", genesys={"client_secret": "wrong-secret"})
        failures = []
        async with Subscriber(config) as sub:
            sub.on("auth_failed", lambda error: failures.append(error))
            with pytest.raises(InvalidClient, match="demo-client") as info:
                await asyncio.wait_for(sub.wait(), 10)
        assert "wrong-secret" not in str(info.value)
        assert failures


async def test_a_token_without_view_interaction_is_refused_with_403(emulator_factory, tmp_path):
    narrow = ClientSpec(client_id="narrow", secret="narrow-secret", scopes=("analytics",))
    async with emulator_factory(traffic=False, clients=[narrow]) as emu:
        config = es_config(
            emu,
            tmp_path / "j.db",
            genesys={"client_id": "narrow", "client_secret": "narrow-secret"},
        )
        async with Subscriber(config) as sub:
            with pytest.raises(MissingScope, match="view:interaction"):
                await asyncio.wait_for(sub.wait(), 10)


async def test_restart_resumes_after_the_last_journaled_event(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        async with Subscriber(es_config(emu, journal)) as sub:
            await committed(sub, 200)
        await asyncio.sleep(0.1)  # events go on while we are away
        resumed = []
        async with Subscriber(es_config(emu, journal)) as sub:
            sub.on("subscribed", lambda **kw: resumed.append(kw["resume_after"]))
            await committed(sub, 200)
        with open_journal(journal) as j:
            first_high = j.count()
        assert resumed[0] is not None
        report = assert_matches_ledger(journal, emu)
        assert report["missing"] == 0
        assert first_high > 400


async def test_clean_stop_closes_with_1000(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        async with Subscriber(es_config(emu, tmp_path / "j.db")) as sub:
            await committed(sub, 50)
        assert EventStreamsSource.open_sockets == 0
        closes = [e for e in emu.ledger.entries("connection", event="closed")]
        await until(
            lambda: any(e["code"] == 1000 for e in emu.ledger.entries("connection", event="closed"))
        )
        assert closes is not None


async def test_gaps_beyond_the_window_are_resent_and_filled(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(skip=0.005)  # a frame now and then never arrives on the socket
        journal = tmp_path / "j.db"
        config = es_config(emu, journal, ordering={"window_seconds": 0.05})
        async with Subscriber(config) as sub:
            await committed(sub, 1_500, within=30)
            emu.set_faults(skip=0.0)
            count = sub.intake.stats.committed
            await committed(sub, count + 200)
            stats = sub.statistics()
        report = assert_matches_ledger(journal, emu)
        (stream,) = stats["intake"]["streams"].values()
        assert stream["gaps_opened"] > 0
        assert stream["late"] > 0  # frames that filled gaps were kept, not dropped
        assert stats["source"]["endings"].get("resend", 0) > 0
        assert report["missing"] == 0
        assert all(g.state == "filled" for g in report["gaps"])
        recovered = [e for e in journal_events(journal) if e["recovered"]]
        assert recovered


async def test_the_jwt_bearer_grant_end_to_end(emulator_factory, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "client.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client = ClientSpec(client_id="jwt-client", secret="unused", jwt_public_key=public)
    async with emulator_factory(clients=[client], **FAST_TRAFFIC) as emu:
        config = es_config(
            emu,
            tmp_path / "j.db",
            genesys={
                "client_id": "jwt-client",
                "client_secret": None,
                "grant": "jwt",
                "jwt_private_key_file": str(private),
            },
        )
        async with Subscriber(config) as sub:
            await committed(sub, 100)
        assert emu.ledger.counts["token_issued"] == 1
        assert not list(emu.ledger.entries("auth_failure"))


async def test_a_flood_faster_than_the_disk_meets_backpressure_not_memory_growth(
    emulator_factory, tmp_path, monkeypatch
):
    import time

    from ivrstream.journal import JournalWriter

    original = JournalWriter._apply

    def slow_disk(self, batches):
        time.sleep(0.01)  # every commit takes 10 ms longer: the disk cannot keep up
        return original(self, batches)

    monkeypatch.setattr(JournalWriter, "_apply", slow_disk)
    async with emulator_factory(traffic=False, fast_frames=20_000, fast_batch=256) as emu:
        config = es_config(emu, tmp_path / "j.db")
        config.journal.max_pending = 500
        async with Subscriber(config) as sub:
            intake = sub.intake
            peak = [0]
            flush = intake.flush

            def watched_flush():
                flush()
                peak[0] = max(peak[0], intake.statistics()["inflight"])

            monkeypatch.setattr(intake, "flush", watched_flush)
            await committed(sub, 20_000, within=60)
        assert peak[0] <= 500 + intake.flush_threshold
        assert intake.stats.committed == 20_000


async def test_a_gap_the_server_cannot_resend_is_filled_from_analytics(emulator_factory, tmp_path):
    """Event Streams: after the server had its chance to re-send, backfill rebuilds the missing
    events from analytics, with the ids the live frames would have had, and closes the gap."""
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        config = es_config(
            emu,
            journal,
            backfill={"settle": 0.3, "resend_grace": 0.2, "check_every": 0.2, "lookback": 5.0},
        )
        closed = []
        async with Subscriber(config) as sub:
            sub.on("gap_closed", lambda **gap: closed.append(gap))
            await committed(sub, 300)
            emu.fire("stall")
            await asyncio.sleep(0.1)
            emu.fire("lose_buffer")
            emu.fire("drop")
            await until(lambda: any(g.get("filled") is not None for g in closed), within=30)
        with open_journal(journal) as j:
            (gap,) = [g for g in j.gaps() if g.closed_at is not None]
        assert gap.state in ("filled", "partly_filled")
        assert gap.filled > 0
        events = journal_events(journal)
        have = {e["event_id"] for e in events}
        # the frames the server lost, as the ledger knows them: every rebuildable one is back
        lost = [
            e
            for e in emu.ledger.entries("assigned")
            if gap.first_seq <= e["seq"] <= (gap.last_seq or 0)
        ]
        assert lost
        facts = {f.fact_id: f for call in emu.world.calls for f in call.facts}
        rebuildable = {
            "customer.start",
            "flow.start",
            "flow.end",
            "acd.start",
            "acd.end",
            "customer.end",
        }
        wanted = [facts[e["fact"]] for e in lost if facts[e["fact"]].kind in rebuildable]
        assert wanted
        for fact in wanted:
            assert event_id(fact.conversation_id, fact.kind, fact.time_ms) in have
        assert any(e["source"] == "backfill" for e in events)
