"""``ivrstream run --metrics`` and ``ivrstream status`` as processes: JSON for scripts, a table that
fits 80 columns, exit 1 when nothing answers, exit 2 for a bad address."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket

from rich.console import Console

from ivrstream.commands.status import render
from tests.aio.support import FAST_TRAFFIC
from tests.test_cli_run import CLI, environment


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def served_url(proc: asyncio.subprocess.Process) -> str:
    """The address ``run --metrics …:0`` logged once it listens."""
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "the service ended before serving metrics"
            found = re.search(r"metrics and health on (http://\S+)", line)
            if found:
                return found.group(1)


async def test_status_reads_a_running_service(emulator_factory, tmp_path):
    async with emulator_factory(**FAST_TRAFFIC) as emu:
        env = environment(emu, COLUMNS="80")
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "run",
            "--journal",
            str(tmp_path / "j.db"),
            "--metrics",
            "127.0.0.1:0",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            url = await served_url(proc)
            drain = asyncio.ensure_future(proc.stderr.read())  # keep the pipe from filling
            data: dict = {}
            async with asyncio.timeout(20):
                while data.get("journal", {}).get("last_position", 0) < 300:
                    code, out, err = await cli("status", "--url", url, "--json", env=env)
                    assert code == 0, err
                    data = json.loads(out)
            code, table, err = await cli("status", "--url", url, env=env)
            assert code == 0, err
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            await drain
    assert data["ready"] == {"ready": True, "reason": None}
    assert data["connection"]["source"] == "eventstreams"
    assert data["ivr"]["flows"]
    assert "demo-secret" not in out
    assert "READY" in table
    assert "receive→commit" in table
    assert max(len(line) for line in table.splitlines()) <= 80


async def test_status_exits_1_when_nothing_answers():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = await cli("status", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert out == ""
    assert f"nothing answers at http://127.0.0.1:{port}/status" in err
    assert "--metrics" in err


async def test_a_bad_metrics_address_is_a_configuration_error(tmp_path):
    code, _, err = await cli("run", "--journal", str(tmp_path / "j.db"), "--metrics", "nowhere")
    assert code == 2
    assert "metrics.listen" in err


def test_the_table_fits_80_columns_with_long_names_and_an_outage():
    data = {
        "service": {"version": "0.1.0", "started_at": 1000.0, "uptime_seconds": 3_725.0},
        "ready": {"ready": False, "reason": "no event or heartbeat for 75.0s (idle limit 60s)"},
        "connection": {
            "source": "notifications",
            "state": "running, 0 of 3 channel(s) live",
            "reconnects": {"stalled": 2, "socket_closed": 5, "connect_failed": 1},
        },
        "subscription": {"topics": 2_400, "channels": 3},
        "rates": {"received": {"1s": 0.0, "1m": 1_234.5}},
        "latency": {"receive_to_commit": {"p50_ms": 1.2, "p90_ms": 3.1, "p99_ms": 12.6}},
        "last": {"event_seconds_ago": 75.0, "heartbeat_seconds_ago": None},
        "journal": {"last_position": 12_345_678, "quarantined": 3, "writable": True},
        "sinks": {
            "webhook": {
                "state": "retrying",
                "delivered": 12_000_000,
                "rate": {"1m": 0.0},
                "backlog": 345_678,
                "oldest_undelivered_seconds": 4_000.0,
                "retries": 1_234,
                "dead_lettered": 7,
            }
        },
        "gaps": {"by_state": {"open": 1, "partly_filled": 2}, "events_backfilled": 99},
        "ivr": {
            "active_calls": 12,
            "transfers": 40,
            "abandons": 3,
            "containment": 0.61,
            "flows": [
                {
                    "flow": "x",
                    "name": "A flow with a very long name that goes on and on and on",
                    "active": 12,
                    "started": 1_000_000,
                    "transfers": 40,
                    "containment": 0.61,
                }
            ],
        },
        "history": {
            "reconnects": [{"at": 4_700.0, "event": "lost", "slot": 0, "phase": "creating"}],
            "gaps": [{"at": 4_710.0, "event": "opened", "id": "f" * 32, "source": "notifications"}],
        },
    }
    console = Console(width=80, record=True, file=io.StringIO())
    render(data, console)
    text = console.export_text()
    assert "NOT READY: no event or heartbeat for 75.0s" in text
    assert "up 1h02m" in text
    assert "345,678" in text
    assert max(len(line) for line in text.splitlines()) <= 80
