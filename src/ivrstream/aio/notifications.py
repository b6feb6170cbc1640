"""The Notifications source: channels planned, kept alive and read; events journaled; holes filled.

The protocol lives in :mod:`ivrstream.protocol` — the topic budget (``coverage``/``planner``),
each channel's lifecycle (``notifications``), event-time ordering (``timeorder``) and the
envelope → event mapping (``ivrstream.normalize``). This module only performs what they ask for:

- one :class:`_Slot` per planned channel runs a :class:`ChannelLifecycle` — its HTTP calls
  (create, PUT topics, HEAD), its sockets (connect, read, ping, close) and its timer;
- every frame feeds the lifecycle's watchdog; detail events go through the per-conversation
  time order into intake; flow-metric and queue messages name conversations to cover;
- every :class:`LossWindow` (a time the channel could not deliver) becomes an open gap in the
  journal, which the :class:`~ivrstream.backfill.Backfiller` fills from analytics;
- a **sweep** journals, from analytics, what is missing of every conversation that started since
  the last sweep, once it has settled: the early events of a conversation are sent before its
  topics can exist, so analytics is what makes the journal complete. The sweep's watermark and the
  last time the source heard from Genesys are kept in the journal, so a restart (even after
  ``kill -9``) records the time it was away as a gap and sweeps on from where it stopped.

Channel ids and connect URIs are bearer secrets: they are registered with the log scrubber and
only ever appear in logs as :func:`~ivrstream.protocol.notifications.channel_tag`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from functools import partial
from typing import Any, Literal

import aiohttp
import msgspec

from ivrstream.aio.http import drive, send
from ivrstream.aio.intake import SOURCE_MARK_PREFIX
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.runtime import Runtime
from ivrstream.backfill import Backfiller
from ivrstream.clock import wait_event
from ivrstream.codec import Rejected
from ivrstream.config import Config, Endpoints
from ivrstream.errors import IvrstreamError
from ivrstream.isotime import TimeFormatError, format_ms, parse_ms
from ivrstream.journal import GapRow, Journal, StreamMark
from ivrstream.logs import register_secret
from ivrstream.models import Channel, ChannelTopicList, InteractionEvent, NotificationEnvelope
from ivrstream.normalize import (
    TopicRole,
    classify,
    discovered_conversations,
    from_notification,
)
from ivrstream.protocol.analytics import Interval, query_interval
from ivrstream.protocol.conversation import NetworkError, Request, Response, retry_after_seconds
from ivrstream.protocol.coverage import Coverage
from ivrstream.protocol.notifications import (
    Action,
    ChannelLifecycle,
    ChannelTimings,
    CheckChannel,
    CloseSocket,
    Connect,
    CreateChannel,
    FrameKind,
    LossReason,
    LossWindow,
    PutTopics,
    RefreshToken,
    SendPing,
    frame_kind,
)
from ivrstream.protocol.timeorder import TimeOrder
from ivrstream.protocol.topics import over_websocket

log = logging.getLogger("ivrstream.notifications")
Socket = aiohttp.ClientWebSocketResponse[Literal[False]]
CHANNELS_PATH = "/api/v2/notifications/channels"
FLOWS_PATH = "/api/v2/flows"
CATALOGUE_PATH = "/api/v2/notifications/availabletopics"
FLOW_METRICS_PATTERN = "v2.analytics.flow.{id}.metrics"
DISCOVERY_WINDOW = 600.0  # seconds: how far back the discovery poll looks for calls in progress
MAX_FRAME_BYTES = 16 * 1024 * 1024
MARK_EVERY_MS = 1_000  # how often the last-heard moment is written to the journal (at most)
PLAN_DEBOUNCE = 0.2  # seconds between two plans that change channel lists


class NotificationsSource:
    """Runs the channels the topic plan needs until stopped."""

    def __init__(
        self,
        config: Config,
        endpoints: Endpoints,
        client_id: str,
        runtime: Runtime,
        backfill: Backfiller | None,
    ) -> None:
        self.config = config
        self.settings = config.notifications
        self.api_url = endpoints.api_url.rstrip("/")
        self.tokens, self.session, self.intake, self.clock, self.rng, self.hooks = runtime
        self.backfill = backfill
        self.key = f"{SOURCE_MARK_PREFIX}notifications:{client_id}"
        self.timings = ChannelTimings.from_settings(self.settings, config.reconnect)
        self.coverage: Coverage | None = None
        self.order: TimeOrder[InteractionEvent] = TimeOrder.from_settings(self.settings)
        self.slots: dict[int, _Slot] = {}
        self.state = "idle"
        self.quarantined: Counter[str] = Counter()
        self.reconnects: Counter[str] = Counter()  # loss window reason → how many
        self.loss_windows = 0
        self.sweeps = 0
        self.discovery_polls = 0
        self.discovered_by_poll = 0
        self.flow_metrics_available = True
        self.last_heard_ms: int | None = None
        self.swept_until_ms: int | None = None
        self.restart_gap: tuple[int, str] | None = None  # (from ms, id) until the first live slot
        self._stopping = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._reader: JournalReader | None = None
        self._mark_saved_ms = 0
        self._decode_envelope = msgspec.json.Decoder(NotificationEnvelope).decode
        self._decode_any = msgspec.json.Decoder().decode

    # -- control --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Plan, connect and keep going until :meth:`stop`."""
        self.state = "starting"
        now_ms = self._now_ms()
        mark = self.intake.source_mark(self.key)
        if mark is not None and mark.high_time is not None:
            # we were away (a restart, perhaps kill -9): everything since we last heard is a gap
            self.restart_gap = (mark.high_time, uuid.uuid4().hex)
        self.swept_until_ms = mark.high if mark is not None and mark.high > 0 else now_ms
        self.coverage = Coverage(self.settings, flow_ids=await self._flow_ids())
        self._reader = JournalReader(self.intake.path)
        self._tasks = [
            asyncio.ensure_future(self._plan_loop()),
            asyncio.ensure_future(self._sweep_loop()),
        ]
        if self.settings.discovery_interval > 0 and "conversations" in self.settings.coverage:
            self._tasks.append(asyncio.ensure_future(self._discovery_loop()))
        self.state = "running"
        try:
            await asyncio.gather(*self._tasks)
        finally:
            self.state = "stopped"

    async def stop(self) -> None:
        """Close every socket (reporting the last loss windows), release what is held."""
        self._stopping = True
        now = self.clock.time()
        for slot in self.slots.values():
            await slot.stop(now)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._emit(self.order.drain())
        self._save_mark(force=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- planning -------------------------------------------------------------------------------

    async def _flow_ids(self) -> list[str]:
        """The flows whose metrics topics find conversations: configured ids, plus named flows
        (or every INBOUNDCALL flow when none is configured) looked up once at start."""
        settings = self.settings
        ids = list(settings.flow_ids)
        if "flows" not in settings.coverage:
            return ids
        if not await self._flow_metrics_over_websocket():
            log.warning(
                "the topic catalogue says %s is not delivered over WebSocket here: conversations"
                " are found by queue topics, the discovery poll and the analytics sweep instead",
                FLOW_METRICS_PATTERN,
            )
            self.flow_metrics_available = False
            return []
        if ids and not settings.flow_names:
            return ids
        try:
            flows = await self._list_flows()
        except (NetworkError, aiohttp.ClientError, msgspec.DecodeError) as exc:
            log.warning("could not list flows (%s): using the configured flow ids only", exc)
            return ids
        wanted = set(settings.flow_names)
        for flow in flows:
            if not wanted or flow.get("name") in wanted:
                ids.append(str(flow.get("id")))
        missing = wanted - {f.get("name") for f in flows}
        if missing:
            log.warning("flows not found by name: %s", ", ".join(sorted(missing)))
        return list(dict.fromkeys(ids))

    async def _flow_metrics_over_websocket(self) -> bool:
        """Ask the topic catalogue (``transports``) whether flow metrics reach a socket; when it
        cannot be read, assume they do (a missing topic shows up as a rejection instead)."""
        url = f"{self.api_url}{CATALOGUE_PATH}?expand=transports"
        try:
            response = await self._http(Request("GET", url))
            if response.status != 200:
                raise NetworkError(f"answered {response.status}")
            entities = self._decode_any(response.body).get("entities") or []
        except (NetworkError, msgspec.DecodeError, AttributeError) as exc:
            log.info("could not read the topic catalogue (%s): assuming flow metrics work", exc)
            return True
        for entity in entities:
            if isinstance(entity, dict) and entity.get("id") == FLOW_METRICS_PATTERN:
                transports = entity.get("transports")
                return not isinstance(transports, list) or over_websocket(map(str, transports))
        return False  # not in the catalogue at all

    async def _list_flows(self) -> list[dict[str, Any]]:
        flows: list[dict[str, Any]] = []
        page = 1
        while page <= 100:
            url = f"{self.api_url}{FLOWS_PATH}?type=inboundcall&pageSize=100&pageNumber={page}"
            response = await self._http(Request("GET", url))
            if response.status != 200:
                raise NetworkError(f"GET {FLOWS_PATH} answered {response.status}")
            body = self._decode_any(response.body)
            entities = body.get("entities") or []
            flows.extend(e for e in entities if isinstance(e, dict))
            if page >= int(body.get("pageCount") or 1) or not entities:
                break
            page += 1
        return flows

    async def _plan_loop(self) -> None:
        """Apply the topic plan to the slots, and run the coverage and order timers."""
        coverage = self.coverage
        assert coverage is not None
        while not self._stopping:
            now = self.clock.time()
            coverage.tick(now)
            self._emit(self.order.expire(now))
            plan = coverage.plan()
            for rejection in plan.rejected:
                missing = ", ".join(rejection.missing_permissions) or "none named"
                log.warning(
                    "topic refused: %s (%s; missing permissions: %s)",
                    rejection.topic,
                    rejection.reason,
                    missing,
                )
                self.hooks.emit("topic_rejected", topic=rejection.topic, reason=rejection.reason)
            for index in plan.channels:
                slot = self.slots.get(index)
                if slot is None:
                    slot = self.slots[index] = _Slot(index, self)
                    slot.start(now)
                else:
                    slot.topics_changed(now)
            for handout in coverage.backfill():
                # the sweep journals every conversation from analytics once it has settled
                log.debug(
                    "conversation %s needs analytics: %s",
                    handout.conversation_id,
                    handout.reason.value,
                )
            self._save_mark()
            if plan.channels:  # let a burst of discoveries go out in one PUT per channel
                await self.clock.sleep(PLAN_DEBOUNCE)
            deadlines = [d for d in (coverage.next_deadline(), self.order.deadline()) if d]
            wait = min([*deadlines, now + 1.0]) - now
            self._wake.clear()
            await wait_event(self._wake, wait, self.clock)

    def replan(self) -> None:
        self._wake.set()

    # -- frames -----------------------------------------------------------------------------------

    def on_message(self, slot: _Slot, socket: int, payload: bytes) -> None:
        """One text frame from a channel socket."""
        now = self.clock.time()
        try:
            envelope: NotificationEnvelope | None = self._decode_envelope(payload)
            kind = frame_kind(envelope)  # type: ignore[arg-type]
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = None
            try:
                frame = self._decode_any(payload)
            except msgspec.DecodeError as exc:
                self._quarantine(slot, payload, f"not JSON: {exc}")
                slot.feed(slot.lifecycle.on_frame(socket, FrameKind.OTHER, now))
                return
            kind = frame_kind(frame) if isinstance(frame, dict) else FrameKind.OTHER
            if kind is FrameKind.OTHER:
                self._quarantine(slot, payload, "not a notification envelope")
        self.last_heard_ms = round(now * 1000)
        slot.feed(slot.lifecycle.on_frame(socket, kind, now))
        if kind is FrameKind.EVENT and envelope is not None:
            self._on_event(slot, envelope, now)

    def _on_event(self, slot: _Slot, envelope: NotificationEnvelope, now: float) -> None:
        coverage = self.coverage
        assert coverage is not None
        role = classify(envelope.topic_name)
        if role is TopicRole.DISCOVERY:
            changed = False
            for found in discovered_conversations(envelope):
                started = None if found.start_ms is None else found.start_ms / 1000
                coverage.discovered(found.conversation_id, now, started_at=started)
                if found.ended:
                    coverage.ended(found.conversation_id, now)
                changed = True
            if changed:
                self.replan()
            return
        event = from_notification(envelope, self._iso(now))
        if isinstance(event, Rejected):
            self._quarantine(slot, msgspec.json.encode(envelope), event.reason)
            return
        if event is None:
            return
        coverage.observe(envelope.topic_name, now)
        time_ms = envelope.event_body.get("eventTime")
        assert isinstance(time_ms, int)
        self._emit(self.order.push(event.conversation_id, time_ms, event, now))

    def _emit(self, events: list[InteractionEvent]) -> None:
        if events:
            self.intake.append_events(events, received_mono=self.clock.monotonic())

    def _quarantine(self, slot: _Slot, payload: bytes, reason: str) -> None:
        self.quarantined[reason.split(":")[0]] += 1
        self.intake.quarantine("notifications", slot.tag, payload, reason)

    def _iso(self, now: float) -> str:
        return format_ms(round(now * 1000))

    # -- loss, restart and sweeps -----------------------------------------------------------------

    def on_loss(self, slot: _Slot, window: LossWindow) -> None:
        """A time the slot could not deliver: a gap for the backfill. (Not at a clean stop: the
        next start records the whole time away, from the moment we last heard.)"""
        self.loss_windows += 1
        if window.reason is LossReason.STOPPED:
            return
        if window.reason is not LossReason.STARTING:
            self.reconnects[window.reason.value] += 1
            self.hooks.emit("reconnecting", attempt=None, delay=0.0, reason=window.reason.value)
        if window.reason is LossReason.STARTING and self.restart_gap is not None:
            return  # inside the time away, which is recorded as one gap when a slot is live
        self._record_window(
            uuid.uuid4().hex, window.start_ms, window.end_ms, f"{slot.tag}: {window.reason.value}"
        )

    def on_live(self) -> None:
        """A slot went live: the time we were away before it is now bounded."""
        if self.restart_gap is not None:
            start_ms, gap_id = self.restart_gap
            self.restart_gap = None
            self._record_window(gap_id, start_ms, self._now_ms(), "restart: not running")

    def _record_window(self, gap_id: str, start_ms: int, end_ms: int, why: str) -> None:
        now_ms = self._now_ms()
        row = GapRow(
            id=gap_id,
            source="notifications",
            stream=self.key,
            first_seq=None,
            last_seq=None,
            time_from=start_ms,
            time_to=max(start_ms, end_ms),
            opened_at=now_ms,
            state="open",
            note=why,
        )
        self.intake.record_gaps([row])
        log.warning(
            "notifications: events between %s and %s may be lost (%s); backfill will fill them",
            self._iso(start_ms / 1000),
            self._iso(end_ms / 1000),
            why,
        )
        self.hooks.emit(
            "gap",
            stream=self.key,
            id=gap_id,
            first=None,
            last=None,
            size=None,
            time_from=start_ms,
            time_to=end_ms,
        )
        if self.backfill is not None:
            self.backfill.wake()

    async def _sweep_loop(self) -> None:
        """Journal, from analytics, every conversation that started since the last sweep."""
        settings = self.config.backfill
        every = max(settings.check_every, 1.0)
        while not self._stopping:
            await self.clock.sleep(every)
            if self.backfill is None or self.backfill.is_paused() or self._reader is None:
                continue
            start = self.swept_until_ms
            end = self._now_ms() - round(settings.settle * 1000)
            if start is None or end <= start or await self._gaps_pending():
                continue
            outcome = await self.backfill.sweep(start, end, reader=self._reader)
            if outcome.error is not None or outcome.state != "filled":
                continue
            self.sweeps += 1
            self._release_ended(outcome.ended)
            unfinished = outcome.unfinished_from_ms
            self.swept_until_ms = end if unfinished is None else min(end, unfinished)
            self._save_mark(force=True)
            if outcome.inserted:
                log.info("sweep %s: %s", self._iso(start / 1000), outcome.describe())

    async def _discovery_loop(self) -> None:
        """Every ``discovery_interval``: ask analytics for IVR conversations still in progress
        and cover those no topic named (flow metrics may be missing or lost with a socket)."""
        every = self.settings.discovery_interval
        while not self._stopping:
            await self.clock.sleep(every)
            now_ms = self._now_ms()
            window = Interval(now_ms - round(max(2 * every, DISCOVERY_WINDOW) * 1000), now_ms)
            found: list[dict[str, Any]] = []
            try:
                await self.tokens.get()
                await drive(
                    query_interval(
                        window,
                        api_url=self.api_url,
                        bearer=self._bearer,
                        settings=self.config.backfill,
                        rng=self.rng,
                        on_page=partial(_collect, found),
                    ),
                    self.session,
                    self.clock,
                )
            except IvrstreamError as exc:
                log.info("discovery poll skipped: %s", exc)
                continue
            self.discovery_polls += 1
            self._discovered_by_poll(found)

    def _discovered_by_poll(self, conversations: list[dict[str, Any]]) -> None:
        coverage = self.coverage
        assert coverage is not None
        now = self.clock.time()
        for conversation in conversations:
            conversation_id = conversation.get("conversationId")
            if not isinstance(conversation_id, str) or conversation.get("conversationEnd"):
                continue
            if coverage.state(conversation_id) is not None:
                continue  # already known
            started = conversation.get("conversationStart")
            try:
                started_at = parse_ms(str(started)) / 1000
            except TimeFormatError:
                started_at = None
            coverage.discovered(conversation_id, now, started_at=started_at)
            self.discovered_by_poll += 1
        self.replan()

    def _bearer(self) -> str:
        token = self.tokens.token
        return token.access_token if token is not None else ""

    async def _gaps_pending(self) -> bool:
        """Loss windows go first: their backfill counts what each one lacked (a sweep over
        the same time would leave them nothing to count)."""
        if self.restart_gap is not None:
            return True
        assert self._reader is not None
        gaps = await self._reader.call(partial(Journal.gaps, stream=self.key, state="open"))
        return bool(gaps)

    def _release_ended(self, conversations: list[str]) -> None:
        """Analytics says these are over: release their topics even if their end event was
        lost with a socket (else they would hold their topics until the TTL)."""
        coverage = self.coverage
        if coverage is None:
            return
        now = self.clock.time()
        for conversation_id in conversations:
            if coverage.state(conversation_id) is not None:
                coverage.ended(conversation_id, now)
        self.replan()

    def _save_mark(self, *, force: bool = False) -> None:
        """Remember (in the journal) the sweep watermark and when we last heard from Genesys,
        at most once a second."""
        now_ms = self._now_ms()
        if not force and now_ms - self._mark_saved_ms < MARK_EVERY_MS:
            return
        if self.swept_until_ms is None:
            return
        heard = self.last_heard_ms
        if heard is None:
            mark = self.intake.source_mark(self.key)
            heard = mark.high_time if mark is not None else None
        if self.restart_gap is not None:  # still away: keep the older moment
            heard = self.restart_gap[0]
        self._mark_saved_ms = now_ms
        self.intake.note_source(StreamMark(self.key, None, self.swept_until_ms, heard))

    # -- HTTP ---------------------------------------------------------------------------------

    async def _http(self, request: Request) -> Response:
        token = await self.tokens.get()
        headers = {**request.headers, "Authorization": f"Bearer {token.access_token}"}
        if request.body:
            headers["Content-Type"] = "application/json"
        return await send(
            self.session,
            Request(request.method, request.url, headers=headers, body=request.body),
        )

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def statistics(self) -> dict[str, Any]:
        coverage_stats, planner_stats = (
            self.coverage.statistics() if self.coverage is not None else (None, None)
        )
        return {
            "state": self.state,
            "slots": {i: s.statistics() for i, s in self.slots.items()},
            "loss_windows": self.loss_windows,
            "reconnects": dict(self.reconnects),
            "sweeps": self.sweeps,
            "discovery_polls": self.discovery_polls,
            "discovered_by_poll": self.discovered_by_poll,
            "flow_metrics_over_websocket": self.flow_metrics_available,
            "swept_until_ms": self.swept_until_ms,
            "coverage": vars(coverage_stats) if coverage_stats else None,
            "planner": vars(planner_stats) if planner_stats else None,
            "order": vars(self.order.statistics()),
            "quarantined": dict(self.quarantined),
        }


def _collect(into: list[dict[str, Any]], page: list[dict[str, Any]], _resume: int) -> None:
    into.extend(page)


class _Slot:
    """One channel slot: performs its lifecycle's actions."""

    def __init__(self, index: int, source: NotificationsSource) -> None:
        self.index = index
        self.source = source
        self.lifecycle = ChannelLifecycle(source.timings, rng=source.rng)
        self.tag = f"slot {index}"
        self.sockets: dict[int, Socket] = {}
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._http: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_wake = asyncio.Event()
        self._refresh = False
        self._background: set[asyncio.Task[Any]] = set()

    def start(self, now: float) -> None:
        self.feed(self.lifecycle.start(now))
        self._timer = asyncio.ensure_future(self._timer_loop())

    def topics_changed(self, now: float) -> None:
        self.feed(self.lifecycle.topics_changed(now))

    async def stop(self, now: float) -> None:
        self.feed(self.lifecycle.stop(now))
        tasks = [*self._readers.values(), *self._background]
        if self._timer is not None:
            tasks.append(self._timer)
        if self._http is not None:
            tasks.append(self._http)
        for socket in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.close(), 1.0)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- actions --------------------------------------------------------------------------------

    def feed(self, actions: list[Action]) -> None:
        """Perform ``actions`` in order (HTTP calls and connects run as tasks)."""
        for action in actions:
            if isinstance(action, RefreshToken):
                self._refresh = True
            elif isinstance(action, CreateChannel | PutTopics | CheckChannel):
                self._http = asyncio.ensure_future(self._call(action))
            elif isinstance(action, Connect):
                register_secret(action.channel.id)
                register_secret(action.uri)
                self._spawn(self._connect(action))
            elif isinstance(action, SendPing):
                socket = self.sockets.get(action.socket)
                if socket is not None and not socket.closed:
                    self._spawn(socket.send_str(action.payload))
            elif isinstance(action, CloseSocket):
                self._close(action.socket)
            elif isinstance(action, LossWindow):
                self.source.on_loss(self, action)
        if self.lifecycle.live:
            self.source.on_live()
        self._timer_wake.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _close(self, socket_id: int) -> None:
        socket = self.sockets.pop(socket_id, None)
        reader = self._readers.pop(socket_id, None)
        if socket is not None and not socket.closed:
            self._spawn(socket.close())
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()

    async def _timer_loop(self) -> None:
        clock = self.source.clock
        while True:
            deadline = self.lifecycle.deadline()
            now = clock.time()
            if deadline is not None and deadline <= now:
                self.feed(self.lifecycle.tick(now))
                await asyncio.sleep(0)
                continue
            wait = 5.0 if deadline is None else min(deadline - now, 5.0)
            self._timer_wake.clear()
            await wait_event(self._timer_wake, wait, clock)

    # -- HTTP -----------------------------------------------------------------------------------

    async def _call(self, action: CreateChannel | PutTopics | CheckChannel) -> None:
        source = self.source
        lifecycle = self.lifecycle
        if self._refresh:
            self._refresh = False
            source.tokens.invalidate()
        base = f"{source.api_url}{CHANNELS_PATH}"
        try:
            if isinstance(action, CreateChannel):
                response = await source._http(Request("POST", base, body=b"{}"))
                if response.status in (200, 201):
                    channel = msgspec.json.decode(response.body, type=Channel)
                    register_secret(channel.id)
                    register_secret(channel.connect_uri)
                    self.feed(lifecycle.on_channel_created(channel, source.clock.time()))
                    return
            elif isinstance(action, PutTopics):
                coverage = source.coverage
                assert coverage is not None
                topics = coverage.planner.channel(self.index)
                body = msgspec.json.encode([{"id": t} for t in topics])
                url = f"{base}/{action.channel.id}/subscriptions?ignoreErrors=true"
                response = await source._http(Request("PUT", url, body=body))
                if response.status == 200:
                    listed = msgspec.json.decode(response.body, type=ChannelTopicList)
                    coverage.record(self.index, [msgspec.to_builtins(t) for t in listed.entities])
                    self.feed(lifecycle.on_subscribed(source.clock.time()))
                    source.replan()
                    return
            else:
                url = f"{base}/{action.channel.id}"
                response = await source._http(Request("HEAD", url))
                if response.status == 200:
                    self.feed(lifecycle.on_channel_found(source.clock.time()))
                    return
            log.warning("%s: %s answered %d", self.tag, type(action).__name__, response.status)
            self.feed(
                lifecycle.on_request_failed(
                    response.status, source.clock.time(), retry_after_seconds(response)
                )
            )
        except (NetworkError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s: %s failed: %s", self.tag, type(action).__name__, exc)
            self.feed(lifecycle.on_request_failed(None, source.clock.time()))
        except Exception as exc:  # an auth failure surfaces here: keep the slot going
            log.warning("%s: %s failed: %s", self.tag, type(action).__name__, exc)
            self.feed(lifecycle.on_request_failed(None, source.clock.time()))

    # -- sockets --------------------------------------------------------------------------------

    async def _connect(self, action: Connect) -> None:
        source = self.source
        try:
            socket: Socket = await source.session.ws_connect(
                action.uri,
                heartbeat=None,
                autoping=True,
                max_msg_size=MAX_FRAME_BYTES,
                decode_text=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            self.feed(
                self.lifecycle.on_closed(
                    action.socket, None, source.clock.time(), status=exc.status
                )
            )
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("%s: connect failed: %s", self.tag, type(exc).__name__)
            self.feed(self.lifecycle.on_closed(action.socket, None, source.clock.time()))
            return
        self.sockets[action.socket] = socket
        self.feed(self.lifecycle.on_connected(action.socket, source.clock.time()))
        reader = asyncio.ensure_future(self._read(action.socket, socket))
        self._readers[action.socket] = reader

    async def _read(self, socket_id: int, socket: Socket) -> None:
        source = self.source
        intake = source.intake
        code: int | None = None
        try:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    source.on_message(self, socket_id, message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    source._quarantine(self, message.data, "binary frame on a notification channel")
                if intake.backlogged:
                    await intake.wait_for_room()
            code = socket.close_code
        finally:
            if self.sockets.get(socket_id) is socket:
                del self.sockets[socket_id]
                self._readers.pop(socket_id, None)
                self.feed(self.lifecycle.on_closed(socket_id, code, source.clock.time()))

    def statistics(self) -> dict[str, Any]:
        return {"phase": self.lifecycle.phase.value, **vars(self.lifecycle.statistics())}
