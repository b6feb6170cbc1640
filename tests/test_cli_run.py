"""``ivrstream run`` / ``validate`` / ``journal`` as processes: signals, kill -9, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.aio.support import assert_matches_ledger, until

CLI = [sys.executable, "-m", "ivrstream"]


def environment(emu, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "IVRSTREAM_"))}
    env.update(
        GENESYS_TENANT_URL=emu.base_url,
        GENESYS_CLIENT_ID="demo-client",
        GENESYS_CLIENT_SECRET="demo-secret",
    )
    env.update(extra)
    return env


def journaled(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


async def start_run(emu, journal: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--journal",
        str(journal),
        *args,
        env=environment(emu, **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(emulator_factory, tmp_path):
    journal = tmp_path / "journal.db"
    async with emulator_factory(rate=100, time_scale=1000) as emu:
        emu.set_faults(duplicate=0.01, reorder=0.01)
        for _ in range(4):
            proc = await start_run(emu, journal)
            floor = journaled(journal)
            await until(lambda floor=floor: journaled(journal) >= floor + 300, within=30)
            proc.kill()  # SIGKILL: no chance to flush anything
            assert await proc.wait() == -signal.SIGKILL
        emu.world.paused = True  # no new events: the last run must catch up exactly
        assigned = [e for e in emu.ledger.entries("assigned")]
        proc = await start_run(emu, journal)
        await until(lambda: journaled(journal) >= 1, within=30)
        await until(lambda: _high(journal) >= max(e["seq"] for e in assigned), within=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        report = assert_matches_ledger(journal, emu)
    assert report["missing"] == 0
    assert report["first"] == 1
    assert report["events"] == len(assigned)


def _high(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT max(sequence_id) FROM events").fetchone()
        return int(row[0] or 0)
    finally:
        db.close()


async def test_sigterm_flushes_closes_with_1000_and_exits_0_within_2s(emulator_factory, tmp_path):
    journal = tmp_path / "journal.db"
    async with emulator_factory(rate=100, time_scale=1000) as emu:
        proc = await start_run(emu, journal)
        await until(lambda: journaled(journal) >= 100, within=30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        elapsed = time.monotonic() - started
        stderr = (await proc.stderr.read()).decode()
        await until(lambda: any(True for _ in emu.ledger.entries("connection", event="closed")))
        closes = [e["code"] for e in emu.ledger.entries("connection", event="closed")]
        ledger_closes = list(emu.ledger.entries("connection"))
    assert code == 0, stderr
    assert elapsed < 2.0
    assert closes == [1000], ledger_closes
    assert "events committed" in stderr
    assert "Traceback" not in stderr
    assert "demo-secret" not in stderr
    assert journaled(journal) == _high(journal)  # everything received was committed


async def test_max_events_stops_the_run(emulator_factory, tmp_path):
    journal = tmp_path / "journal.db"
    async with emulator_factory(rate=100, time_scale=1000) as emu:
        proc = await start_run(emu, journal, "--max-events", "250")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert journaled(journal) >= 250
    check_export(journal)


def check_export(journal: Path) -> None:
    out = subprocess.run(
        [*CLI, "journal", "export", "--journal", str(journal)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == journaled(journal)
    assert {
        "event_id",
        "source",
        "event_type",
        "conversation_id",
        "sequence_id",
        "event_time",
        "data",
    } <= set(lines[0])
    assert [e["sequence_id"] for e in lines] == sorted(e["sequence_id"] for e in lines)
    stats = subprocess.run(
        [*CLI, "journal", "stats", "--json", "--journal", str(journal)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert json.loads(stats.stdout)["events"] == len(lines)


async def test_bad_credentials_exit_1_with_a_clear_message(emulator_factory, tmp_path):
    async with emulator_factory(traffic=False) as emu:
        proc = await start_run(emu, tmp_path / "j.db", GENESYS_CLIENT_SECRET="not-the-secret")
        code = await asyncio.wait_for(proc.wait(), 30)
        stderr = (await proc.stderr.read()).decode()
    assert code == 1
    assert "demo-client" in stderr
    assert "not-the-secret" not in stderr
    assert "Traceback" not in stderr


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "IVRSTREAM_"))}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**base, **(env or {})},
    )


def test_validate_accepts_a_good_config_and_names_every_problem(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(
        '[genesys]\nregion = "us-east-1"\nclient_id = "abc"\n'
        '[eventstreams]\ninteraction_id = "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f"\n'
    )
    result = run_cli("validate", "--config", str(good), env={"GENESYS_CLIENT_SECRET": "s3cr3t"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "interaction.id" in result.stdout
    assert "wss://api.mypurecloud.com/api/v2/events" in result.stdout
    assert "s3cr3t" not in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[genesys]\nregion = "us-east-1"\nclient_id = "abc"\n'
        '[eventstreams]\nevent_type = "interaction:deleted"\nretry = 999\n'
        f'filters = {{"interaction.x" = "{"a" * 70_000}"}}\n'
    )
    result = run_cli("validate", "--config", str(bad), "--json")
    assert result.returncode == 2
    fields = {p["field"] for p in json.loads(result.stdout)["problems"]}
    assert {
        "eventstreams.subscription.payload",
        "eventstreams.subscription.eventType",
        "eventstreams.subscription.retry",
        "genesys.client_secret",
    } <= fields


def test_validate_checks_sinks_privacy_and_audit_without_connecting(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[genesys]\nregion = "us-east-1"\nclient_id = "abc"\n'
        '[sinks.webhook]\nurl = "ftp://collector"\n'
        '[sinks.postgres]\ndsn = "postgresql://ivr:pg-s3cr3t@db.example.com/cc"\n'
        '[privacy]\nrules = [{path = "attributes..x", action = "hash"}]\n'
        f'[audit]\ndirectory = "{tmp_path}/audit"\nsigning_key_file = "{tmp_path}/none.pem"\n'
    )
    result = run_cli("validate", "--config", str(config), env={"GENESYS_CLIENT_SECRET": "s"})
    assert result.returncode == 2
    assert "pg-s3cr3t" not in result.stdout
    assert "sink postgres: postgresql://ivr:[redacted]@db.example.com/cc" in result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert [p.split(":")[0] for p in problems] == [
        "PROBLEM sinks.webhook.url",
        "PROBLEM privacy.rules[0]",
        "PROBLEM audit.signing_key_file",
    ]
    assert not (tmp_path / "audit").exists()  # validating creates nothing

    config.write_text(
        '[genesys]\nregion = "us-east-1"\nclient_id = "abc"\n[privacy]\nenabled = false\n'
    )
    result = run_cli("validate", "--config", str(config), env={"GENESYS_CLIENT_SECRET": "s"})
    assert result.returncode == 0, result.stdout
    assert "privacy: OFF" in result.stdout
    assert "sinks: none" in result.stdout


def test_config_mistakes_exit_2_naming_the_field(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[journal]\nbatch_max = "lots"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "journal.batch_max" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("run", env={"GENESYS_CLIENT_ID": "x", "GENESYS_CLIENT_SECRET": "y"})
    assert result.returncode == 2
    assert "GENESYS_ENV" in result.stderr
    result = run_cli(
        "run", env={"GENESYS_ENV": "mars-1", "GENESYS_CLIENT_ID": "x", "GENESYS_CLIENT_SECRET": "y"}
    )
    assert result.returncode == 2
    assert "mars-1" in result.stderr


def test_journal_commands_on_a_missing_journal_exit_2(tmp_path):
    result = run_cli("journal", "stats", "--journal", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert "no journal" in result.stderr


def cursors(journal: Path) -> dict[str, int]:
    if not journal.exists():
        return {}
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT sink, position FROM cursors"))
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def last_position(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT coalesce(max(pos), 0) FROM events").fetchone()[0])
    finally:
        db.close()


async def test_sigkill_during_delivery_to_every_sink_loses_and_repeats_nothing(
    emulator_factory, tmp_path, postgres_dsn, nats_url
):
    import uuid

    from ivrstream.receiver import Receiver
    from tests.aio.sinks_support import (
        delete_stream,
        jsonl_ids,
        nats_ids,
        postgres_ids,
        receiver_ids,
    )
    from tests.aio.support import journal_events

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stream = f"IVR_{uuid.uuid4().hex[:8].upper()}"
    journal = tmp_path / "journal.db"
    config = tmp_path / "ivrstream.toml"
    sinks = {"webhook", "postgres", "nats", "jsonl"}
    async with (
        emulator_factory(rate=100, time_scale=1000) as emu,
        Receiver(secret=secret, db=tmp_path / "received.db") as receiver,
    ):
        config.write_text(
            f"""
[reconnect]
base = 0.05
cap = 0.5
[sinks.webhook]
url = "{receiver.url}"
retry_base = 0.02
retry_cap = 0.2
batch_max = 50
[sinks.postgres]
dsn = "{postgres_dsn}"
batch_max = 50
[sinks.nats]
servers = ["{nats_url}"]
stream = "{stream}"
subject_prefix = "t{stream.lower()}.events"
batch_max = 50
[sinks.jsonl]
path = "{tmp_path / "events.jsonl"}"
batch_max = 50
"""
        )
        try:
            for _ in range(4):
                proc = await start_run(emu, journal, "--config", str(config), WEBHOOK_SECRET=secret)
                floor = min(cursors(journal).values(), default=0)
                # kill once every sink has moved on: deliveries are in flight at that moment
                await until(
                    lambda floor=floor: (
                        set(cursors(journal)) == sinks
                        and min(cursors(journal).values()) >= floor + 200
                    ),
                    within=30,
                )
                proc.kill()
                assert await proc.wait() == -signal.SIGKILL
            emu.world.paused = True
            proc = await start_run(emu, journal, "--config", str(config), WEBHOOK_SECRET=secret)
            assigned = max(e["seq"] for e in emu.ledger.entries("assigned"))
            await until(lambda: _high(journal) >= assigned, within=30)
            await until(lambda: min(cursors(journal).values()) >= last_position(journal), within=30)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            report = assert_matches_ledger(journal, emu)
            expected = {e["event_id"] for e in journal_events(journal)}
            stores = [
                await receiver_ids(receiver),
                jsonl_ids(tmp_path / "events.jsonl"),
                await postgres_ids(postgres_dsn),
                await nats_ids(nats_url, stream),
            ]
        finally:
            await delete_stream(nats_url, stream)
    assert report["missing"] == 0
    assert len(expected) == report["events"]
    for stored in stores:
        stored.assert_once_each(expected)


async def test_an_unreachable_genesys_is_reported_not_silent(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "IVRSTREAM_"))}
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.update(
        GENESYS_TENANT_URL=f"http://127.0.0.1:{port}",
        GENESYS_CLIENT_ID="someone",
        GENESYS_CLIENT_SECRET="not-shown",
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--journal",
        str(tmp_path / "j.db"),
        "--duration",
        "1.5",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert f"cannot reach http://127.0.0.1:{port}/oauth/token" in text
    assert "Traceback" not in text
    assert "not-shown" not in text
