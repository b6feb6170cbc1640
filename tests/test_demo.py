"""``ivrstream demo`` end to end: every fault injected, and still nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys

from rich.console import Console

from ivrstream.commands.demo import DemoSettings, LiveView, LogView, Silent, run_demo, view_for
from ivrstream.demo import dashboard
from ivrstream.demo.probe import Snapshot
from ivrstream.demo.timeline import timeline
from tests.demo.test_dashboard import rendered, snapshot, widest


class Recording(Silent):
    """A view that keeps what it was shown."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.notes: list[str] = []

    def update(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def note(self, line: str) -> None:
        self.notes.append(line)


def assert_nothing_lost_or_duplicated(summary: dict) -> None:
    assert summary["ok"], summary["problems"]
    assert summary["lost"] == summary["duplicates"] == 0
    journaled = summary["journal"]["events"]
    assert journaled == summary["generated"]["events"] > 0
    assert set(summary["delivered"]) == {"webhook", "jsonl", "audit"}
    for sink in summary["delivered"].values():
        assert sink["delivered"] == journaled
        assert sink["lost"] == sink["duplicates"] == sink["unexpected"] == 0
    assert summary["quarantined"]["accounted"]
    assert summary["gaps"]["accounted"]
    assert summary["gaps"]["missing_in_gaps"] == 0
    assert set(summary["gaps"]["states"]) <= {"filled"}
    assert summary["audit"]["intact"]
    assert summary["audit"]["signatures_checked"]
    assert summary["audit"]["signed_checkpoints"] >= 1


async def test_the_demo_injects_every_fault_and_loses_nothing():
    view = Recording()
    summary = await run_demo(DemoSettings(duration=4.0, rate=10.0), view)
    assert_nothing_lost_or_duplicated(summary)
    assert summary["run"]["drained"]
    labels = [step.label for step in timeline(4.0)]
    assert [i["what"] for i in summary["injections"]] == labels
    assert [line.split(">> ")[1].split(":")[0] for line in view.notes] == labels
    kinds = {"invalid JSON", "invalid MessagePack", "invalid event", "oversized frame"}
    assert set(summary["quarantined"]["reasons"]) == kinds  # each kind the emulator sent
    reasons = summary["reconnects"]["by_reason"]
    assert reasons.get("network", 0) >= 1  # the disconnect
    assert reasons.get("token", 0) >= 1  # the token expiry
    injected = summary["received"]["faults_injected"]
    assert injected.get("duplicate", 0) + injected.get("reorder", 0) > 0  # the burst
    assert summary["delivered"]["webhook"]["retries"] > 0  # the receiver outage
    # the dashboard saw the run go by, and every frame fits 80 columns
    assert {s.phase for s in view.snapshots} >= {"running", "draining"}
    assert view.snapshots[-1].committed == summary["journal"]["events"]
    assert any(s.outage_left > 0 for s in view.snapshots)
    assert widest(rendered(dashboard.frame(view.snapshots[len(view.snapshots) // 2]))) <= 80


async def test_an_interrupted_demo_still_drains_verifies_and_summarises():
    settings = DemoSettings(duration=10.0, rate=20.0)
    burst = next(step for step in timeline(settings.duration) if step.action == "burst")
    stop = asyncio.Event()  # SIGINT in the middle of the frame burst
    asyncio.get_running_loop().call_later(burst.at + burst.spell / 2, stop.set)
    summary = await run_demo(settings, Silent(), stop=stop)
    assert_nothing_lost_or_duplicated(summary)
    assert [i["what"] for i in summary["injections"]][-2:] == [burst.label, "interrupted"]
    assert summary["run"]["elapsed"] < burst.at + 5


def test_the_demo_command_prints_a_json_verdict_and_exits_0():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "WEBHOOK_"))}
    result = subprocess.run(
        [sys.executable, "-m", "ivrstream", "demo", "--duration", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # nothing but the summary on stdout
    assert_nothing_lost_or_duplicated(summary)
    assert "Traceback" not in result.stderr
    for secret in ("whsec_", "demo-secret", "BEGIN PRIVATE KEY"):
        assert secret not in result.stdout + result.stderr


def test_a_terminal_gets_the_live_view_a_log_file_plain_lines_and_json_nothing():
    log_file = Console(file=io.StringIO(), width=80)
    terminal = Console(file=io.StringIO(), width=80, force_terminal=True)
    assert isinstance(view_for(terminal, 30, as_json=False), LiveView)
    assert isinstance(view_for(terminal, 30, as_json=True), Silent)
    view = view_for(log_file, 30, as_json=False)
    assert isinstance(view, LogView)
    assert view.every == 5.0
    for elapsed in (0.0, 0.25, 4.9, 5.0, 5.25):
        view.update(dataclasses.replace(snapshot(), elapsed=elapsed))
    view.note(dashboard.injection_line(6.0, "disconnect", "1 socket(s) cut"))
    view.close(dataclasses.replace(snapshot(), elapsed=7.0, phase="done"))
    lines = log_file.file.getvalue().splitlines()
    assert sum(line.startswith("[") and "ev/s" in line for line in lines) == 3  # 0, 5, the end
    assert "[   6.0s] >> disconnect: 1 socket(s) cut" in lines
    assert "Main IVR" in log_file.file.getvalue()
    assert max(len(line) for line in lines) <= 80
    assert "\x1b[" not in log_file.file.getvalue()  # no terminal codes in a log file
