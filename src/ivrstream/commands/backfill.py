"""``ivrstream backfill --from ISO --to ISO``: fill a window of the journal from analytics.

The window becomes a gap row (the same window, the same id), so an interrupted run resumes where
it stopped and the gap's closing is recorded in the journal and, through the journal's
operations table, in the audit trail of the running service.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from ivrstream import config as configuration
from ivrstream.aio.auth import TokenManager
from ivrstream.aio.intake import Intake
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.runtime import Runtime
from ivrstream.aio.subscriber import grant_for, privacy_for
from ivrstream.backfill import OPEN, Backfiller, Outcome, manual_gap
from ivrstream.clock import Clock, SystemClock
from ivrstream.config import Config
from ivrstream.hooks import Hooks
from ivrstream.journal import Journal, open_journal
from ivrstream.protocol.analytics import Progress
from ivrstream.protocol.auth import AuthPolicy


async def backfill(
    config: Config,
    start_ms: int,
    end_ms: int,
    *,
    dry_run: bool,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Fetch every IVR conversation of the window and journal the events that were missing.
    Returns the outcome as a dict (``state`` ``open`` means: run again to finish)."""
    clock = clock or SystemClock()
    endpoints = configuration.endpoints(config)
    grant = grant_for(config, endpoints.token_url)
    hooks = Hooks()
    intake = Intake(
        config.journal,
        config.ordering,
        clock,
        hooks,
        max_frame_bytes=config.eventstreams.max_frame_bytes,
        redactor=privacy_for(config),
    )
    rng = random.Random()
    settings = config.backfill
    # a manual window is exactly what was asked for: no look-back before it
    settings = msgspec.structs.replace(settings, lookback=0.0)
    async with aiohttp.ClientSession() as session:
        tokens = TokenManager(
            grant,
            endpoints.token_url,
            session,
            clock,
            rng,
            AuthPolicy(max_retry_after=config.genesys.max_retry_after),
        )
        await intake.open()
        reader = JournalReader(intake.path)
        try:
            runtime = Runtime(tokens, session, intake, clock, rng, hooks)
            filler = Backfiller(settings, endpoints.api_url, runtime)
            gap = manual_gap(start_ms, end_ms, round(clock.time() * 1000))
            # the same window again: resume it if it is open, check it afresh if it is closed
            known = {g.id: g for g in await reader.call(Journal.gaps)}
            if gap.id in known:
                gap = known[gap.id]
            elif not dry_run:
                intake.record_gaps([gap])
                await intake.wait_idle()
                await _note(
                    reader,
                    "gap_opened",
                    gap_id=gap.id,
                    stream=gap.stream,
                    first_seq=-1,
                    last_seq=-1,
                    time_from=start_ms,
                    time_to=end_ms,
                )
            outcome = await filler.fill(gap, reader=reader, dry_run=dry_run, progress=on_progress)
            await intake.wait_idle()
            if not dry_run and outcome.state != OPEN:
                await _note(
                    reader,
                    "gap_closed",
                    gap_id=gap.id,
                    state=outcome.state,
                    filled=outcome.inserted,
                    note=outcome.describe(),
                )
        finally:
            reader.close()
            await tokens.close()
            await intake.close()
    return _report(outcome, start_ms, end_ms, dry_run)


async def _note(reader: JournalReader, kind: str, **details: Any) -> None:
    """An operational fact for the service's audit trail (it reads the operations table)."""
    await asyncio.to_thread(_write_operation, reader.path, kind, details)


def _write_operation(path: Path, kind: str, details: dict[str, Any]) -> None:
    with open_journal(path, readonly=False) as journal:
        journal.record_operation(kind, details)


def _report(outcome: Outcome, start_ms: int, end_ms: int, dry_run: bool) -> dict[str, Any]:
    report = asdict(outcome)
    report.update(window_from_ms=start_ms, window_to_ms=end_ms, dry_run=dry_run)
    return report
