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


async def test_the_audit_sink_records_journal_rows_and_hand_built_deliveries_alike(tmp_path):
    from ivrstream.aio.audit import AuditSink, AuditTrail
    from ivrstream.config import AuditSettings
    from ivrstream.sinks.base import Delivery
    from ivrstream.testing.clock import FakeClock

    def body(n: int, received_at: str) -> bytes:
        return msgspec.json.encode(
            {
                "event_id": f"e{n}",
                "event_type": "flow.start",
                "sequence_id": n,
                "event_time": "2026-05-01T10:00:00.000Z",
                "received_at": received_at,
            }
        )

    trail = AuditTrail(AuditSettings(directory=str(tmp_path)), FakeClock())
    await trail.open(b"digest")
    sink = AuditSink(trail)
    from_journal = Delivery(
        1, "e1", "c", "flow.start", body(1, "x"), 1, "2026-05-01T10:00:00.000Z",
        "2026-05-01T10:00:00.250Z",
    )  # fmt: skip
    by_hand = Delivery(2, "e2", "c", "", body(2, "2026-05-01T10:00:01.500Z"))
    naive = Delivery(3, "e3", "c", "", body(3, "10 past 10"))  # not ISO-8601: no latency
    outcome = await sink.deliver([from_journal, by_hand, naive])
    assert outcome.verdict == "ok"
    await trail.close("test")
    reopened = AuditTrail(AuditSettings(directory=str(tmp_path)), FakeClock())
    await reopened.open(b"digest")  # a restart whose cursor lagged the trail: no second record
    assert (await AuditSink(reopened).deliver([by_hand])).duplicates == 1
    await reopened.close("test")
    events = {r["event_id"]: r for r in audit_records(tmp_path) if r["kind"] == "event"}
    assert events["e1"]["receive_latency_ms"] == 250.0
    assert events["e2"]["receive_latency_ms"] == 1500.0
    assert (events["e2"]["event_type"], events["e2"]["sequence_id"]) == ("flow.start", 2)
    assert events["e3"]["receive_latency_ms"] is None
    assert verify([tmp_path]).ok
