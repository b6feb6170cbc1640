"""A whole session with known secrets and caller numbers, then a search of everything the
service wrote: logs, journal, audit trail, quarantine and every sink. No secret anywhere; no
caller number or card number where the policy says hash or mask."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg

from ivrstream.emulator.config import ClientSpec
from ivrstream.receiver import Receiver
from tests.aio.sinks_support import delete_stream
from tests.aio.support import until
from tests.test_cli_run import CLI, environment, journaled

CLIENT_SECRET = "cs-3f9a1c77b2e84d0c9a6e5b4d3c2b1a0f"
WEBHOOK_SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXRlc3Qtb25seQ=="
DATABASE_PASSWORD = "pg-pw-7d1e2f3a4b5c6d7e"


async def stored_text(dsn: str) -> bytes:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT body::text AS t FROM ivr_events")
        state = await conn.fetch("SELECT row_to_json(i)::text AS t FROM ivr_interactions i")
    finally:
        await conn.close()
    return "\n".join(r["t"] for r in [*rows, *state]).encode()


async def nats_text(url: str, stream: str) -> bytes:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        sub = await js.pull_subscribe(">", stream=stream, durable=f"c{uuid.uuid4().hex[:6]}")
        out = []
        while len(out) < info.state.messages:
            out.extend(m.data for m in await sub.fetch(500, timeout=5))
        return b"\n".join(out)
    finally:
        await nc.close()


def every_file(directory: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


async def test_nothing_secret_and_no_raw_caller_data_anywhere(
    emulator_factory, tmp_path, postgres_dsn, nats_url
):
    stream = f"IVR_{uuid.uuid4().hex[:8].upper()}"
    work = tmp_path / "work"
    work.mkdir()
    dsn = postgres_dsn.replace(
        "postgresql://postgres@", f"postgresql://postgres:{DATABASE_PASSWORD}@"
    )
    client = ClientSpec(client_id="demo-client", secret=CLIENT_SECRET)
    async with (
        emulator_factory(clients=[client], rate=60, time_scale=600) as emu,
        Receiver(secret=WEBHOOK_SECRET, db=work / "received.db") as receiver,
    ):
        emu.set_faults(
            token_errors=2,
            malformed=0.02,
            malformed_kinds=["truncated_event", "invalid_json", "oversized"],
            oversized_bytes=200_000,
        )
        config = tmp_path / "ivrstream.toml"  # the one file allowed to hold the DSN
        config.write_text(
            f"""
[reconnect]
base = 0.05
cap = 0.3
[sinks.webhook]
url = "{receiver.url}"
[sinks.postgres]
dsn = "{dsn}"
[sinks.nats]
servers = ["{nats_url}"]
stream = "{stream}"
subject_prefix = "t{stream.lower()}.events"
[sinks.jsonl]
path = "{work / "events.jsonl"}"
[eventstreams]
max_frame_bytes = 100000
"""
        )
        journal = work / "journal.db"
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "run",
            "--config",
            str(config),
            "--journal",
            str(journal),
            "--audit",
            str(work / "audit"),
            "--log-level",
            "DEBUG",
            env=environment(
                emu, GENESYS_CLIENT_SECRET=CLIENT_SECRET, WEBHOOK_SECRET=WEBHOOK_SECRET
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await until(lambda: journaled(journal) >= 300, within=30)
            emu.fire("revoke_tokens")  # 4001, a refresh, a reconnect
            emu.fire("drop")
            floor = journaled(journal)
            await until(lambda: journaled(journal) >= floor + 300, within=30)
            await until(lambda: emu.ledger.fault_counts["malformed"] >= 5, within=30)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            stdout, stderr = await proc.communicate()
            tokens = list(emu.issuer._tokens)  # every access token the emulator ever issued
            everything = {
                "logs": stdout + stderr,
                "journal and audit and jsonl and receiver": every_file(work),
                "postgres": await stored_text(postgres_dsn),
                "nats": await nats_text(nats_url, stream),
            }
            calls = list(emu.world.calls)
        finally:
            await delete_stream(nats_url, stream)

    assert b"quarantined" in everything["logs"]
    assert b"reconnecting" in everything["logs"]
    secrets = [CLIENT_SECRET, WEBHOOK_SECRET, DATABASE_PASSWORD, *tokens]
    caller_numbers = {c.ani for c in calls} | {c.flow.dnis for c in calls}
    cards = {
        fact.attributes["PaymentCard"]
        for c in calls
        for fact in c.facts
        if "PaymentCard" in fact.attributes
    }
    assert len(tokens) >= 2
    assert cards, "the traffic should carry card numbers"
    for where, blob in everything.items():
        for secret in secrets:
            assert secret.encode() not in blob, f"a secret leaked into {where}"
        for number in caller_numbers:
            digits = number.removeprefix("tel:")
            assert digits.encode() not in blob, f"caller number {number} in {where}"
        for card in cards:
            assert card.encode() not in blob, f"a card number in {where}"
    assert b"hmac-sha256:" in everything["journal and audit and jsonl and receiver"]
