"""``ivrstream run --source notifications`` as a process: ``kill -9``, restart, hole filled."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from ivrstream.identity import event_id
from tests.aio.support import until
from tests.test_cli_run import CLI, environment, journaled

REBUILDABLE = {"customer.start", "flow.start", "flow.end", "acd.start", "acd.end", "customer.end"}
CONFIG = """
source = "notifications"

[backfill]
settle = 1.0
check_every = 0.5
lookback = 30.0

[reconnect]
base = 0.05
cap = 0.5
"""


async def start_run(emu, config: Path, journal: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--config",
        str(config),
        "--journal",
        str(journal),
        env=environment(emu),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def rows(journal: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def last_heard(journal: Path) -> int | None:
    try:
        found = rows(journal, "SELECT high_time FROM streams WHERE stream LIKE 'source:%'")
    except sqlite3.OperationalError:
        return None
    return found[0][0] if found else None


def restart_gap_state(journal: Path) -> str | None:
    try:
        found = rows(journal, "SELECT state FROM gaps WHERE note LIKE 'restart: not running%'")
    except sqlite3.OperationalError:
        return None
    return found[0][0] if found else None


async def test_kill_9_mid_run_then_restart_backfills_the_hole(emulator_factory, tmp_path):
    config = tmp_path / "ivrstream.toml"
    config.write_text(CONFIG)
    journal = tmp_path / "journal.db"
    async with emulator_factory(rate=20, time_scale=200) as emu:
        first = await start_run(emu, config, journal)
        await until(lambda: journaled(journal) >= 200, within=30)
        # the source has written down when it last heard from Genesys
        await until(lambda: bool(last_heard(journal)), within=30)
        first.kill()  # SIGKILL: no clean shutdown, no last words
        assert await first.wait() == -signal.SIGKILL
        killed_ms = round(emu.clock.time() * 1000)

        def calls_unheard() -> int:
            return sum(
                1
                for call in emu.world.calls
                if call.start_ms >= killed_ms and call.facts[-1].time_ms < emu.clock.time() * 1000
            )

        await until(lambda: calls_unheard() >= 12, within=30)  # whole calls nobody heard
        back_ms = round(emu.clock.time() * 1000)
        second = await start_run(emu, config, journal)
        try:
            await until(lambda: restart_gap_state(journal) not in (None, "open"), within=30)
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 10) == 0
            stderr = (await second.stderr.read()).decode()
        assert "Traceback" not in stderr
        assert "demo-secret" not in stderr

        (hole,) = rows(
            journal,
            "SELECT time_from, time_to, state, filled FROM gaps"
            " WHERE note LIKE 'restart: not running%'",
        )
        time_from, time_to, state, filled = hole
        assert time_from <= killed_ms
        assert time_to >= back_ms
        assert state in ("filled", "partly_filled")
        assert filled > 0
        # every call that lived entirely inside the hole is in the journal, each event once
        have = [r[0] for r in rows(journal, "SELECT event_id FROM events")]
        assert len(have) == len(set(have))
        inside = [
            call
            for call in emu.world.calls
            if killed_ms <= call.start_ms and call.facts[-1].time_ms < back_ms
        ]
        assert len(inside) >= 10
        want = {
            event_id(call.conversation_id, fact.kind, fact.time_ms)
            for call in inside
            for fact in call.facts
            if fact.kind in REBUILDABLE
        }
        assert want <= set(have)
