"""Backfill against the emulator's analytics: windows rebuilt into the journal, once, resumably."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from ivrstream.aio.auth import TokenManager
from ivrstream.aio.intake import Intake
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.runtime import Runtime
from ivrstream.aio.subscriber import grant_for
from ivrstream.backfill import (
    FILLED,
    LOST,
    OPEN,
    PARTLY_FILLED,
    Backfiller,
    closing_state,
    manual_gap,
)
from ivrstream.clock import ScaledClock
from ivrstream.commands.backfill import backfill
from ivrstream.config import Config, endpoints
from ivrstream.emulator.server import Emulator
from ivrstream.hooks import Hooks
from ivrstream.identity import event_id
from ivrstream.isotime import format_ms
from ivrstream.journal import GapRow, open_journal
from ivrstream.normalize import rebuild
from tests.aio.support import es_config, journal_events

HISTORY = 600.0  # seconds of traffic before the emulator starts (analytics only)
REBUILDABLE = {"customer.start", "flow.start", "flow.end", "acd.start", "acd.end", "customer.end"}


def config_for(emu: Emulator, journal: Path, **backfill: Any) -> Config:
    return es_config(emu, journal, backfill={"settle": 60.0, **backfill})


def expected_ids(emu: Emulator, start_ms: int, end_ms: int) -> dict[str, tuple[str, str]]:
    """Event id → (conversation, kind) of every rebuildable fact of the calls started in the
    window that had happened by the emulator's start."""
    out = {}
    for call in emu.world.calls_started_between(start_ms, end_ms):
        for fact in call.facts:
            if fact.kind in REBUILDABLE and fact.time_ms < emu.world.started_ms:
                out[event_id(call.conversation_id, fact.kind, fact.time_ms)] = (
                    call.conversation_id,
                    fact.kind,
                )
    return out


def window(emu: Emulator) -> tuple[int, int]:
    started = emu.world.started_ms
    return started - round(HISTORY * 1000) + 30_000, started - 120_000


async def test_a_window_is_rebuilt_into_the_journal_with_live_ids(emulator_factory, tmp_path):
    async with emulator_factory(history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        report = await backfill(config_for(emu, journal), start_ms, end_ms, dry_run=False)
        want = expected_ids(emu, start_ms, end_ms)
        assert len(want) > 200
        events = journal_events(journal)
        ids = [e["event_id"] for e in events]
        assert len(ids) == len(set(ids))
        # every rebuildable event of every call started in the window, with the live id
        assert want.keys() <= set(ids)
        assert all(e["source"] == "backfill" and e["recovered"] for e in events)
        assert report["state"] == PARTLY_FILLED  # attributes and flow.outcome cannot be rebuilt
        assert set(report["unrebuilt"]) <= {"attributes", "flow.outcome"}
        assert report["inserted"] == len(events)
        with open_journal(journal) as j:
            (gap,) = j.gaps()
        assert gap.state == PARTLY_FILLED
        assert gap.closed_at is not None
        assert gap.filled == len(events)
        assert "not rebuildable from analytics" in (gap.note or "")

        again = await backfill(config_for(emu, journal), start_ms, end_ms, dry_run=False)
        assert again["inserted"] == 0
        assert again["conversations"] == report["conversations"]
        assert len(journal_events(journal)) == len(events)


async def test_a_dry_run_counts_and_writes_nothing(emulator_factory, tmp_path):
    async with emulator_factory(history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        report = await backfill(config_for(emu, journal), start_ms, end_ms, dry_run=True)
        assert report["inserted"] >= len(expected_ids(emu, start_ms, end_ms))
        assert report["dry_run"] is True
        assert journal_events(journal) == []
        with open_journal(journal) as j:
            assert j.gaps() == []


class Harness:
    """A backfiller over its own intake and session, like the service builds it."""

    def __init__(self, config: Config, clock: Any = None) -> None:
        self.config = config
        self.clock = clock or ScaledClock(1.0)
        self.hooks = Hooks()
        self.closed: list[dict[str, Any]] = []
        self.hooks.on("gap_closed", lambda **details: self.closed.append(details))

    async def __aenter__(self) -> Harness:
        config = self.config
        ends = endpoints(config)
        self.session = aiohttp.ClientSession()
        rng = random.Random(7)
        self.tokens = TokenManager(
            grant_for(config, ends.token_url), ends.token_url, self.session, self.clock, rng
        )
        self.intake = Intake(
            config.journal, config.ordering, self.clock, self.hooks, max_frame_bytes=1_000_000
        )
        await self.intake.open()
        self.reader = JournalReader(self.intake.path)
        self.filler = Backfiller(
            config.backfill,
            ends.api_url,
            Runtime(self.tokens, self.session, self.intake, self.clock, rng, self.hooks),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.reader.close()
        await self.tokens.close()
        await self.intake.close()
        await self.session.close()


async def test_an_interrupted_backfill_resumes_from_its_watermark(emulator_factory, tmp_path):
    async with emulator_factory(history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        config = config_for(emu, journal, page_size=10, lookback=0.0)
        gap = manual_gap(start_ms, end_ms, 0)
        async with Harness(config) as h:
            h.intake.record_gaps([gap])
            pages = 0
            interrupted = asyncio.Event()

            def on_progress(progress: Any) -> None:
                nonlocal pages
                pages += 1
                if pages == 3:
                    interrupted.set()

            task = asyncio.ensure_future(h.filler.fill(gap, reader=h.reader, progress=on_progress))
            await interrupted.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await h.intake.wait_idle()
        with open_journal(journal) as j:
            mark = j.backfill_progress(gap.id)
            assert mark is not None
            assert mark.resume_ms > start_ms
            first_part = j.count()
        assert first_part > 0

        async with Harness(config) as h:
            outcome = await h.filler.fill(gap, reader=h.reader)
            await h.intake.wait_idle()
        assert outcome.state == PARTLY_FILLED
        ids = [e["event_id"] for e in journal_events(journal)]
        assert len(ids) == len(set(ids))
        assert expected_ids(emu, start_ms, end_ms).keys() <= set(ids)
        # the second run read only what the first had not (and perhaps the conversation at
        # the watermark again: at-least-once, the journal de-duplicates)
        total = len(emu.world.calls_started_between(start_ms, end_ms))
        read_again = outcome.conversations - mark.conversations
        assert 0 < read_again < total
        assert total <= outcome.conversations <= total + 1


async def test_an_event_streams_gap_is_filled_once_the_server_could_not_resend_it(
    emulator_factory, tmp_path
):
    """A sequence gap of N events the server could not re-send: backfill journals them and
    closes the gap as filled; the service's ordering stops waiting for it."""
    async with emulator_factory(history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        config = config_for(emu, journal, resend_grace=0.0, lookback=0.0)
        # the events of one call, as if they had come over Event Streams and two went missing
        conversation = next(
            c
            for c in emu.world.calls_started_between(start_ms, end_ms)
            if sum(f.kind in REBUILDABLE for f in c.facts) >= 4
        )
        facts = [f for f in conversation.facts if f.kind in REBUILDABLE]
        gap = GapRow(
            id="es-gap-1",
            source="eventstreams",
            stream="es-stream",
            first_seq=11,
            last_seq=12,
            time_from=facts[0].time_ms,
            time_to=facts[-1].time_ms,
            opened_at=0,
            state=OPEN,
            resend_requested=True,
        )
        async with Harness(config) as h:
            h.intake.record_gaps([gap])
            await h.intake.wait_idle()
            (eligible,) = h.filler.eligible([gap], h.clock.time())
            outcome = await h.filler.fill(eligible, reader=h.reader)
            await h.intake.wait_idle()
        assert outcome.state == FILLED
        assert outcome.inserted >= 2
        with open_journal(journal) as j:
            (row,) = j.gaps()
        assert row.state == FILLED
        assert row.missing == []
        assert h.closed
        assert h.closed[0]["state"] == FILLED


async def test_rate_limits_are_waited_out(emulator_factory, tmp_path):
    clock = ScaledClock(50.0)  # Retry-After: 2 s of clock time
    async with emulator_factory(clock=clock, history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        emu.set_faults(analytics_rate_limited=3, analytics_errors=2, retry_after=2)
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        config = config_for(emu, journal, lookback=0.0)
        gap = manual_gap(start_ms, end_ms, 0)
        async with Harness(config, clock) as h:
            outcome = await h.filler.fill(gap, reader=h.reader)
            await h.intake.wait_idle()
        assert outcome.state == PARTLY_FILLED, outcome.error
        assert expected_ids(emu, start_ms, end_ms).keys() <= {
            e["event_id"] for e in journal_events(journal)
        }


async def test_a_missing_permission_pauses_backfill_loudly(emulator_factory, tmp_path, caplog):
    from ivrstream.emulator.config import ClientSpec

    spec = ClientSpec(permissions=["conversation:communication:view"])
    async with emulator_factory(history=60.0, clients=[spec]) as emu:
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        config = config_for(emu, journal)
        async with Harness(config) as h:
            outcome = await h.filler.fill(manual_gap(start_ms, end_ms, 0), reader=h.reader)
        assert outcome.state == OPEN
        assert h.filler.is_paused()
        assert "backfill paused" in caplog.text


@pytest.mark.parametrize(
    ("first", "last", "missing", "inserted", "unrebuilt", "state"),
    [
        (1, 3, [[1, 3]], 3, 0, FILLED),
        (1, 3, [[1, 3]], 1, 0, PARTLY_FILLED),
        (1, 3, [[1, 3]], 0, 0, LOST),
        (1, 3, [[2, 3]], 2, 0, FILLED),  # one came late: two are still missing
        (None, None, [], 0, 0, FILLED),  # a window: nothing was missing
        (None, None, [], 5, 2, PARTLY_FILLED),  # some kinds cannot be rebuilt
    ],
)
def test_closing_states(first, last, missing, inserted, unrebuilt, state):
    gap = GapRow("g", "x", "s", first, last, 0, 1, 0, OPEN, missing=missing)
    assert closing_state(gap, inserted, unrebuilt) == state


def test_rebuilt_events_match_what_the_emulator_said_live(emulator_factory):
    """(Guards the premise of every test above.)"""
    from ivrstream.emulator.render import analytics_conversation
    from ivrstream.emulator.traffic import TrafficConfig, TrafficModel

    model = TrafficModel(TrafficConfig(seed=3, rate=1.0, time_scale=30.0, start_ms=0))
    calls = {f.call.conversation_id: f.call for f in model.facts_until(300_000)}
    for call in list(calls.values())[:30]:
        rebuilt = rebuild(analytics_conversation(call, 10**9), 0)
        ids = {e.event_id for e in rebuilt.events}
        for fact in call.facts:
            if fact.kind in REBUILDABLE:
                assert event_id(call.conversation_id, fact.kind, fact.time_ms) in ids
        assert msgspec.json.encode(rebuilt.events)


async def test_the_command_reports_json_and_exits_0_when_the_window_is_done(
    emulator_factory, tmp_path
):
    from tests.test_cli_run import CLI, environment

    async with emulator_factory(history=HISTORY, rate=0.5) as emu:
        emu.world.paused = True
        journal = tmp_path / "j.db"
        start_ms, end_ms = window(emu)
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "backfill",
            "--from",
            format_ms(start_ms),
            "--to",
            format_ms(end_ms),
            "--journal",
            str(journal),
            "--json",
            env=environment(emu),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["state"] == PARTLY_FILLED
    assert report["inserted"] == len(journal_events(journal)) > 0
    assert b"demo-secret" not in out + err


def test_the_command_names_a_bad_time_and_exits_2(tmp_path):
    from click.testing import CliRunner

    from ivrstream.cli import main

    result = CliRunner().invoke(
        main, ["backfill", "--from", "yesterday", "--to", "2026-01-01T00:00:00Z"]
    )
    assert result.exit_code == 2
    assert "not an ISO-8601 timestamp" in result.output
    result = CliRunner().invoke(
        main, ["backfill", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"]
    )
    assert result.exit_code == 2
    assert "--to must come after --from" in result.output
