"""One notification channel slot's lifecycle: create, subscribe, connect, watch, renew, replace.

One :class:`ChannelLifecycle` per slot of the :mod:`~ivrstream.protocol.planner`. It never
knows the topics: :class:`PutTopics` asks the shell to PUT the slot's list as planned *now*
(``planner.channel(slot)``), and :meth:`~ChannelLifecycle.topics_changed` says that list moved.
Inputs are methods that take ``now`` and return actions; :meth:`~ChannelLifecycle.deadline`
says when to call :meth:`~ChannelLifecycle.tick`.

Rules this module keeps (``shared/reference/genesys-cloud.md``, "Notification channels"):

- **Order**: create the channel (POST), PUT its topics (``?ignoreErrors=true``), then connect
  its ``connectUri``. The slot is **live** while a socket is open on a channel whose topics
  were PUT successfully.
- **One HTTP call at a time** per slot (so PUTs to a channel are serialised, as Genesys asks);
  each call is answered by exactly one ``on_channel_created`` / ``on_subscribed`` /
  ``on_channel_found`` / ``on_request_failed``. Answers name no request: they belong to the one
  in flight. At most one socket is connecting; at most two are open (during a hand-over).
- **Watchdog**: any frame (heartbeat, pong, event, anything) resets the idle timer. Nothing for
  ``heartbeat_timeout`` → :class:`SendPing`, once; nothing for ``pong_timeout`` after it → the
  socket is **stalled**: :class:`CloseSocket` and reconnect.
- ``v2.system.socket_closing`` → open a new socket on the same channel **at once** (no backoff,
  not counted as a failure) and keep reading the old one; when the new one opens, the old one
  is closed (Genesys allows one socket per channel and would close it anyway).
- **Renewal**: ``renew_before`` seconds before the channel expires, PUT the same list again
  (:class:`PutTopics` with ``renewal=True``), which extends it. A renewal that fails (other
  than 401 or 404) **rotates**: create a new channel, PUT, connect, and only then close the
  old socket, which keeps delivering meanwhile.
- **Channel gone** — a ``{"result": "404"}`` frame, ``v2.system.no_longer_subscribed.{id}``,
  ``v2.system.token_revoked.{id}`` (plus :class:`RefreshToken`), a 404 on PUT, HEAD or the
  socket upgrade, or its expiry passing — drop it and build a new channel. A dropped or
  replaced channel is not deleted: it expires on its own (Genesys evicts unconnected channels
  first, so it never costs a live one).
- **Backoff** (shared, :mod:`~ivrstream.protocol.backoff`): every setback of the socket side
  (socket ended, connect failed, channel gone) counts; the next connect or channel creation
  waits ``uniform(0, min(cap, base·2ⁿ⁻¹))``. The first stall or lost channel after a healthy
  spell is retried at once. A socket that kept receiving for ``stable_after`` seconds resets the
  count when it ends. HTTP failures have their own count, reset by any HTTP success: 401 →
  :class:`RefreshToken` and retry (at once the first time, then with backoff); a
  ``Retry-After`` from the shell is honoured (a little later, never earlier); otherwise backoff.
- **Loss accounting** — Notifications never re-sends. From the first successful PUT on, every
  period in which the slot is not live is reported as one :class:`LossWindow` when it ends
  (the first one, ``starting``, runs from that PUT to the first socket): it starts at the last
  moment we *know* we were receiving — the last frame on the socket that ended (or the moment
  it opened, if nothing came) minus ``loss_margin`` — and ends when a new socket is open on a
  subscribed channel. An open socket proves nothing (sockets stall); only frames do, and a
  ``{"result": "404"}`` frame proves nothing either. So a hand-over to a new socket — on the
  same channel after socket_closing, or on a new channel after a rotation — is reported too,
  from the old socket's last frame to the new socket (usually a few seconds: the old socket
  delivered until then unless it had stalled unseen). Windows never overlap (a start is
  clamped to the previous end) and :meth:`~ChannelLifecycle.stop` reports the last one.
- **Secrets**: the channel id and ``connectUri`` are bearer secrets. They live only in
  :class:`ChannelHandle` fields the shell reads (``id``, ``connect_uri``) and never reach a
  ``repr``, a reason or :meth:`~ChannelLifecycle.describe`; logs get :func:`channel_tag`.

Time: one clock, **epoch seconds** (``Clock.time()``) for every ``now`` — the same clock the
channel's ``expires`` and the events' ``eventTime`` are on, so windows are plain epoch
milliseconds (starts rounded down, ends up). A wall-clock step shifts timers by the step; a
window never ends before it starts.

Assumptions (Genesys does not document them; each is a constant or a :class:`ChannelTimings`
field):

- :data:`CHANNEL_LIFETIME` — a successful PUT extends the channel to 24 h from the PUT. If not,
  the channel dies before we renew it: that shows up as a loss window, never as silent loss.
- :data:`LOSS_MARGIN` — an event reaches the socket within 5 s of its ``eventTime`` (this also
  absorbs clock skew between this host and Genesys).
- :data:`CHECK_AFTER_FAILURES` — a dead channel might fail the socket upgrade instead of sending
  the 404 message; after 3 failed connects in a row the channel is checked with HEAD.
- Heartbeats come about every 30 s (observed): ``heartbeat_timeout`` (75 s) leaves room for two
  to go missing before we ping. Close codes carry no meaning we rely on.
- After socket_closing the old socket lives until the new one connects (up to a minute).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from ivrstream.isotime import TimeFormatError, parse_ms
from ivrstream.models import Channel, NotificationEnvelope
from ivrstream.protocol.backoff import ceiling, jittered
from ivrstream.protocol.topics import NO_LONGER_SUBSCRIBED, SOCKET_CLOSING, TOKEN_REVOKED

if TYPE_CHECKING:
    from ivrstream.config import NotificationsSettings, ReconnectSettings

CHANNEL_LIFETIME = 24 * 3600.0
LOSS_MARGIN = 5.0
CHECK_AFTER_FAILURES = 3
METADATA_TOPIC = "channel.metadata"
PONG_MESSAGE = "pong"
NOT_FOUND_RESULT = "404"
PING_MESSAGE = '{"message":"ping"}'
_SYSTEM_PREFIX = "v2.system."
_NO_LONGER_SUBSCRIBED_PREFIX = NO_LONGER_SUBSCRIBED.removesuffix("{id}")
_TOKEN_REVOKED_PREFIX = TOKEN_REVOKED.removesuffix("{id}")


class LifecycleError(RuntimeError):
    """The shell broke the protocol: an answer without a request, or an unknown socket."""


def channel_tag(channel_id: str) -> str:
    """The only form of a channel id that may be logged (the emulator's ledger uses it too)."""
    return "ch-" + hashlib.sha256(channel_id.encode()).hexdigest()[:12]


# -- frames ------------------------------------------------------------------------------------


class FrameKind(StrEnum):
    EVENT = "event"
    HEARTBEAT = "heartbeat"  # any channel.metadata message but a pong
    PONG = "pong"
    SOCKET_CLOSING = "socket_closing"
    NO_LONGER_SUBSCRIBED = "no_longer_subscribed"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a frame kind, not a secret
    NOT_FOUND = "not_found"  # {"result": "404"}: the channel is dead
    OTHER = "other"  # other v2.system.* messages, undecodable frames


def frame_kind(frame: Mapping[str, Any] | NotificationEnvelope) -> FrameKind:
    """Classify a decoded socket message (a JSON object or an envelope)."""
    if isinstance(frame, NotificationEnvelope):
        topic: object = frame.topic_name
        body: object = frame.event_body
        result: object = None
    else:
        topic, body, result = frame.get("topicName"), frame.get("eventBody"), frame.get("result")
    if not isinstance(topic, str):
        return FrameKind.NOT_FOUND if str(result) == NOT_FOUND_RESULT else FrameKind.OTHER
    if topic == METADATA_TOPIC:
        message = body.get("message") if isinstance(body, Mapping) else None
        is_pong = isinstance(message, str) and message.lower() == PONG_MESSAGE
        return FrameKind.PONG if is_pong else FrameKind.HEARTBEAT
    if topic == SOCKET_CLOSING:
        return FrameKind.SOCKET_CLOSING
    if topic.startswith(_NO_LONGER_SUBSCRIBED_PREFIX):
        return FrameKind.NO_LONGER_SUBSCRIBED
    if topic.startswith(_TOKEN_REVOKED_PREFIX):
        return FrameKind.TOKEN_REVOKED
    if topic.startswith(_SYSTEM_PREFIX):
        return FrameKind.OTHER
    return FrameKind.EVENT


# -- settings and values -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelTimings:
    """Every duration the lifecycle uses, in seconds. Raises ``ValueError`` when inconsistent."""

    heartbeat_timeout: float = 75.0
    pong_timeout: float = 10.0
    renew_before: float = 3600.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    stable_after: float = 10.0
    loss_margin: float = LOSS_MARGIN
    channel_lifetime: float = CHANNEL_LIFETIME
    check_after_failures: int = CHECK_AFTER_FAILURES

    def __post_init__(self) -> None:
        if min(self.heartbeat_timeout, self.pong_timeout, self.backoff_base) <= 0:
            raise ValueError("heartbeat_timeout, pong_timeout and backoff_base must be positive")
        if self.backoff_cap < self.backoff_base or min(self.stable_after, self.loss_margin) < 0:
            raise ValueError("backoff_cap ≥ backoff_base; stable_after, loss_margin ≥ 0")
        if not 0 < self.renew_before < self.channel_lifetime:
            raise ValueError("renew_before must be between 0 and the channel lifetime")
        if self.check_after_failures < 1:
            raise ValueError("check_after_failures must be ≥ 1")

    @classmethod
    def from_settings(
        cls, notifications: NotificationsSettings, reconnect: ReconnectSettings | None = None
    ) -> ChannelTimings:
        timings = cls(
            heartbeat_timeout=notifications.heartbeat_timeout,
            pong_timeout=notifications.pong_timeout,
            renew_before=notifications.renew_before,
        )
        if reconnect is None:
            return timings
        return replace(
            timings,
            backoff_base=reconnect.base,
            backoff_cap=reconnect.cap,
            stable_after=reconnect.stable_after,
        )


@dataclass(frozen=True, repr=False)
class ChannelHandle:
    """A created channel. ``id`` and ``connect_uri`` are bearer secrets: read them to build a
    URL, never log them; ``repr`` shows only :attr:`tag`."""

    id: str
    connect_uri: str
    expires_at: float = field(compare=False)  # epoch seconds, as the server said at creation

    @classmethod
    def from_wire(cls, channel: Channel, now: float) -> ChannelHandle:
        """From the create response; an unreadable ``expires`` counts as a full lifetime."""
        try:
            expires_at = parse_ms(channel.expires) / 1000
        except TimeFormatError:
            expires_at = now + CHANNEL_LIFETIME
        return cls(channel.id, channel.connect_uri, expires_at)

    @property
    def tag(self) -> str:
        return channel_tag(self.id)

    def __repr__(self) -> str:
        return f"ChannelHandle({self.tag})"


class LossReason(StrEnum):
    """Why a slot stopped being live (the cause that opened a :class:`LossWindow`)."""

    STARTING = "starting"  # topics subscribed, socket not yet open
    SOCKET_CLOSED = "socket closed"  # by the server or the network
    SOCKET_CLOSING = "socket closing"  # maintenance: handed over to a new socket
    ROTATED = "rotated"  # handed over to a new channel (its renewal had failed)
    STALLED = "stalled"  # no heartbeat, event or pong in time
    CHANNEL_GONE = "channel gone"  # 404, no_longer_subscribed
    EXPIRED = "expired"  # the channel's expiry passed without a renewal
    TOKEN_REVOKED = "token revoked"  # noqa: S105 - a reason, not a secret
    STOPPED = "stopped"  # stop() while live or reconnecting


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateChannel:
    """``POST /api/v2/notifications/channels`` → :meth:`ChannelLifecycle.on_channel_created`."""

    reason: str


@dataclass(frozen=True)
class PutTopics:
    """``PUT …/channels/{channel.id}/subscriptions?ignoreErrors=true`` with the slot's list as
    planned now → :meth:`~ChannelLifecycle.on_subscribed` (then ``planner.record(slot, …)``)."""

    channel: ChannelHandle
    renewal: bool = False


@dataclass(frozen=True)
class CheckChannel:
    """``HEAD …/channels/{channel.id}``: 200 → :meth:`~ChannelLifecycle.on_channel_found`,
    otherwise :meth:`~ChannelLifecycle.on_request_failed`."""

    channel: ChannelHandle


@dataclass(frozen=True)
class RefreshToken:
    """Get a fresh token before the next HTTP call (it comes before that call's action)."""

    reason: str


@dataclass(frozen=True)
class Connect:
    """Open socket ``socket`` on :attr:`uri` → ``on_connected`` or ``on_closed``."""

    socket: int
    channel: ChannelHandle

    @property
    def uri(self) -> str:
        return self.channel.connect_uri


@dataclass(frozen=True)
class SendPing:
    """Send :attr:`payload` on ``socket``."""

    socket: int
    payload: ClassVar[str] = PING_MESSAGE


@dataclass(frozen=True)
class CloseSocket:
    """Close (or stop connecting) ``socket``; its later reports are ignored."""

    socket: int
    reason: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` (for logs and hooks; :meth:`~ChannelLifecycle.deadline`
    is what counts)."""

    until: float
    reason: str


@dataclass(frozen=True)
class LossWindow:
    """Events with ``start_ms ≤ eventTime ≤ end_ms`` (epoch ms) may be lost: backfill them."""

    start_ms: int
    end_ms: int
    reason: LossReason


Action: TypeAlias = (
    CreateChannel
    | PutTopics
    | CheckChannel
    | RefreshToken
    | Connect
    | SendPing
    | CloseSocket
    | Wait
    | LossWindow
)


class Phase(StrEnum):
    IDLE = "idle"  # start() not called yet
    CREATING = "creating"  # no channel
    SUBSCRIBING = "subscribing"  # a channel without topics yet
    CONNECTING = "connecting"
    LIVE = "live"
    STOPPED = "stopped"


@dataclass
class LifecycleStats:
    channels_created: int = 0
    channels_lost: int = 0
    rotations: int = 0
    subscribes: int = 0
    renewals: int = 0
    connects: int = 0
    connect_failures: int = 0
    socket_endings: int = 0
    socket_closing_notices: int = 0
    pings: int = 0
    stalls: int = 0
    frames: int = 0
    http_failures: int = 0
    loss_windows: int = 0
    loss_ms: int = 0
    failures: int = 0  # consecutive setbacks now (what the backoff is based on)


# -- internal state ----------------------------------------------------------------------------


class _Call(StrEnum):
    CREATE = "create"
    PUT = "subscribe"
    RENEW = "renew"
    CHECK = "check"


@dataclass(eq=False)
class _Channel:
    handle: ChannelHandle
    expires_at: float
    put_version: int | None = None  # topics version of the last successful PUT
    connect_failures: int = 0
    needs_check: bool = False

    @property
    def subscribed(self) -> bool:
        return self.put_version is not None


@dataclass(eq=False)
class _Socket:
    id: int
    channel: _Channel
    opened_at: float = 0.0
    last_heard: float = 0.0  # last frame, or the moment it opened
    ping_sent_at: float | None = None
    closing_notice: bool = False


@dataclass(frozen=True)
class _Request:
    call: _Call
    channel: _Channel | None
    topics_version: int


_FREE_FIRST = frozenset(
    {LossReason.STALLED, LossReason.CHANNEL_GONE, LossReason.EXPIRED, LossReason.TOKEN_REVOKED}
)


class ChannelLifecycle:
    """One channel slot. Call :meth:`start`, perform every returned action in order, feed back
    what happened through the ``on_*`` methods, and call :meth:`tick` at :meth:`deadline`.

    The shell keeps two lanes per slot: an HTTP lane that runs :class:`RefreshToken`,
    :class:`CreateChannel`, :class:`PutTopics` and :class:`CheckChannel` one after the other
    and answers each call, and a socket lane that runs :class:`Connect`, :class:`SendPing` and
    :class:`CloseSocket` and reports ``on_connected`` / ``on_frame`` / ``on_closed`` with the
    socket id. Every event frame also goes on to decoding and the journal as usual;
    :class:`LossWindow` goes to the backfill. ``on_*`` after :meth:`stop` are ignored."""

    def __init__(self, timings: ChannelTimings | None = None, *, rng: random.Random) -> None:
        self.timings = timings or ChannelTimings()
        self._rng = rng
        self._started = False
        self._stopped = False
        self._current: _Channel | None = None
        self._spare: _Channel | None = None  # the replacement being built while current lives
        self._need_channel = False
        self._live: _Socket | None = None
        self._incoming: _Socket | None = None
        self._next_socket = 1
        self._request: _Request | None = None
        self._topics_version = 0
        self._http_failures = 0
        self._http_retry_at = -math.inf
        self._token_retry_free = True
        self._failures = 0
        self._retry_at = -math.inf
        self._armed = False  # a PUT succeeded once: from now on, every non-live moment counts
        self._outage: tuple[float, LossReason] | None = None  # (start in seconds, reason)
        self._last_end_ms: int | None = None
        self._stats = LifecycleStats()

    # -- control -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self._started:
            raise LifecycleError("already started")
        self._started = True
        self._need_channel = True
        return self._step(now, [])

    def stop(self, now: float) -> list[Action]:
        """Close every socket and report the open loss window (live: from the last frame)."""
        if self._stopped:
            return []
        out: list[Action] = []
        for sock in (self._incoming, self._live):
            if sock is not None:
                out.append(CloseSocket(sock.id, LossReason.STOPPED.value))
        if self._live is not None:
            self._open_outage(self._live.last_heard, LossReason.STOPPED)
        self._close_outage(now, out)
        self._stopped = True
        self._live = self._incoming = None
        return out

    def topics_changed(self, now: float) -> list[Action]:
        """The slot's planned list differs from what was PUT: PUT it (again) when possible."""
        self._topics_version += 1
        return self._step(now, [])

    def tick(self, now: float) -> list[Action]:
        return self._step(now, [])

    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None: only on an input)."""
        if self._stopped or not self._started:
            return None
        times = [c.expires_at for c in (self._current, self._spare) if c is not None]
        live = self._live
        if live is not None:
            if live.ping_sent_at is None:
                times.append(live.last_heard + self.timings.heartbeat_timeout)
            else:
                times.append(live.ping_sent_at + self.timings.pong_timeout)
        if self._request is None:
            times.extend(when for when, _, _, _ in self._http_candidates())
        target = self._socket_target()
        if target is not None:
            times.append(self._retry_at)
        return min(times, default=None)

    # -- HTTP answers --------------------------------------------------------------------------

    def on_channel_created(self, channel: Channel, now: float) -> list[Action]:
        if self._stopped:
            return []
        self._answer(_Call.CREATE)
        self._http_succeeded()
        handle = ChannelHandle.from_wire(channel, now)
        created = _Channel(handle, handle.expires_at)
        self._stats.channels_created += 1
        self._need_channel = False
        if self._current is None:
            self._current = created
        else:
            self._spare = created
        return self._step(now, [])

    def on_subscribed(self, now: float) -> list[Action]:
        """The PUT succeeded (whatever each topic's state: rejections are the planner's)."""
        if self._stopped:
            return []
        request = self._answer(_Call.PUT, _Call.RENEW)
        self._http_succeeded()
        channel = request.channel
        if channel is not None and self._known(channel):
            channel.put_version = request.topics_version
            channel.expires_at = max(channel.expires_at, now + self.timings.channel_lifetime)
            self._stats.subscribes += 1
            self._stats.renewals += request.call is _Call.RENEW
            if not self._armed:
                self._armed = True
                if self._live is None:
                    self._outage = (now, LossReason.STARTING)
        return self._step(now, [])

    def on_channel_found(self, now: float) -> list[Action]:
        """HEAD answered 200: keep connecting."""
        if self._stopped:
            return []
        request = self._answer(_Call.CHECK)
        self._http_succeeded()
        if request.channel is not None:
            request.channel.needs_check = False
            request.channel.connect_failures = 0
        return self._step(now, [])

    def on_request_failed(
        self, status: int | None, now: float, retry_after: float | None = None
    ) -> list[Action]:
        """The HTTP call in flight failed: ``status`` None for a network error or timeout;
        ``retry_after`` in seconds when the response had ``Retry-After``."""
        if self._stopped:
            return []
        request = self._answer(*_Call)
        out: list[Action] = []
        channel = request.channel
        known = channel is not None and self._known(channel)
        self._stats.http_failures += 1
        if status == 404 and channel is not None:
            if known:
                self._gone(channel, now, LossReason.CHANNEL_GONE, out)
            return self._step(now, out)
        if status == 401:
            out.append(RefreshToken(f"HTTP 401 on {request.call.value}"))
            if self._token_retry_free:
                self._token_retry_free = False
                return self._step(now, out)
        self._http_failures += 1
        if retry_after is not None:
            delay = jittered(max(retry_after, 0.0), self._rng)
        else:
            delay = self._backoff(self._http_failures)
        self._http_retry_at = now + delay
        what = "network error" if status is None else f"HTTP {status}"
        out.append(Wait(self._http_retry_at, f"{request.call.value} failed: {what}"))
        if request.call is _Call.RENEW and channel is self._current and self._spare is None:
            self._need_channel = True
            self._stats.rotations += 1
        elif request.call is _Call.CHECK and channel is not None:
            channel.needs_check = False
            channel.connect_failures = 0
        return self._step(now, out)

    # -- socket reports ------------------------------------------------------------------------

    def on_connected(self, socket: int, now: float) -> list[Action]:
        if self._stopped:
            return []
        self._check_socket(socket)
        sock = self._incoming
        if sock is None or sock.id != socket:
            return self._step(now, [])
        out: list[Action] = []
        self._incoming = None
        sock.opened_at = sock.last_heard = now
        sock.channel.connect_failures = 0
        old = self._live
        if old is not None:
            out.append(CloseSocket(old.id, "replaced by a new socket"))
            same = old.channel is sock.channel
            why = LossReason.SOCKET_CLOSING if same else LossReason.ROTATED
            self._open_outage(old.last_heard, why)  # it may have stalled since its last frame
            self._end_spell(old)
        if sock.channel is self._spare:
            self._current, self._spare = self._spare, None
        self._live = sock
        self._close_outage(now, out)
        return self._step(now, out)

    def on_frame(self, socket: int, kind: FrameKind, now: float) -> list[Action]:
        """A message arrived on ``socket`` (classify it with :func:`frame_kind`)."""
        if self._stopped:
            return []
        self._check_socket(socket)
        sock = self._live
        out: list[Action] = []
        if sock is None or sock.id != socket:
            return self._step(now, out)
        self._stats.frames += 1
        if kind is not FrameKind.NOT_FOUND:  # a dead channel's notice proves no delivery
            sock.last_heard = max(sock.last_heard, now)
            sock.ping_sent_at = None
        if kind is FrameKind.SOCKET_CLOSING:
            sock.closing_notice = True
            self._stats.socket_closing_notices += 1
        elif kind in (FrameKind.NOT_FOUND, FrameKind.NO_LONGER_SUBSCRIBED):
            self._gone(sock.channel, now, LossReason.CHANNEL_GONE, out)
        elif kind is FrameKind.TOKEN_REVOKED:
            out.append(RefreshToken("token revoked"))
            self._gone(sock.channel, now, LossReason.TOKEN_REVOKED, out)
        return self._step(now, out)

    def on_closed(
        self, socket: int, code: int | None, now: float, *, status: int | None = None
    ) -> list[Action]:
        """``socket`` ended or failed to open: ``code`` is the close code (None: none), ``status``
        the HTTP status of a refused upgrade."""
        if self._stopped:
            return []
        self._check_socket(socket)
        out: list[Action] = []
        incoming, live = self._incoming, self._live
        if incoming is not None and incoming.id == socket:
            self._incoming = None
            self._stats.connect_failures += 1
            if status == 404:
                self._gone(incoming.channel, now, LossReason.CHANNEL_GONE, out)
            else:
                channel = incoming.channel
                channel.connect_failures += 1
                if channel.connect_failures >= self.timings.check_after_failures:
                    channel.needs_check = True
                self._setback(now, "connect failed", out, free_first=False)
        elif live is not None and live.id == socket:
            why = LossReason.SOCKET_CLOSING if live.closing_notice else LossReason.SOCKET_CLOSED
            self._end_live(now, why, out, close=False)
        return self._step(now, out)

    # -- what is known -------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self._live is not None and not self._stopped

    @property
    def phase(self) -> Phase:
        if self._stopped:
            return Phase.STOPPED
        if not self._started:
            return Phase.IDLE
        if self._live is not None:
            return Phase.LIVE
        if self._current is None:
            return Phase.CREATING
        return Phase.CONNECTING if self._current.subscribed else Phase.SUBSCRIBING

    @property
    def at_cap(self) -> bool:
        """The reconnect delays have reached the cap: report the slot unhealthy."""
        t = self.timings
        return ceiling(t.backoff_base, t.backoff_cap, max(0, self._failures - 1)) >= t.backoff_cap

    @property
    def outage_since_ms(self) -> int | None:
        """Start of the loss window still open (for readiness and metrics)."""
        if self._outage is None:
            return None
        return self._window_start_ms(self._outage[0])

    def statistics(self) -> LifecycleStats:
        return replace(self._stats, failures=self._failures)

    def describe(self) -> str:
        """One line for logs: tags only, never a channel id or URI."""
        parts = [self.phase.value]
        if self._current is not None:
            parts.append(f"channel {self._current.handle.tag}")
        if self._spare is not None:
            parts.append(f"replacement {self._spare.handle.tag}")
        if self._live is not None:
            parts.append(f"socket {self._live.id}")
        if self._incoming is not None:
            parts.append(f"connecting socket {self._incoming.id}")
        if self._request is not None:
            parts.append(f"{self._request.call.value} in flight")
        if self._failures:
            parts.append(f"{self._failures} setbacks")
        if self._outage is not None:
            parts.append(f"losing since {self._outage[1].value}")
        return ", ".join(parts)

    # -- the steps -----------------------------------------------------------------------------

    def _step(self, now: float, out: list[Action]) -> list[Action]:
        """Act on every timer that is due and start whatever the slot needs next."""
        if self._stopped or not self._started:
            return out
        for channel in (self._current, self._spare):
            if channel is not None and now >= channel.expires_at:
                self._gone(channel, now, LossReason.EXPIRED, out)
        self._watch(now, out)
        self._next_http(now, out)
        self._next_socket_step(now, out)
        return out

    def _watch(self, now: float, out: list[Action]) -> None:
        live = self._live
        if live is None:
            return
        if live.ping_sent_at is None:
            if now >= live.last_heard + self.timings.heartbeat_timeout:
                live.ping_sent_at = now
                self._stats.pings += 1
                out.append(SendPing(live.id))
        elif now >= live.ping_sent_at + self.timings.pong_timeout:
            self._stats.stalls += 1
            self._end_live(now, LossReason.STALLED, out, close=True)

    def _http_candidates(self) -> list[tuple[float, int, _Call, _Channel | None]]:
        """(not before, priority, call, channel) for each HTTP call the slot wants."""
        wanted: list[tuple[float, int, _Call, _Channel | None]] = []
        if self._need_channel:
            wanted.append((max(self._http_retry_at, self._retry_at), 0, _Call.CREATE, None))
        for channel in (self._spare, self._current):
            if channel is None:
                continue
            if channel.needs_check:
                wanted.append((self._http_retry_at, 1, _Call.CHECK, channel))
            if channel.put_version != self._topics_version:
                wanted.append((self._http_retry_at, 2, _Call.PUT, channel))
        current = self._current
        if current is not None and current.subscribed and not self._rotating:
            renew_at = current.expires_at - self.timings.renew_before
            wanted.append((max(self._http_retry_at, renew_at), 3, _Call.RENEW, current))
        return wanted

    def _next_http(self, now: float, out: list[Action]) -> None:
        if self._request is not None:
            return
        due = [c for c in self._http_candidates() if c[0] <= now]
        if not due:
            return
        _, _, call, channel = min(due, key=lambda c: c[1])
        if call is _Call.PUT and channel is self._current and channel is not None:
            renew_at = channel.expires_at - self.timings.renew_before
            if channel.subscribed and now >= renew_at and not self._rotating:
                call = _Call.RENEW
        self._request = _Request(call, channel, self._topics_version)
        if channel is None:
            reason = "replace the channel" if self._current is not None else "new channel"
            out.append(CreateChannel(reason))
        elif call is _Call.CHECK:
            out.append(CheckChannel(channel.handle))
        else:
            out.append(PutTopics(channel.handle, renewal=call is _Call.RENEW))

    def _socket_target(self) -> _Channel | None:
        """The channel a new socket should open on, if one is wanted now."""
        if self._incoming is not None:
            return None
        spare, current, live = self._spare, self._current, self._live
        if spare is not None and spare.subscribed:
            target = spare
        elif current is not None and current.subscribed:
            target = current
        else:
            return None
        if live is not None and live.channel is target and not live.closing_notice:
            return None
        return target

    def _next_socket_step(self, now: float, out: list[Action]) -> None:
        target = self._socket_target()
        if target is None or now < self._retry_at:
            return
        sock = _Socket(self._next_socket, target)
        self._next_socket += 1
        self._incoming = sock
        self._stats.connects += 1
        out.append(Connect(sock.id, target.handle))

    # -- setbacks ------------------------------------------------------------------------------

    def _end_live(self, now: float, why: LossReason, out: list[Action], *, close: bool) -> None:
        live = self._live
        assert live is not None
        self._live = None
        self._stats.socket_endings += 1
        if close:
            out.append(CloseSocket(live.id, why.value))
        self._open_outage(live.last_heard, why)
        self._end_spell(live)
        if why is not LossReason.SOCKET_CLOSING:  # announced maintenance: not a failure
            self._setback(now, why.value, out, free_first=why in _FREE_FIRST)

    def _end_spell(self, sock: _Socket) -> None:
        """A socket that kept receiving for ``stable_after`` resets the backoff."""
        if sock.last_heard - sock.opened_at >= self.timings.stable_after:
            self._failures = 0

    def _gone(self, channel: _Channel, now: float, why: LossReason, out: list[Action]) -> None:
        """``channel`` no longer exists: drop it and its sockets; a new one will be built."""
        incoming = self._incoming
        if incoming is not None and incoming.channel is channel:
            out.append(CloseSocket(incoming.id, why.value))
            self._incoming = None
        if channel is self._current:
            live = self._live
            if live is not None and live.channel is channel:
                self._end_live(now, why, out, close=True)
            else:
                self._setback(now, why.value, out, free_first=True)
            self._current, self._spare = self._spare, None
            self._need_channel = self._need_channel or self._current is None
        elif channel is self._spare:  # a rotation is still wanted: build another spare
            self._spare = None
            self._need_channel = True
            self._setback(now, why.value, out, free_first=True)
        else:
            return
        self._stats.channels_lost += 1

    def _setback(self, now: float, why: str, out: list[Action], *, free_first: bool) -> None:
        self._failures += 1
        if free_first and self._failures == 1:
            self._retry_at = now
            return
        delay = self._backoff(self._failures)
        self._retry_at = now + delay
        if delay > 0:
            out.append(Wait(self._retry_at, f"{why} (setback {self._failures})"))

    def _backoff(self, attempt: int) -> float:
        t = self.timings
        return self._rng.uniform(0.0, ceiling(t.backoff_base, t.backoff_cap, attempt - 1))

    # -- loss windows --------------------------------------------------------------------------

    def _open_outage(self, last_heard: float, why: LossReason) -> None:
        if self._armed and self._outage is None:
            self._outage = (last_heard - self.timings.loss_margin, why)

    def _close_outage(self, now: float, out: list[Action]) -> None:
        if self._outage is None:
            return
        start_s, why = self._outage
        self._outage = None
        start_ms = self._window_start_ms(start_s)
        end_ms = max(math.ceil(now * 1000), start_ms)
        self._last_end_ms = end_ms
        self._stats.loss_windows += 1
        self._stats.loss_ms += end_ms - start_ms
        out.append(LossWindow(start_ms, end_ms, why))

    def _window_start_ms(self, start_s: float) -> int:
        start_ms = math.floor(start_s * 1000)
        return start_ms if self._last_end_ms is None else max(start_ms, self._last_end_ms)

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def _rotating(self) -> bool:
        return self._spare is not None or (self._need_channel and self._current is not None)

    def _known(self, channel: _Channel) -> bool:
        return channel is self._current or channel is self._spare

    def _answer(self, *calls: _Call) -> _Request:
        request = self._request
        if request is None or request.call not in calls:
            raise LifecycleError(f"no {'/'.join(c.value for c in calls)} request in flight")
        self._request = None
        return request

    def _http_succeeded(self) -> None:
        self._http_failures = 0
        self._token_retry_free = True
        self._http_retry_at = -math.inf

    def _check_socket(self, socket: int) -> None:
        if not 1 <= socket < self._next_socket:
            raise LifecycleError(f"socket {socket} was never asked for")
