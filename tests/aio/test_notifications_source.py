"""The Notifications source against the emulator: hours of traffic, every kind of trouble,
and a journal that ends up with every IVR conversation, each event once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ivrstream.aio.subscriber import Subscriber
from ivrstream.clock import ScaledClock
from ivrstream.config import Config
from ivrstream.emulator.server import Emulator
from ivrstream.identity import event_id
from ivrstream.journal import open_journal
from tests.aio.support import es_config, journal_events, until

REBUILDABLE = {"customer.start", "flow.start", "flow.end", "acd.start", "acd.end", "customer.end"}
SPEED = 360.0  # clock seconds per real second: two hours in twenty seconds


def notifications_config(emu: Emulator, journal: Path, **notifications: Any) -> Config:
    return es_config(
        emu,
        journal,
        source="notifications",
        reconnect={"base": 1.0, "cap": 10.0, "stable_after": 30.0},
        # at SPEED, 60 clock seconds are 0.17 s: room for a busy event loop before a ping fails
        notifications={"heartbeat_timeout": 90.0, "pong_timeout": 60.0, **notifications},
        backfill={"settle": 60.0, "check_every": 60.0, "lookback": 900.0},
    )


async def clock_until(clock: ScaledClock, moment: float) -> None:
    await clock.sleep(max(0.0, moment - clock.time()))


def fact_ids(emu: Emulator, *, ended_by_ms: int, started_from_ms: int) -> dict[str, str]:
    """Event id → kind for every fact of every call that started at or after
    ``started_from_ms`` and ended by ``ended_by_ms``."""
    out: dict[str, str] = {}
    for call in emu.world.calls:
        if call.start_ms < started_from_ms or call.facts[-1].time_ms > ended_by_ms:
            continue
        for fact in call.facts:
            out[event_id(call.conversation_id, fact.kind, fact.time_ms)] = fact.kind
    return out


def every_fact_id(emu: Emulator) -> set[str]:
    return {
        event_id(call.conversation_id, fact.kind, fact.time_ms)
        for call in emu.world.calls
        for fact in call.facts
    }


async def test_two_hours_with_drops_stalls_closings_expiry_eviction_and_429s(
    emulator_factory, tmp_path
):
    clock = ScaledClock(SPEED)
    async with emulator_factory(clock=clock, rate=0.3, time_scale=10.0) as emu:
        journal = tmp_path / "j.db"
        started_ms = round(clock.time() * 1000)
        schedule: list[tuple[float, str]] = [
            (600, "drop"),
            (1_200, "stall"),
            (1_800, "socket_closing"),
            (2_400, "expire_channels"),
            (3_000, "evict_channel"),
            (3_600, "rate_limit"),
            (4_800, "drop"),
            (6_000, "socket_closing"),
        ]
        begin = clock.time()
        async with Subscriber(notifications_config(emu, journal), clock=clock) as sub:
            for at, action in schedule:
                await clock_until(clock, begin + at)
                if action == "rate_limit":
                    emu.set_faults(analytics_rate_limited=4, analytics_errors=2, retry_after=5)
                else:
                    emu.fire(action)
            await clock_until(clock, begin + 7_200)
            end_ms = round(clock.time() * 1000)
            source = sub.source
            assert source is not None
            # the sweep passes the end of the traffic we check, and every gap is closed
            await until(
                lambda: (source.swept_until_ms or 0) >= end_ms - 600_000,
                within=60,
            )

            def gaps_closed() -> bool:
                with open_journal(journal) as j:
                    return all(g.state != "open" for g in j.gaps())

            await until(gaps_closed, within=60, step=0.1)
            stats = sub.statistics()

        events = journal_events(journal)
        ids = [e["event_id"] for e in events]
        assert len(ids) == len(set(ids)), "an event was journaled twice"
        checked_until = end_ms - 600_000
        want = fact_ids(emu, ended_by_ms=checked_until, started_from_ms=started_ms + 60_000)
        assert len({i for i, k in want.items() if k == "customer.start"}) > 1_000
        have = set(ids)
        missing = Counter(kind for i, kind in want.items() if kind in REBUILDABLE and i not in have)
        assert not missing, f"events missing from the journal: {dict(missing)}"
        # every journaled event is one the emulator generated: no copies under other ids
        assert have <= every_fact_id(emu)
        # live where the sockets delivered, analytics for the rest
        sources = Counter(e["source"] for e in events)
        assert sources["notifications"] > 0
        assert sources["backfill"] > 0

        with open_journal(journal) as j:
            gaps = j.gaps()
        # every interruption was recorded (none hidden) and closed by the backfill
        assert len(gaps) >= 6, [g.note for g in gaps]
        assert all(g.state in ("filled", "partly_filled") for g in gaps)
        assert all(g.closed_at is not None for g in gaps)
        slots = stats["source"]["slots"].values()
        assert sum(s["stalls"] for s in slots) >= 1
        assert sum(s["socket_closing_notices"] for s in slots) >= 2
        assert sum(s["channels_lost"] for s in slots) >= 2
        # every interruption is named by its cause (metrics: ivrstream_reconnects_total{reason})
        reasons = stats["source"]["reconnects"]
        assert {"stalled", "socket closing", "channel gone"} <= set(reasons), reasons


async def test_statistics_show_coverage(emulator_factory, tmp_path):
    clock = ScaledClock(SPEED)
    async with emulator_factory(clock=clock, rate=0.3, time_scale=10.0) as emu:
        config = notifications_config(emu, tmp_path / "j.db")
        async with Subscriber(config, clock=clock) as sub:
            t0 = time.monotonic()
            await until(lambda: sub.intake.stats.committed > 50, within=30)
            stats = sub.statistics()["source"]
            assert time.monotonic() - t0 < 30
        coverage = stats["coverage"]
        assert coverage["discovered"] > 0
        assert coverage["discovered"] == (
            coverage["covered_total"]
            + coverage["seen_after_end"]
            + coverage["over_budget"]
            + coverage["rejected"]
        )
        assert stats["planner"]["channels"] >= 1
        await asyncio.sleep(0)


async def test_without_flow_metrics_on_websocket_the_discovery_poll_finds_calls(
    emulator_factory, tmp_path
):
    """Where the catalogue says flow metrics do not reach a socket, conversations in progress
    are found by polling analytics, and their later events still arrive live."""
    clock = ScaledClock(SPEED)
    async with emulator_factory(
        clock=clock, rate=0.3, time_scale=5.0, flow_metrics_websocket=False
    ) as emu:
        config = notifications_config(
            emu,
            tmp_path / "j.db",
            discovery_interval=30.0,
        )
        async with Subscriber(config, clock=clock) as sub:
            source = sub.source
            assert source is not None
            await until(lambda: source.discovered_by_poll >= 20, within=30)
            await until(lambda: sub.intake.stats.committed > 100, within=30)
            stats = source.statistics()
        assert stats["flow_metrics_over_websocket"] is False
        assert stats["planner"]["topics"] < 1_000
        live = [e for e in journal_events(tmp_path / "j.db") if e["source"] == "notifications"]
        assert live, "covered conversations deliver their later events live"
