"""``ivrstream demo``: the emulator, the reference webhook receiver and the service in one process.

Rules this module keeps:

- Everything lives in one temporary directory (journal, JSON-lines file, audit trail and its
  signing key, the receiver's database) and listens on 127.0.0.1, port 0; nothing is left behind.
- The webhook secret is made up for the run, registered with the log redactor and never shown.
- Faults follow :func:`ivrstream.demo.timeline.timeline`; each is announced as it is injected
  (except with ``--json``, which prints nothing but the summary).
- At the end the traffic stops, the journal and every sink drain (a bounded wait), everything
  stops cleanly, the audit trail is verified against the journal, and
  :func:`ivrstream.demo.summary.build_summary` gives the verdict: exit 0 only when it is ok.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
from rich.console import Console
from rich.live import Live

from ivrstream import config as configuration
from ivrstream import logs
from ivrstream.aio.subscriber import Subscriber
from ivrstream.audit import write_keypair
from ivrstream.commands.audit import verify_paths
from ivrstream.config import Config
from ivrstream.demo import dashboard
from ivrstream.demo.probe import ActiveCalls, Snapshot, Throughput, service_figures
from ivrstream.demo.summary import Assigned, Evidence, GapInfo, Journaled, build_summary
from ivrstream.demo.timeline import BURST_FAULTS, QUIET_FAULTS, Step, timeline
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.server import Emulator
from ivrstream.journal import open_journal
from ivrstream.receiver import Receiver

log = logging.getLogger("ivrstream.demo")

CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the emulator's documented demo client
FAST_RETRY = {"retry_base": 0.1, "retry_cap": 1.0, "max_attempts": 1_000}


@dataclass(frozen=True)
class DemoSettings:
    duration: float = 30.0  # seconds of traffic
    rate: float = 8.0  # call arrivals per second
    seed: int = 1
    time_scale: float = 30.0  # nominal call durations divided by this
    refresh: float = 0.25  # seconds between dashboard frames
    drain_within: float | None = None  # default: half the duration, at least 5 s


# -- how the run is shown ----------------------------------------------------------------------


class View(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def note(self, line: str) -> None: ...

    def close(self, snapshot: Snapshot) -> None: ...

    def abort(self) -> None:
        """The run failed: leave the terminal as it was."""


class Silent:
    """``--json``: nothing until the summary."""

    def update(self, snapshot: Snapshot) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def close(self, snapshot: Snapshot) -> None:
        pass

    def abort(self) -> None:
        pass


class LiveView:
    """A terminal: one live frame, injections printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None

    def update(self, snapshot: Snapshot) -> None:
        if self._live is None:
            self._live = Live(dashboard.frame(snapshot), console=self.console, auto_refresh=False)
            self._live.start()
        self._live.update(dashboard.frame(snapshot), refresh=True)

    def note(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)

    def close(self, snapshot: Snapshot) -> None:
        self.update(snapshot)
        self.abort()

    def abort(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class LogView:
    """A log file: a few plain lines every ``every`` seconds, injections as they happen."""

    def __init__(self, console: Console, every: float) -> None:
        self.console = console
        self.every = every
        self._next = 0.0

    def update(self, snapshot: Snapshot) -> None:
        if snapshot.elapsed >= self._next:
            self._next = snapshot.elapsed + self.every
            self._print(dashboard.log_lines(snapshot))

    def note(self, line: str) -> None:
        self._print([line])

    def close(self, snapshot: Snapshot) -> None:
        self._print(dashboard.log_lines(snapshot))
        self.console.print(dashboard.flows_table(snapshot))

    def abort(self) -> None:
        pass

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self.console.file.flush()


def view_for(console: Console, duration: float, as_json: bool) -> View:
    if as_json:
        return Silent()
    if console.is_terminal:
        return LiveView(console)
    return LogView(console, every=min(5.0, max(1.0, duration / 6)))


# -- configuration -----------------------------------------------------------------------------


def new_webhook_secret() -> str:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    logs.register_secret(secret)
    logs.register_secret(secret.removeprefix("whsec_"))
    return secret


def service_config(
    base_url: str, webhook_url: str, secret: str, workdir: Path, signing_key: Path
) -> Config:
    """Journal, signed webhook, JSON lines and a signed audit trail, with demo-sized timings."""
    config = configuration.from_mapping(
        {
            "genesys": {
                "tenant_url": base_url,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            "eventstreams": {"idle_timeout": 10.0, "subscribe_timeout": 5.0},
            "reconnect": {"base": 0.1, "cap": 1.0, "stable_after": 1.0},
            "ordering": {"window_seconds": 0.3},
            "journal": {"path": str(workdir / "journal.db")},
            "sinks": {
                "webhook": {"url": webhook_url, "secret": secret, "timeout": 2.0, **FAST_RETRY},
                "jsonl": {"path": str(workdir / "events.jsonl"), **FAST_RETRY},
            },
            "audit": {"directory": str(workdir / "audit"), "signing_key_file": str(signing_key)},
        }
    )
    configuration.check(config)
    return config


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """What runs in the demo's process."""

    emu: Emulator
    receiver: Receiver
    sub: Subscriber
    config: Config


class Demo:
    """One run: start everything, play the timeline, drain, stop, judge."""

    def __init__(self, settings: DemoSettings, workdir: Path, view: View) -> None:
        self.settings = settings
        self.workdir = workdir
        self.view = view
        self.steps = timeline(settings.duration)
        self.phase = "running"
        self.last_injection: str | None = None
        self.injections: list[dict[str, Any]] = []
        self.calls = ActiveCalls()
        self.throughput = Throughput()
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._next_step = 0
        self._parts: Parts | None = None
        self._subscribed = asyncio.Event()  # set while the service is streaming
        self._burst_on = False

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("the demo is not running")
        return self._parts

    def elapsed(self) -> float:
        return self._loop.time() - self._started

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Run the whole demo; returns the summary (see :func:`build_summary`)."""
        settings = self.settings
        secret = new_webhook_secret()
        private_key, public_key = write_keypair(self.workdir / "keys")
        emulator_config = EmulatorConfig(
            seed=settings.seed, rate=settings.rate, time_scale=settings.time_scale
        )
        async with (
            Emulator(emulator_config) as emu,
            Receiver(secret, db=self.workdir / "received.db") as receiver,
        ):
            config = service_config(emu.base_url, receiver.url, secret, self.workdir, private_key)
            sub = Subscriber(config)
            sub.on("subscribed", lambda **_: self._subscribed.set())
            sub.on("disconnected", lambda **_: self._subscribed.clear())
            self._parts = Parts(emu, receiver, sub, config)
            self._started = self._loop.time()
            drained = False
            await sub.start()
            try:
                drained = await self._run_service(sub, emu, stop)
            finally:
                sub.stop_reason = "demo finished"
                await sub.stop()
            self.phase = "done"
            self.view.close(self.snapshot())
            evidence = await self._evidence(self.parts)
        evidence.audit = await asyncio.to_thread(
            verify_paths, [config.audit.directory or ""], public_key, config.journal.path
        )
        evidence.run["drained"] = drained
        return build_summary(evidence)

    async def _run_service(
        self, sub: Subscriber, emu: Emulator, stop: asyncio.Event | None
    ) -> bool:
        follower = asyncio.ensure_future(self._follow(sub))
        ticker = asyncio.ensure_future(self._tick())
        player = asyncio.ensure_future(self._play())
        waits: set[asyncio.Future[Any]] = {player, asyncio.ensure_future(sub.wait())}
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not player.done():
                self._note("interrupted" if stop and stop.is_set() else "stopped early", "")
                self._calm()
            for task in waits:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    self._note("stopped early", logs.REDACTOR.scrub(str(task.exception())))
            emu.world.paused = True
            self.phase = "draining"
            within = self.settings.drain_within or max(5.0, self.settings.duration / 2)
            drained = await self._drain(sub, emu, within)
            self.view.update(self.snapshot())
            return drained
        finally:
            for task in (*waits, ticker, follower):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow(self, sub: Subscriber) -> None:
        async for event in sub.events(after=0):
            self.calls.add(event)

    async def _tick(self) -> None:
        while True:
            self.view.update(self.snapshot())
            await asyncio.sleep(self.settings.refresh)

    # -- the timeline ----------------------------------------------------------------------

    async def _play(self) -> None:
        for index, step in enumerate(self.steps):
            self._next_step = index
            delay = self._started + step.at - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            detail = await self._inject(step)
            self._note(step.label, detail)
        self._next_step = len(self.steps)

    def _note(self, label: str, detail: str) -> None:
        at = self.elapsed()
        self.injections.append({"at": round(at, 2), "what": label, "detail": detail})
        self.last_injection = f"{label} at {at:.1f} s"
        self.view.note(dashboard.injection_line(at, label, detail))

    async def _inject(self, step: Step) -> str:
        emu, receiver = self.parts.emu, self.parts.receiver
        action = step.action
        if action == "drop":
            await self._wait_until_streaming()
            fired = emu.fire("drop")
            return f"{fired['sockets']} socket(s) cut without a close frame"
        if action == "burst":
            emu.set_faults(**BURST_FAULTS)
            self._burst_on = True
            shares = BURST_FAULTS
            return (
                f"{shares['reorder']:.0%} reordered, {shares['duplicate']:.0%} duplicated,"
                f" {shares['skip']:.0%} skipped for {step.spell:.1f} s"
            )
        if action == "burst_end":
            emu.set_faults(**QUIET_FAULTS)
            self._burst_on = False
            return ""
        if action == "malformed":
            await self._wait_until_streaming()
            fired = emu.fire("malformed")
            kinds = len(emu.faults.settings.malformed_kinds)
            return f"{fired['frames']} bad frame(s) of {kinds} kinds"
        if action == "revoke_tokens":
            fired = emu.fire("revoke_tokens")
            return f"{fired['tokens']} token(s) revoked; the socket closes with 4001"
        if action == "outage":
            receiver.set_faults(outage_for_seconds=step.spell)
            return f"every webhook delivery fails with 503 for {step.spell:.1f} s"
        if action == "outage_end":
            receiver.set_faults(outage_for_seconds=0)
            return ""
        emu.world.paused = True  # stop_traffic
        return "no new calls; draining the journal and the sinks"

    def _calm(self) -> None:
        """Stopped mid-timeline: end every fault. A frame the burst held back would wait for
        a next frame that never comes once traffic stops: drop the socket so the service
        resumes and the server re-sends it."""
        self.parts.emu.set_faults(**QUIET_FAULTS)
        self.parts.receiver.set_faults(outage_for_seconds=0)
        if self._burst_on:
            self.parts.emu.fire("drop")
            self._burst_on = False

    async def _wait_until_streaming(self, within: float = 2.0) -> None:
        """A fault aimed at the socket waits (briefly) for the service to be subscribed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._subscribed.wait()

    # -- the end ---------------------------------------------------------------------------

    async def _drain(self, sub: Subscriber, emu: Emulator, within: float) -> bool:
        """Wait until the journal holds everything the server sequenced and every sink has
        the whole journal, and nothing moved for a moment; False if ``within`` ran out."""
        seen = -1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    await asyncio.sleep(0.1)
                    frames = sub.intake.stats.frames
                    if frames == seen and _caught_up(sub, emu):
                        return True
                    seen = frames
        return False

    async def _evidence(self, parts: Parts) -> Evidence:
        sub, emu, receiver, config = parts.sub, parts.emu, parts.receiver, parts.config
        statistics = sub.statistics()
        intake = statistics["intake"]
        streams = intake["streams"].values()
        journal, gaps, quarantined = await asyncio.to_thread(_read_journal, config.journal.path)
        jsonl = config.sinks.jsonl
        sinks = {
            "webhook": await _receiver_ids(receiver),
            "jsonl": await asyncio.to_thread(_jsonl_ids, Path(jsonl.path if jsonl else "")),
        }
        sink_stats = statistics["sinks"]
        source = statistics["source"] or {}
        return Evidence(
            facts_generated=emu.world.facts_published,
            assigned=[
                Assigned(e["subscription"], e["seq"], e["conversationId"])
                for e in emu.ledger.entries("assigned")
            ],
            journal=journal,
            gaps=gaps,
            quarantined=quarantined,
            malformed_sent=sum(
                1
                for e in emu.ledger.entries("sent")
                if str(e.get("fault", "")).startswith("malformed")
            ),
            frames={key: sum(s[key] for s in streams) for key in ("duplicate", "early", "late")},
            injected=dict(emu.ledger.fault_counts),
            sinks=sinks,
            redeliveries={
                "webhook": receiver.stats()["duplicates"],
                "jsonl": sink_stats.get("jsonl", {}).get("duplicates", 0),
            },
            retries={name: sink["retries"] for name, sink in sink_stats.items()},
            audit={},
            reconnects=dict(source.get("endings", {})),
            latency_ms={
                "p50_ms": intake["latency"]["p50_ms"],
                "p99_ms": intake["latency"]["p99_ms"],
                "event_p50_ms": intake["event_latency"]["p50_ms"],
                "event_p99_ms": intake["event_latency"]["p99_ms"],
            },
            injections=self.injections,
            run={
                "duration": self.settings.duration,
                "elapsed": round(self.elapsed(), 2),
                "rate": self.settings.rate,
                "seed": self.settings.seed,
                "time_scale": self.settings.time_scale,
            },
        )

    # -- what the dashboard shows -----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        sub, receiver = self.parts.sub, self.parts.receiver
        figures = service_figures(sub.statistics())
        now = self.elapsed()
        faults = receiver.fault_status()
        upcoming = self.steps[self._next_step] if self._next_step < len(self.steps) else None
        return Snapshot(
            elapsed=now,
            duration=self.settings.duration,
            phase=self.phase,
            rate=self.throughput.sample(now, figures["committed"]),
            receiver_stored=receiver.stats()["events"],
            receiver_failures=receiver.stats()["injected_failures"],
            outage_left=faults["outage_remaining"],
            flows=self.calls.lines(),
            last_injection=self.last_injection,
            next_injection=(
                f"{upcoming.label} at {upcoming.at:.1f} s"
                if upcoming is not None and self.phase == "running"
                else None
            ),
            **figures,
        )


def _caught_up(sub: Subscriber, emu: Emulator) -> bool:
    source = sub.source
    subscription = getattr(source, "subscription_id", None)
    state = emu.eventstreams.subscriptions.get(subscription or "")
    stream = sub.intake.statistics()["streams"].get(getattr(source, "key", ""))
    if state is None or stream is None:
        return False
    journaled = stream["high"] >= state.last_seq and not stream["held"] and not stream["open_gaps"]
    last = sub.intake.last_pos
    return journaled and all(d.position >= last for d in sub.dispatchers)


class _Row(msgspec.Struct):
    event_id: str
    conversation_id: str
    sequence_id: int | None = None
    subscription_id: str | None = None
    recovered: bool = False


def _read_journal(path: str) -> tuple[list[Journaled], list[GapInfo], dict[str, int]]:
    decoder = msgspec.json.Decoder(_Row)
    with open_journal(path) as journal:
        rows = [decoder.decode(body) for body in journal.iter_bodies()]
        gaps = [GapInfo(g.state, g.missing, g.stream) for g in journal.gaps()]
        reasons = Counter(_reason_kind(q["reason"]) for q in journal.quarantined(limit=1_000_000))
    journaled = [
        Journaled(r.event_id, r.subscription_id, r.sequence_id, r.conversation_id, r.recovered)
        for r in rows
    ]
    return journaled, gaps, dict(reasons)


def _reason_kind(reason: str) -> str:
    """``invalid JSON: <detail>`` → ``invalid JSON``; every size refusal → ``oversized frame``."""
    return "oversized frame" if "limit" in reason else reason.split(":")[0]


async def _receiver_ids(receiver: Receiver) -> list[str]:
    decoder = msgspec.json.Decoder(_Row)
    ids: list[str] = []
    after = 0
    while rows := await receiver.events(after, 5_000):
        ids.extend(decoder.decode(body).event_id for _, body in rows)
        after = rows[-1][0]
    return ids


def _jsonl_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(_Row)
    return [decoder.decode(line).event_id for line in path.read_bytes().splitlines() if line]


# -- the command -------------------------------------------------------------------------------


def quiet_logs() -> None:
    """Only errors, secrets scrubbed: the dashboard shows everything else."""
    logs.setup("ERROR")
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # aborted sockets are the point


async def run_demo(
    settings: DemoSettings, view: View, *, stop: asyncio.Event | None = None
) -> dict[str, Any]:
    """The whole demo in a temporary directory; returns the summary."""
    with tempfile.TemporaryDirectory(prefix="ivrstream-demo-") as workdir:
        return await Demo(settings, Path(workdir), view).run(stop)


async def main(settings: DemoSettings, console: Console, *, as_json: bool) -> int:
    """``ivrstream demo``: run, show, judge; the exit code (0 only when the summary is ok).
    SIGINT/SIGTERM end the traffic early and still drain, verify and summarise."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    view = view_for(console, settings.duration, as_json)
    if not as_json:
        console.print(
            "ivrstream demo: a Genesys Cloud emulator, the service and a webhook receiver\n"
            f"on 127.0.0.1; {settings.duration:g} s of IVR traffic at {settings.rate:g} calls/s"
            " with faults injected",
            highlight=False,
        )
    try:
        summary = await run_demo(settings, view, stop=stop)
    except Exception as exc:  # a part that could not start: say which, without a traceback
        view.abort()
        log.debug("the demo failed", exc_info=True)
        Console(stderr=True).print(
            f"ivrstream: demo failed: {logs.REDACTOR.scrub(str(exc))}", markup=False
        )
        return 1
    show_summary(summary, console, as_json=as_json)
    return 0 if summary["ok"] else 1


def show_summary(summary: dict[str, Any], console: Console, *, as_json: bool) -> None:
    if as_json:
        console.file.write(json.dumps(summary, indent=2) + "\n")
        console.file.flush()
        return
    console.print()
    console.print(dashboard.summary_view(summary))
