"""Metrics and health for a running :class:`~ivrstream.aio.subscriber.Subscriber`, over HTTP.

``async with Monitor(sub, listen="127.0.0.1:9464") as monitor:`` serves

- ``/metrics``: Prometheus text format, from this monitor's own registry;
- ``/livez``: 200 while the process (its event loop) answers;
- ``/readyz``: 200 only when the source is connected, an event or heartbeat arrived within the
  idle limit and the journal takes writes; otherwise 503 with ``{"ready": false, "reason": …}``;
- ``/status``: JSON for people and ``ivrstream status``: connection, subscription, rates,
  latency percentiles, sink lags, open gaps, reconnect and gap history, active IVR calls.

``/`` is left free: add routes to :attr:`Monitor.app` before :meth:`Monitor.start`.

Nothing here runs per event. Counters that exist are read when scraped; hooks count the rare
things (gaps, quarantine, reconnects); a sampler looks at a few counters four times a second
(rates, and when something last arrived); and a follower reads what the journal committed since
it last looked — counts by source and type in SQL, the IVR view from four event types — in
batches, on the reader's thread. Secrets never appear: channel ids are not read, error texts go
through the log redactor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
from aiohttp import web

from ivrstream import __version__
from ivrstream import web as status_page
from ivrstream.aio.eventstreams import EventStreamsSource
from ivrstream.aio.notifications import NotificationsSource
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.subscriber import Subscriber
from ivrstream.config import listen_address
from ivrstream.health import Activity, History, Rates, Readiness, readiness
from ivrstream.isotime import TimeFormatError, parse_ms
from ivrstream.ivr import KINDS, IvrRow, IvrView, Labels
from ivrstream.journal import Journal
from ivrstream.lifecycle import StartStop
from ivrstream.logs import REDACTOR
from ivrstream.stats import LatencyHistogram

log = logging.getLogger("ivrstream.monitor")

FOLLOW_BATCH = 20_000  # journal rows per follower read
WARMUP_ROWS = 50_000  # rows before the start position read to know which calls are in flows
SAMPLE_EVERY = 0.25  # seconds between samples of counters (rates, last arrival)
FOLLOW_EVERY = 0.5  # seconds between follower reads while events are being committed
LOOK_AT_MOST_EVERY = 0.25  # seconds: scrapes closer together reuse the last look
OPEN_GAPS_SHOWN = 20
_DIGITS = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_TRAILER = re.compile(r"\s*\(.*\)\s*$")


def quarantine_label(reason: str) -> str:
    """A bounded label for a quarantine reason: its kind, without numbers, quotes or details
    (``frame is 2000000 bytes, over …`` → ``frame is N bytes, over …``)."""
    text = _TRAILER.sub("", reason).split(":", 1)[0]
    text = _DIGITS.sub("N", _QUOTED.sub("…", text)).strip()
    return text[:60] or "unknown"


@dataclass
class Scan:
    """What the follower read: up to ``last``."""

    last: int | None = None
    rows: int = 0
    kinds: list[tuple[str, str, int]] = field(default_factory=list)  # (source, type, count)
    ivr: list[IvrRow] = field(default_factory=list)


# One parse of each body: every field the follower needs, as a JSON array (json_extract with
# several paths), instead of a parse per field and per generated column.
_FIELDS = (
    "$.source",
    "$.event_type",
    "$.conversation_id",
    "$.data.flowId",
    "$.data.flow.id",
    "$.data.flowName",
    "$.data.flow.name",
    "$.data.exitReason",
    "$.data.outcome.exitReason",
    "$.data.transferType",
    "$.data.outcome.transferType",
    "$.data.acdOutcome",
    "$.data.outcome.acdOutcome",
)
_SCAN_SELECT = (
    "SELECT pos, json_extract(CAST(body AS TEXT), "  # noqa: S608 - constant paths only
    + ", ".join(f"'{path}'" for path in _FIELDS)
    + ") FROM events WHERE pos > ? ORDER BY pos LIMIT ?"
)
_decode_fields = msgspec.json.Decoder(list[Any]).decode
_IVR_KINDS = frozenset(KINDS)


def scan_journal(journal: Journal, *, after: int, limit: int, counting: bool = True) -> Scan:
    """The next ``limit`` events after position ``after``: counts by (source, type) and the
    fields the IVR view needs (runs on a reader thread; SQLite parses each body once)."""
    rows = journal.db.execute(_SCAN_SELECT, (after, limit)).fetchall()
    scan = Scan(rows[-1][0] if rows else None, len(rows))
    counts: Counter[tuple[str, str]] = Counter()
    for _, packed in rows:
        (source, kind, conversation, flow_id, flow_id2, name, name2, exit_reason, exit2,
         transfer, transfer2, acd, acd2) = _decode_fields(packed)  # fmt: skip
        counts[source or "", kind or ""] += 1
        if kind in _IVR_KINDS:
            scan.ivr.append(
                IvrRow(
                    conversation or "",
                    kind,
                    flow_id if flow_id is not None else flow_id2,
                    name if name is not None else name2,
                    exit_reason if exit_reason is not None else exit2,
                    transfer if transfer is not None else transfer2,
                    acd if acd is not None else acd2,
                )
            )
    if counting:
        scan.kinds = [(source, kind, n) for (source, kind), n in counts.items()]
    return scan


def journal_look(journal: Journal, positions: dict[str, int]) -> dict[str, Any]:
    """Gap states, open gaps (newest first, a few) and, per sink, when the oldest event it has
    not confirmed was received."""
    db = journal.db
    states = dict(db.execute("SELECT state, count(*) FROM gaps GROUP BY state").fetchall())
    open_gaps = [
        {
            "id": r[0],
            "source": r[1],
            "first_seq": r[2],
            "last_seq": r[3],
            "time_from": r[4],
            "time_to": r[5],
            "opened_at": r[6],
            "filled": r[7],
            "note": r[8],
        }
        for r in db.execute(
            "SELECT id, source, first_seq, last_seq, time_from, time_to, opened_at, filled, note"
            " FROM gaps WHERE state = 'open' ORDER BY opened_at DESC LIMIT ?",
            (OPEN_GAPS_SHOWN,),
        )
    ]
    oldest: dict[str, str | None] = {}
    for sink, position in positions.items():
        row = db.execute(
            "SELECT received_at FROM events WHERE pos > ? ORDER BY pos LIMIT 1", (position,)
        ).fetchone()
        oldest[sink] = row[0] if row else None
    return {"gap_states": states, "open_gaps": open_gaps, "oldest_received": oldest}


class Monitor(StartStop):
    """Watches one subscriber; serves ``/metrics``, ``/livez``, ``/readyz`` and ``/status``.

    Create it before ``sub.start()`` (so its hooks see the first connection), start it after.
    """

    def __init__(
        self,
        sub: Subscriber,
        *,
        listen: str | None = None,
        idle_limit: float | None = None,
        history: int = 50,
    ) -> None:
        """``listen``: ``host:port`` or a bare port (on 127.0.0.1); None serves nothing (add
        :attr:`app` to a server of your own). ``idle_limit``: seconds of silence before
        ``/readyz`` fails (default: the source's own idle limit)."""
        self.sub = sub
        self.clock = sub.clock
        self.address = listen_address(listen) if listen is not None else None
        config = sub.config
        if idle_limit is None:
            if config.source == "notifications":
                n = config.notifications
                idle_limit = n.heartbeat_timeout + n.pong_timeout
            else:
                idle_limit = config.eventstreams.idle_timeout
        self.idle_limit = idle_limit
        self.started_at = self.clock.time()
        # counted by hooks
        self.gaps_opened: Counter[str] = Counter()
        self.gaps_closed: Counter[str] = Counter()
        self.quarantined: Counter[str] = Counter()
        self._quarantine_label = Labels(30)
        self.new_fields = 0
        self.auth_failures = 0
        self.reconnects = History(history)
        self.gap_history = History(history)
        # read from the journal
        self.received: Counter[tuple[str, str]] = Counter()
        self.ivr = IvrView(ttl=config.notifications.conversation_ttl)
        self.position: int | None = None
        self.gap_states: dict[str, int] = {}
        self.open_gaps: list[dict[str, Any]] = []
        self.oldest_received: dict[str, str | None] = {}
        self._looked_at = float("-inf")
        # sampled
        self.last_event = Activity()
        self.last_frame = Activity()
        self.rates = {"received": Rates(), "frames": Rates()}
        self.delivery_rates: defaultdict[str, Rates] = defaultdict(Rates)
        self._slots_live: dict[int, bool] = {}
        self._follow_lock = asyncio.Lock()
        self._look_lock = asyncio.Lock()
        self._reader: JournalReader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.url: str | None = None
        self._hook()
        from ivrstream.metrics import registry_for  # prometheus_client only when monitoring

        self.registry = registry_for(self)
        self.app = web.Application()
        self.app.add_routes(routes(self))
        self.app.add_routes(status_page.routes())  # the live page at /

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start following the journal and sampling (the subscriber must have started), and
        serve HTTP when ``listen`` was given."""
        sub = self.sub
        self.position = sub.start_pos
        self._reader = JournalReader(sub.intake.path)
        await self._warm_up()
        self.sample()
        self._tasks = [
            asyncio.ensure_future(self._sample_loop()),
            asyncio.ensure_future(self._follow_loop()),
        ]
        if self.address is not None:
            host, port = self.address
            # a scrape in flight gets a moment at shutdown, then the server goes
            self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            await web.TCPSite(self._runner, host, port).start()
            bound = self._runner.addresses[0]
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
            self.url = f"http://{shown}:{bound[1]}"
            log.info("metrics and health on %s (/metrics /livez /readyz /status)", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- hooks ----------------------------------------------------------------------------------

    def _hook(self) -> None:
        on = self.sub.on
        on("connected", self._on_connected)
        on("disconnected", self._on_disconnected)
        on("reconnecting", self._on_reconnecting)
        on("gap", self._on_gap)
        on("gap_closed", self._on_gap_closed)
        on("quarantined", self._on_quarantined)
        on("schema_field", self._on_schema_field)
        on("auth_failed", self._on_auth_failed)
        on("sink_disabled", self._on_sink_disabled)

    def _now(self) -> float:
        return round(self.clock.time(), 3)

    def _on_connected(self, **details: Any) -> None:
        self.reconnects.add(self._now(), "connected", attempt=details.get("attempt"))

    def _on_disconnected(self, **details: Any) -> None:
        reason = REDACTOR.scrub(str(details.get("reason") or ""))[:120]
        self.reconnects.add(self._now(), "disconnected", code=details.get("code"), reason=reason)

    def _on_reconnecting(self, **details: Any) -> None:
        self.reconnects.add(
            self._now(),
            "reconnecting",
            reason=details.get("reason"),
            attempt=details.get("attempt"),
            delay=round(float(details.get("delay") or 0.0), 3),
        )

    def _on_gap(self, **details: Any) -> None:
        source = _source_of(str(details.get("stream", "")))
        self.gaps_opened[source] += 1
        self.gap_history.add(
            self._now(),
            "opened",
            id=details.get("id"),
            source=source,
            first=details.get("first"),
            last=details.get("last"),
            size=details.get("size"),
        )

    def _on_gap_closed(self, **details: Any) -> None:
        state = str(details.get("state", "unknown"))
        self.gaps_closed[state] += 1
        self.gap_history.add(self._now(), state, id=details.get("id"), filled=details.get("filled"))

    def _on_quarantined(self, **details: Any) -> None:
        self.quarantined[self._quarantine_label(quarantine_label(str(details.get("reason"))))] += 1

    def _on_schema_field(self, **details: Any) -> None:
        self.new_fields += 1

    def _on_auth_failed(self, **details: Any) -> None:
        self.auth_failures += 1

    def _on_sink_disabled(self, **details: Any) -> None:
        self.reconnects.add(self._now(), "sink disabled", sink=details.get("sink"))

    # -- sampling -------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        while True:
            await self.clock.sleep(SAMPLE_EVERY)
            self.sample()

    def sample(self) -> None:
        """Look at the counters once: rates, and whether anything arrived since last time."""
        sub, now = self.sub, self.clock.monotonic()
        stats = sub.intake.stats
        self.rates["received"].add(now, stats.committed)
        self.rates["frames"].add(now, stats.frames)
        for dispatcher in sub.dispatchers:
            self.delivery_rates[dispatcher.name].add(now, dispatcher.stats.delivered)
        source = sub.source
        if isinstance(source, EventStreamsSource):
            # Event Streams sends no heartbeats: every frame is a sign of life
            self.last_event.observe(stats.frames, now)
            self.last_frame.observe(stats.frames, now)
        elif isinstance(source, NotificationsSource):
            self.last_event.observe(source.order.statistics().pushed, now)
            heard = source.last_heard_ms
            if heard is not None:
                self.last_frame.touch(now - max(0.0, self.clock.time() - heard / 1000))
            self._sample_slots(source, now)

    def _sample_slots(self, source: NotificationsSource, now: float) -> None:
        for index, slot in list(source.slots.items()):
            live = slot.lifecycle.live
            was = self._slots_live.get(index)
            if live and not was:
                self.last_frame.touch(now)  # a fresh socket has the whole idle limit
            if was is not None and live != was:
                phase = slot.lifecycle.phase.value
                self.reconnects.add(
                    self._now(), "live" if live else "lost", slot=index, phase=phase
                )
            self._slots_live[index] = live

    # -- following the journal ------------------------------------------------------------------

    async def _warm_up(self) -> None:
        """Which calls are in a flow right now: read the events just before the start."""
        assert self._reader is not None
        assert self.position is not None
        start = max(0, self.position - WARMUP_ROWS)
        scan = await self._reader.call(
            partial(scan_journal, after=start, limit=self.position - start, counting=False)
        )
        self.ivr.apply(scan.ivr, self.clock.monotonic(), count=False)

    async def _follow_loop(self) -> None:
        intake = self.sub.intake
        while True:
            position = self.position or 0
            with contextlib.suppress(Exception):
                await intake.wait_committed(position)
            await self.clock.sleep(FOLLOW_EVERY)
            await self.catch_up()

    async def catch_up(self) -> None:
        """Read everything committed since the last look."""
        async with self._follow_lock:
            reader = self._reader
            while reader is not None and self.position is not None:
                scan = await reader.call(
                    partial(scan_journal, after=self.position, limit=FOLLOW_BATCH)
                )
                if scan.last is None:
                    return
                for source, kind, count in scan.kinds:
                    self.received[source, kind] += count
                self.ivr.apply(scan.ivr, self.clock.monotonic())
                self.position = scan.last
                if scan.rows < FOLLOW_BATCH:
                    return

    async def look(self, *, force: bool = False) -> None:
        """Refresh what only the journal knows: gap states, open gaps, sink ages."""
        async with self._look_lock:
            now = self.clock.monotonic()
            reader = self._reader
            if reader is None or (not force and now - self._looked_at < LOOK_AT_MOST_EVERY):
                return
            positions = {d.name: d.position for d in self.sub.dispatchers}
            found = await reader.call(partial(journal_look, positions=positions))
            self.gap_states = found["gap_states"]
            self.open_gaps = found["open_gaps"]
            self.oldest_received = found["oldest_received"]
            self._looked_at = now

    async def refresh(self) -> None:
        """Bring everything up to date (before a scrape or a status)."""
        await self.catch_up()
        await self.look()

    # -- what is known --------------------------------------------------------------------------

    def connected(self) -> tuple[bool, str]:
        """(connected, state) of the source."""
        source = self.sub.source
        if isinstance(source, EventStreamsSource):
            return source.state == "streaming", source.state
        if isinstance(source, NotificationsSource):
            live = sum(1 for slot in list(source.slots.values()) if slot.lifecycle.live)
            state = f"{source.state}, {live} of {len(source.slots)} channel(s) live"
            return live > 0, state
        return False, "none"

    def silent_for(self) -> float | None:
        """Seconds since the last event or heartbeat (or since the socket opened)."""
        now = self.clock.monotonic()
        ages = [
            a for a in (self.last_event.since(now), self.last_frame.since(now)) if a is not None
        ]
        source = self.sub.source
        if isinstance(source, EventStreamsSource) and source.connected_since is not None:
            ages.append(max(0.0, now - source.connected_since))
        return min(ages) if ages else None

    def readiness(self) -> Readiness:
        error = self.sub.intake.error
        connected, state = self.connected()
        return readiness(
            journal_error=None if error is None else REDACTOR.scrub(str(error)),
            has_source=self.sub.connect,
            connected=connected,
            state=state,
            silent_for=self.silent_for(),
            idle_limit=self.idle_limit,
        )

    def sink_ages(self) -> dict[str, float | None]:
        """Seconds the oldest unconfirmed event of each sink has waited (None: caught up)."""
        now_ms = self.clock.time() * 1000
        ages: dict[str, float | None] = {}
        for dispatcher in self.sub.dispatchers:
            received = self.oldest_received.get(dispatcher.name)
            if received is None or dispatcher.position >= self.sub.intake.last_pos:
                ages[dispatcher.name] = None
                continue
            try:
                ages[dispatcher.name] = max(0.0, (now_ms - parse_ms(received)) / 1000)
            except TimeFormatError:
                ages[dispatcher.name] = None
        return ages

    def reconnect_counts(self) -> dict[tuple[str, str], int]:
        """(source, reason) → sockets that ended and were replaced."""
        source = self.sub.source
        out: dict[tuple[str, str], int] = {}
        if isinstance(source, EventStreamsSource):
            for reason, count in source.endings.items():
                out["eventstreams", reason] = count
        elif isinstance(source, NotificationsSource):
            # each loss window a channel reported, by its reason (stalled, socket closed,
            # socket closing, channel gone, expired, rotated, token revoked)
            reasons = source.reconnects
            out.update({("notifications", r.replace(" ", "_")): n for r, n in reasons.items()})
        return out

    def status(self) -> dict[str, Any]:
        """Everything ``/status`` shows (call :meth:`refresh` first for fresh journal facts)."""
        sub = self.sub
        intake = sub.intake
        now = self.clock.monotonic()
        ready = self.readiness()
        ages = self.sink_ages()
        sinks = {}
        for dispatcher in sub.dispatchers:
            stats = dispatcher.stats
            error = dispatcher.last_error
            sinks[dispatcher.name] = {
                "state": dispatcher.state,
                "position": dispatcher.position,
                "backlog": max(0, intake.last_pos - dispatcher.position),
                "oldest_undelivered_seconds": _round(ages.get(dispatcher.name)),
                "delivered": stats.delivered,
                "retries": stats.retries,
                "dead_lettered": stats.dead_lettered,
                "rate": self.delivery_rates[dispatcher.name].summary(),
                "last_error": None if error is None else REDACTOR.scrub(error)[:200],
            }
        tokens = sub.tokens
        backfill = sub.backfill
        return {
            "service": {
                "version": __version__,
                "pid": os.getpid(),
                "started_at": round(self.started_at, 3),
                "uptime_seconds": round(self.clock.time() - self.started_at, 3),
            },
            "ready": ready.as_dict(),
            "connection": self._connection(),
            "subscription": self._subscription(),
            "rates": {name: rates.summary() for name, rates in self.rates.items()},
            "latency": {
                "receive_to_commit": _percentiles(intake.latency),
                "event_to_commit": _percentiles(intake.event_latency),
            },
            "last": {
                "event_seconds_ago": _round(self.last_event.since(now)),
                "heartbeat_seconds_ago": _round(self.last_frame.since(now)),
                "idle_limit_seconds": self.idle_limit,
            },
            "journal": {
                "path": str(intake.path),
                "last_position": intake.last_pos,
                "committed": intake.stats.committed,
                "duplicates": intake.stats.duplicate_rows,
                "quarantined": intake.stats.quarantined,
                "pending": intake.statistics()["inflight"],
                "writable": intake.error is None,
            },
            "sinks": sinks,
            "gaps": {
                "opened": sum(self.gaps_opened.values()),
                "closed": dict(self.gaps_closed),
                "by_state": dict(self.gap_states),
                "open": self.open_gaps,
                "events_backfilled": backfill.statistics()["events_backfilled"] if backfill else 0,
            },
            "quarantine": dict(self.quarantined),
            "auth": {
                "token_refreshes": tokens.refreshes if tokens else 0,
                "token_failures": tokens.failures if tokens else 0,
                "auth_failures": self.auth_failures,
            },
            "history": {
                "reconnects": self.reconnects.entries(),
                "gaps": self.gap_history.entries(),
            },
            "ivr": self.ivr.snapshot(),
        }

    def _connection(self) -> dict[str, Any]:
        source = self.sub.source
        connected, state = self.connected()
        shown: dict[str, Any] = {"connected": connected, "state": state}
        reconnects = self.reconnect_counts()
        shown["reconnects"] = {reason: n for (_, reason), n in reconnects.items()}
        if isinstance(source, EventStreamsSource):
            since = source.connected_since
            shown.update(
                source="eventstreams",
                url=REDACTOR.scrub(source.url),
                connections=source.connections,
                connected_seconds=None
                if since is None
                else round(self.clock.monotonic() - since, 3),
            )
        elif isinstance(source, NotificationsSource):
            shown.update(
                source="notifications",
                channels=[
                    {
                        "slot": index,
                        "phase": slot.lifecycle.phase.value,
                        "live": slot.lifecycle.live,
                    }
                    for index, slot in sorted(source.slots.items())
                ],
                loss_windows=source.loss_windows,
                sweeps=source.sweeps,
            )
        else:
            shown["source"] = None
        return shown

    def _subscription(self) -> dict[str, Any]:
        source = self.sub.source
        config = self.sub.config
        if isinstance(source, EventStreamsSource):
            es = config.eventstreams
            return {
                "id": source.subscription_id,
                "event_type": es.event_type,
                "data_types": list(es.data_types),
                "filters": dict(es.filters),
                "content_type": es.content_type,
            }
        if isinstance(source, NotificationsSource):
            coverage = source.coverage
            planner = coverage.statistics()[1] if coverage is not None else None
            stats = coverage.statistics()[0] if coverage is not None else None
            return {
                "coverage": list(config.notifications.coverage),
                "topics": getattr(planner, "topics", None),
                "channels": getattr(planner, "channels", None),
                "conversations_covered": getattr(stats, "covered", None),
            }
        return {}


def _source_of(stream: str) -> str:
    return "notifications" if "notifications" in stream.split(":")[:2] else "eventstreams"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _percentiles(histogram: LatencyHistogram) -> dict[str, float | int | None]:
    def ms(p: float) -> float | None:
        value = histogram.percentile(p)  # a bucket's upper bound: never above the maximum
        return None if value is None else round(min(value, histogram.max) * 1000, 3)

    return {
        "count": histogram.total,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "max_ms": round(histogram.max * 1000, 3) if histogram.total else None,
    }


# -- HTTP ------------------------------------------------------------------------------------------


def routes(monitor: Monitor) -> list[web.RouteDef]:
    """``/metrics``, ``/livez``, ``/readyz`` and ``/status`` for ``monitor`` (add them to any
    aiohttp application; ``/`` stays free)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: web.Request) -> web.Response:
        await monitor.refresh()
        body = generate_latest(monitor.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(request: web.Request) -> web.Response:
        return _json({"alive": True})

    async def readyz(request: web.Request) -> web.Response:
        verdict = monitor.readiness()
        return _json(verdict.as_dict(), status=200 if verdict.ok else 503)

    async def status(request: web.Request) -> web.Response:
        await monitor.refresh()
        return _json(monitor.status())

    return [
        web.get("/metrics", metrics),
        web.get("/livez", livez),
        web.get("/readyz", readyz),
        web.get("/status", status),
    ]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
