"""Helpers for subscriber tests: configs aimed at an in-process emulator, journal vs ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ivrstream.aio.intake import Intake
from ivrstream.aio.subscriber import Subscriber
from ivrstream.clock import SystemClock
from ivrstream.config import Config, JournalSettings, OrderingSettings, from_mapping
from ivrstream.emulator.server import Emulator
from ivrstream.hooks import Hooks
from ivrstream.journal import open_journal

FAST_TRAFFIC = {"rate": 200, "time_scale": 2000}


async def open_intake(journal: Path) -> Intake:
    """An opened intake on ``journal`` with default settings and the system clock."""
    intake = Intake(
        JournalSettings(path=str(journal)),
        OrderingSettings(),
        SystemClock(),
        Hooks(),
        max_frame_bytes=1 << 20,
    )
    await intake.open()
    return intake


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def es_config(emu: Emulator, journal: Path, **sections: Any) -> Config:
    """A config for ``emu`` with test-sized timings; ``sections`` override (deep-merged)."""
    raw = {
        "genesys": {
            "tenant_url": emu.base_url,
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
        "eventstreams": {"idle_timeout": 5.0, "subscribe_timeout": 5.0},
        "reconnect": {"base": 0.02, "cap": 0.2, "stable_after": 0.5},
        "ordering": {"window_seconds": 0.2},
        "journal": {"path": str(journal)},
    }
    return from_mapping(_merge(raw, sections))


async def until(predicate: Callable[[], bool], within: float = 15.0, step: float = 0.01) -> None:
    """Wait (polling) until ``predicate()``; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(step)


async def committed(sub: Subscriber, count: int, within: float = 15.0) -> None:
    await until(lambda: sub.intake.stats.committed >= count, within)


def journal_events(path: Path) -> list[dict[str, Any]]:
    with open_journal(path) as journal:
        return [msgspec.json.decode(body) for body in journal.iter_bodies()]


def assert_matches_ledger(path: Path, emu: Emulator) -> dict[str, Any]:
    """Every sequence id the emulator assigned up to the journal's high-water mark is in the
    journal exactly once (or inside a recorded open gap), in sequence order, with the right
    conversation; returns a small report."""
    events = journal_events(path)
    assert events, "the journal is empty"
    subscriptions = {e["subscription_id"] for e in events}
    assert len(subscriptions) == 1, subscriptions
    (subscription,) = subscriptions
    sequence = [e["sequence_id"] for e in events]
    assert len(sequence) == len(set(sequence)), "a sequence id was journaled twice"
    in_order = [e["sequence_id"] for e in events if not e["recovered"]]
    assert in_order == sorted(in_order), "events were journaled out of sequence order"
    with open_journal(path) as journal:
        gaps = journal.gaps()
        (mark,) = journal.streams().values()
    missing = {
        seq
        for gap in gaps
        if gap.state != "filled"
        for a, b in gap.missing
        for seq in range(a, b + 1)
    }
    first = min(sequence)
    assigned = {
        entry["seq"]: entry
        for entry in emu.ledger.entries("assigned", subscription=subscription)
        if first <= entry["seq"] <= mark.high
    }
    journaled = set(sequence)
    assert journaled | missing == set(assigned), (
        f"journal lacks {sorted(set(assigned) - journaled - missing)[:10]},"
        f" has extra {sorted(journaled - set(assigned))[:10]}"
    )
    assert not journaled & missing, "a journaled event is also recorded as missing"
    for event in events:
        entry = assigned[event["sequence_id"]]
        assert event["conversation_id"] == entry["conversationId"]
        assert entry["fact"].endswith("/" + event["event_type"])
    return {
        "events": len(events),
        "first": first,
        "high": mark.high,
        "missing": len(missing),
        "gaps": gaps,
        "subscription": subscription,
    }
