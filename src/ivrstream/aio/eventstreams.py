"""The Event Streams source: one socket at a time, subscribed, read, and reconnected.

Frames go straight to :class:`~ivrstream.aio.intake.Intake`; this module only decides when to
connect, what to ask for (``resumeAfter`` from the journal) and what an ending means
(:mod:`ivrstream.protocol.reconnect`). An idle watchdog closes a socket that stays silent for
``idle_timeout``; intake asks for a reconnect when a gap is worth a resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any, ClassVar, Literal

import aiohttp
import msgspec
from aiohttp.http_websocket import WSMessageTextBytes

from ivrstream.aio.runtime import Runtime
from ivrstream.config import Config, Endpoints
from ivrstream.errors import (
    AuthError,
    GiveUp,
    MissingScope,
    SubscriptionRejected,
    TransientError,
)
from ivrstream.models import Subscribed
from ivrstream.protocol.eventstreams import (
    MAX_CONNECTIONS_PER_ORG,
    build_subscription,
    check_subscription_bytes,
    encode_subscription,
    stream_key,
)
from ivrstream.protocol.reconnect import ReconnectPolicy, Why, why_closed

log = logging.getLogger("ivrstream.eventstreams")
Socket = aiohttp.ClientWebSocketResponse[Literal[False]]  # text frames arrive as bytes
Message = aiohttp.WSMessage | WSMessageTextBytes
HARD_FRAME_LIMIT = 64 * 1024 * 1024  # beyond this aiohttp drops the socket; ours is lower
CLOSE_NORMAL = 1000


class EventStreamsSource:
    """Connects, subscribes, feeds intake, and reconnects until stopped or refused for good."""

    open_sockets: ClassVar[int] = 0  # this process's Event Streams sockets (quota: 100)

    def __init__(
        self,
        config: Config,
        endpoints: Endpoints,
        client_id: str,
        runtime: Runtime,
    ) -> None:
        self.settings = config.eventstreams
        self.url = endpoints.events_url
        self.tokens, self.session, self.intake, self.clock, rng, self.hooks = runtime
        es = self.settings
        self.subscription = build_subscription(
            event_type=es.event_type,
            data_types=es.data_types,
            filters=es.filters,
            retry=es.retry,
            content_type=es.content_type,
            interaction_id=es.interaction_id,
        )
        self.key = stream_key(self.subscription, client_id, self.url)
        rc = config.reconnect
        self.stable_after = rc.stable_after
        self.policy = ReconnectPolicy(
            base=rc.base, cap=rc.cap, max_attempts=rc.max_attempts or None, rng=rng
        )
        self.intake.on_resend = self._resend_wanted
        self.state = "idle"
        self.connections = 0
        self.endings: Counter[str] = Counter()
        self.subscription_id: str | None = None
        self.connected_since: float | None = None
        self._ws: Socket | None = None
        self._closing_because: Why | None = None
        self._stopping = False
        self._sleep: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._conn_id = ""
        self._background: set[asyncio.Future[Any]] = set()

    # -- control --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """End :meth:`run`: close the socket with 1000 (a full close handshake) and stop.

        Not by cancelling the reading task: aiohttp marks a socket whose pending ``receive`` was
        cancelled as abnormally closed and then skips the close handshake.
        """
        self._stopping = True
        if self._sleep is not None:
            self._sleep.cancel()
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=CLOSE_NORMAL, message=b"shutdown"), 1.5)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 1.0)

    def is_stopping(self) -> bool:
        return self._stopping

    def _resend_wanted(self, key: str) -> None:
        if key == self.key:
            self._close_soon(Why.RESEND)

    def _close_soon(self, why: Why) -> None:
        ws = self._ws
        if ws is not None and not ws.closed and self._closing_because is None:
            self._closing_because = why
            task = asyncio.ensure_future(ws.close(code=1000, message=why.value.encode()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until stopped. Raises :class:`SubscriptionRejected`, :class:`AuthError` or
        :class:`GiveUp` when retrying cannot help."""
        payload = encode_subscription(self.subscription)
        verdict = check_subscription_bytes(payload)
        if not verdict.ok:
            raise SubscriptionRejected(
                "the configured subscription is invalid: "
                + "; ".join(str(v) for v in verdict.violations)
            )
        self._task = asyncio.current_task()
        watchdog = asyncio.ensure_future(self._watchdog())
        try:
            await self._loop()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            watchdog.cancel()
            self.state = "stopped" if self.state != "failed" else "failed"

    async def _loop(self) -> None:
        while not self.is_stopping():
            why, detail = await self._connect_once()
            if self.is_stopping():
                break
            self.endings[why.value] += 1
            decision = self.policy.after(why, detail)
            if decision.stop is not None:
                self.state = "failed"
                if why is Why.FORBIDDEN:
                    raise SubscriptionRejected(
                        f"Event Streams refused the subscription (4003): {detail}"
                    )
                self.hooks.emit("max_reconnects", attempts=decision.attempt, reason=why.value)
                raise GiveUp(decision.stop)
            self.state = "waiting"
            log.info(
                "reconnecting in %.2fs (attempt %d, %s%s)",
                decision.delay,
                decision.attempt,
                why.value,
                f": {detail}" if detail else "",
            )
            self.hooks.emit(
                "reconnecting",
                attempt=decision.attempt,
                delay=decision.delay,
                reason=why.value,
            )
            if decision.refresh_token:
                self.tokens.invalidate()
            await self._pause(decision.delay)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        with contextlib.suppress(asyncio.CancelledError):
            await self._sleep
        self._sleep = None

    async def _connect_once(self) -> tuple[Why, str]:
        self.state = "connecting"
        try:
            token = await self.tokens.get()
        except AuthError as exc:
            self.hooks.emit("auth_failed", error=str(exc))
            raise
        except TransientError as exc:
            return Why.NETWORK, f"token: {exc}"
        if EventStreamsSource.open_sockets >= MAX_CONNECTIONS_PER_ORG:
            raise SubscriptionRejected(
                f"this process already has {EventStreamsSource.open_sockets} Event Streams"
                f" sockets open; the organisation may have at most {MAX_CONNECTIONS_PER_ORG}"
            )
        url = self.url
        headers = {}
        if self.settings.token_in_query:
            url = f"{url}?access_token={token.access_token}"
        else:
            headers["Authorization"] = f"Bearer {token.access_token}"
        try:
            ws = await self.session.ws_connect(
                url,
                headers=headers,
                max_msg_size=HARD_FRAME_LIMIT,
                autoping=True,
                decode_text=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                self.hooks.emit("auth_failed", error="401 on the Event Streams upgrade")
                return Why.TOKEN, "401 on upgrade"
            if exc.status == 403:
                error = MissingScope(
                    "Event Streams refused the token (403): the OAuth client needs the"
                    " view:interaction scope"
                )
                self.hooks.emit("auth_failed", error=str(error))
                raise error from None
            return Why.SERVER, f"upgrade answered {exc.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Why.NETWORK, f"{type(exc).__name__}: {exc}"
        EventStreamsSource.open_sockets += 1
        self.connections += 1
        self._conn_id = f"es-{self.connections}"
        self._closing_because = None
        try:
            return await self._stream(ws)
        finally:
            EventStreamsSource.open_sockets -= 1
            self._ws = None
            self.connected_since = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(code=CLOSE_NORMAL, message=b"shutdown" if self._stopping else b""),
                    1.5,
                )

    async def _stream(self, ws: Socket) -> tuple[Why, str]:
        resume = self.intake.resume_point(self.key)
        subscription = msgspec.structs.replace(self.subscription, resume_after=resume)
        payload = encode_subscription(subscription)
        await ws.send_frame(payload, aiohttp.WSMsgType.TEXT)
        ack = await self._acknowledgement(ws)
        if not isinstance(ack, Subscribed):
            return ack
        self.subscription_id = ack.subscription_id
        self.intake.subscribed(
            self.key, "eventstreams", ack.subscription_id, ack.sequence_id, resume
        )
        self._ws = ws
        self.state = "streaming"
        self.connected_since = self.clock.monotonic()
        log.info(
            "subscribed to %s as %s (resumeAfter %s, server at %d)",
            self.url,
            ack.subscription_id,
            resume,
            ack.sequence_id,
        )
        self.hooks.emit("connected", url=self.url, attempt=self.policy.attempts)
        self.hooks.emit(
            "subscribed",
            subscription_id=ack.subscription_id,
            resume_after=resume,
            server_sequence=ack.sequence_id,
        )
        on_frame = self.intake.on_frame
        intake = self.intake
        key, conn = self.key, self._conn_id
        binary, text = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
        delivered = False
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is binary:
                on_frame(key, conn, msg.data, False)
            elif kind is text:
                on_frame(key, conn, msg.data, True)
            else:
                break
            if not delivered:
                delivered = True
                self.policy.streaming()
            if intake.backlogged:
                await intake.wait_for_room()
        return self._ending(ws, msg)

    async def _acknowledgement(self, ws: Socket) -> Subscribed | tuple[Why, str]:
        try:
            async with asyncio.timeout(self.settings.subscribe_timeout):
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        try:
                            return msgspec.json.decode(msg.data, type=Subscribed)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            self.intake.quarantine(
                                "eventstreams",
                                self._conn_id,
                                bytes(msg.data),
                                "expected the subscription acknowledgement",
                            )
                            continue
                    return self._ending(ws, msg)
        except TimeoutError:
            return Why.NETWORK, "no subscription acknowledgement"

    def _ending(self, ws: Socket, msg: Message) -> tuple[Why, str]:
        code: int | None = ws.close_code
        reason = ""
        if msg.type is aiohttp.WSMsgType.CLOSE:
            code = int(msg.data)
            reason = str(msg.extra or "")
        elif msg.type is aiohttp.WSMsgType.ERROR:
            reason = f"{type(msg.data).__name__}: {msg.data}"
            if isinstance(msg.data, aiohttp.WebSocketError) and msg.data.code == 1009:
                self.intake.quarantine(
                    "eventstreams",
                    self._conn_id,
                    b"",
                    f"frame over the hard limit of {HARD_FRAME_LIMIT} bytes (bytes not kept)",
                )
        why = self._closing_because or why_closed(code)
        self.hooks.emit("disconnected", code=code, reason=reason or why.value)
        if not self._stopping:
            log.info(
                "socket closed (%s, code %s%s)", why.value, code, f": {reason}" if reason else ""
            )
        return why, reason

    async def _watchdog(self) -> None:
        """Close a socket that has been silent for ``idle_timeout``; count stable connections
        as successes."""
        idle = self.settings.idle_timeout
        tick = max(0.01, min(idle / 4, 1.0))
        last_frames = -1
        silent_since = self.clock.monotonic()
        while True:
            await self.clock.sleep(tick)
            now = self.clock.monotonic()
            frames = self.intake.stats.frames
            if frames != last_frames or self._ws is None:
                last_frames, silent_since = frames, now
            elif now - silent_since >= idle:
                log.warning("nothing arrived for %.1fs: reconnecting", now - silent_since)
                self._close_soon(Why.IDLE)
                silent_since = now
            since = self.connected_since
            if since is not None and now - since >= self.stable_after:
                self.policy.streaming()

    def statistics(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "stream": self.key,
            "subscription_id": self.subscription_id,
            "connections": self.connections,
            "endings": dict(self.endings),
            "attempts": self.policy.attempts,
            "unhealthy": self.policy.at_cap and self.state != "streaming",
        }
