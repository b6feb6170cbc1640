"""The audit trail in the running service: every journaled event recorded once, operational
facts recorded, the chain intact across clean stops, kill -9 and dead-letter commands."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import msgspec

from ivrstream.aio.subscriber import Subscriber
from ivrstream.audit import against_journal, verify
from ivrstream.journal import open_journal
from tests.aio.support import FAST_TRAFFIC, committed, es_config, until


def audit_records(directory) -> list[dict]:
    out = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        out.extend(msgspec.json.decode(line) for line in path.read_bytes().splitlines())
    return out


async def test_every_event_and_the_facts_an_auditor_asks_for(emulator_factory, tmp_path):
    audit = tmp_path / "audit"
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        emu.set_faults(drop_after=300, skip=0.005)
        journal = tmp_path / "j.db"
        config = es_config(
            emu, journal, audit={"directory": str(audit)}, ordering={"window_seconds": 0.05}
        )
        async with Subscriber(config) as sub:
            await committed(sub, 1_500, within=30)
            emu.fire("revoke_tokens")  # an authentication failure on the way
            await committed(sub, sub.intake.stats.committed + 200)
    report = verify([audit])
    assert report.ok, report
    check = against_journal([audit], journal)
    assert check.ok, check
    kinds = Counter(r["kind"] for r in audit_records(audit))
    with open_journal(journal) as j:
        assert kinds["event"] == j.count()
    for kind in (
        "service_start",
        "config_loaded",
        "connection_opened",
        "connection_closed",
        "subscription_sent",
        "gap_opened",
        "gap_closed",
        "service_stop",
        "checkpoint",
        "file_opened",
    ):
        assert kinds[kind] >= 1, kind
    events = [r for r in audit_records(audit) if r["kind"] == "event"]
    assert all(r["receive_latency_ms"] is not None for r in events)
    assert len({r["event_id"] for r in events}) == len(events)


async def test_dead_letter_commands_are_audited(emulator_factory, tmp_path):
    from ivrstream.commands import journal as journal_commands

    audit = tmp_path / "audit"
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        journal = tmp_path / "j.db"
        config = es_config(emu, journal, audit={"directory": str(audit)})
        async with Subscriber(config) as sub:
            await committed(sub, 100)
            await asyncio.to_thread(journal_commands.retry_dead_letters, str(journal), None)
            await asyncio.to_thread(journal_commands.purge_dead_letters, str(journal), "webhook")
            await until(
                lambda: {"dlq_retry", "dlq_purge"} <= {r["kind"] for r in audit_records(audit)}
            )
    records = {r["kind"]: r for r in audit_records(audit)}
    assert records["dlq_purge"]["sink"] == "webhook"
    assert verify([audit]).ok


async def test_kill_minus_9_never_loses_or_repeats_an_audit_record(emulator_factory, tmp_path):
    from tests.test_cli_run import start_run

    audit = tmp_path / "audit"
    journal = tmp_path / "journal.db"
    async with emulator_factory(rate=100, time_scale=1000) as emu:
        for _ in range(3):
            proc = await start_run(emu, journal, "--audit", str(audit))
            floor = sum(1 for r in audit_records(audit) if r["kind"] == "event")
            await until(
                lambda floor=floor: (
                    sum(1 for r in audit_records(audit) if r["kind"] == "event") > floor + 150
                ),
                within=30,
            )
            proc.kill()
            assert await proc.wait() == -signal.SIGKILL
        emu.world.paused = True
        proc = await start_run(emu, journal, "--audit", str(audit))
        await until(lambda: Counter(r["kind"] for r in audit_records(audit))["service_start"] == 4)
        await until(
            lambda: (
                sum(1 for r in audit_records(audit) if r["kind"] == "event")
                >= _journaled(journal)
                > 0
            ),
            within=30,
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    report = verify([audit])
    assert report.ok, report
    check = against_journal([audit], journal)
    assert check.ok, check
    kinds = Counter(r["kind"] for r in audit_records(audit))
    assert kinds["service_start"] == 4
    assert kinds["service_stop"] == 1  # three runs never got to say goodbye


def _journaled(path) -> int:
    if not path.exists():
        return 0
    with open_journal(path) as j:
        return j.count()
