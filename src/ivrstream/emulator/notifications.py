"""Notifications API: channels, topic subscriptions and the streaming socket ``/channels/{id}``.

Rules this module keeps (``shared/reference/genesys-cloud.md``, "Notification channels"):

- Every REST call needs a bearer token. A channel belongs to the OAuth client of the token that
  created it; to any other client it does not exist (404), as does a channel after expiry,
  eviction or revocation.
- A client has at most ``max_channels`` channels: one more silently evicts its least recently
  used channel, unconnected channels first. An evicted channel's socket gets
  ``v2.system.no_longer_subscribed.{id}`` and is closed. "Used" = created, subscribed, connected
  to or pinged.
- A channel lives ``channel_ttl`` seconds of the clock; every successful POST/PUT of its
  subscriptions extends that from now. At expiry its socket is closed.
- Subscriptions hold at most ``max_topics`` topics after combined topics are expanded (more:
  400, ``ignoreErrors`` or not). A combined topic is at most ``max_combined_topic_length``
  characters. One rejected topic (unknown, wildcard, bad id, missing permission, not available
  over WebSocket) fails the whole request with 400 — unless ``ignoreErrors=true``, which lists it
  as ``Rejected`` and keeps the rest.
- One socket per channel: a second one closes the first. The socket needs no token: the channel
  id is a bearer secret, so the ledger only ever holds a short hash of it (``ch-…``).
- Heartbeat every ``heartbeat_interval`` seconds of the clock and a pong for every ping, both as
  control frames (no frame faults; a stalled socket sends nothing).
- An event goes to every channel subscribed to its concrete topic that has a socket open at that
  moment. Nothing is kept for a channel without one: delivery is lossy, as in Genesys.

Assumptions where Genesys is silent (change them here): close codes — 1000 after a kick,
expiry, eviction, revocation or the 404 message, 1001 after ``socket_closing``; revoking a token
kills the channels it created (``v2.system.token_revoked.{id}`` first); the ``oauthclient`` list
shows channels of the client's other tokens without ``id``/``connectUri`` ("presented to show
their existence"); ``availabletopics`` fields other than ``id``/``description`` appear only when
named in ``expand``; error codes and message texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
import string
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMessage, WSMsgType, web

from ivrstream.clock import Clock
from ivrstream.emulator import render
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.faults import FaultState, OutFrame
from ivrstream.emulator.ledger import Ledger
from ivrstream.emulator.oauth import IssuedToken, TokenIssuer, api_error
from ivrstream.emulator.sockets import EmulatedSocket
from ivrstream.emulator.traffic import Fact, stable_uuid
from ivrstream.isotime import format_ms
from ivrstream.models import ApiError, Channel, NotificationEnvelope, TopicRef
from ivrstream.protocol.topics import (
    CATALOGUE,
    EVENTBRIDGE,
    FLOW_METRICS,
    NO_LONGER_SUBSCRIBED,
    SOCKET_CLOSING,
    TOKEN_REVOKED,
    TopicError,
    TopicSpec,
    expand_combined,
    missing_permissions,
    over_websocket,
    parse_topic,
)

API = "/api/v2/notifications"
CHANNEL_PREFIX = "streaming-0-"
_ID_ALPHABET = string.ascii_lowercase + string.digits
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
_json = msgspec.json.Encoder()


def _control(topic: str, message: str) -> OutFrame:
    payload = _json.encode({"topicName": topic, "eventBody": {"message": message}})
    return OutFrame(payload, text=True, topic=topic)


HEARTBEAT = _control("channel.metadata", "WebSocket Heartbeat")
PONG = _control("channel.metadata", "pong")


def system_frame(topic: str, message: str, *, ledger_topic: str | None = None) -> OutFrame:
    """A ``v2.system.*`` message; ``ledger_topic`` replaces a topic that names a channel id."""
    envelope = NotificationEnvelope(
        topic_name=topic,
        version="2",
        event_body={"message": message},
        metadata={"CorrelationId": str(uuid.uuid4())},
    )
    return OutFrame(_json.encode(envelope), text=True, topic=ledger_topic or topic)


def not_found_frame() -> OutFrame:
    """What a socket on a dead or unknown channel receives before it is closed."""
    payload = _json.encode({"result": "404", "message": "Channel not found or expired"})
    return OutFrame(payload, text=True)


_MALFORMED_ID = "00000000-0000-4000-8000-000000000000"


def make_malformed(kind: str, size: int) -> OutFrame:
    """A broken notification frame of ``kind`` (see ``faults.MALFORMED_KINDS``)."""
    if kind == "invalid_json":
        return OutFrame(b'{"topicName": "v2.detail.events.conversation.', text=True)
    if kind == "invalid_msgpack":
        return OutFrame(b"\x84\xa9topicName\xc1\xc1\xc1", text=False)
    if kind == "truncated_event":
        whole = _json.encode(
            {
                "topicName": "v2.detail.events.conversation.x.flow.start",
                "eventBody": {"conversationId": _MALFORMED_ID, "ani": "tel:+15555550199"},
            }
        )
        return OutFrame(whole[: len(whole) * 3 // 5], text=True)
    envelope: dict[str, Any] = {
        "topicName": f"v2.detail.events.conversation.{_MALFORMED_ID}.flow.start",
        "version": "2",
        "eventBody": {"eventTime": 0, "conversationId": _MALFORMED_ID},
        "metadata": {"CorrelationId": _MALFORMED_ID},
    }
    if kind == "missing_field":
        del envelope["topicName"]
    elif kind == "wrong_type":
        envelope["eventBody"] = "not an object"
    elif kind == "oversized":
        envelope["eventBody"]["padding"] = "x" * size
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return OutFrame(_json.encode(envelope), text=True)


def channel_tag(channel_id: str) -> str:
    """The only form of a channel id that may be logged or recorded."""
    return "ch-" + hashlib.sha256(channel_id.encode()).hexdigest()[:12]


@dataclass(eq=False)
class Stream:
    """One socket on ``/channels/{id}``; ``channel`` is None when the channel was dead."""

    socket: EmulatedSocket
    channel: ChannelState | None
    closer: asyncio.Task[None] | None = None  # the pending close after socket_closing


@dataclass(eq=False)
class ChannelState:
    id: str
    tag: str
    token: IssuedToken  # the creator: lists by token, dies with it when revoked
    connect_uri: str
    expires_at: float  # clock time
    last_used: int  # a use counter: higher is more recent
    topics: dict[str, None] = field(default_factory=dict)  # an ordered set
    stream: Stream | None = None

    @property
    def client_id(self) -> str:
        return self.token.client.client_id

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.socket.closed.is_set()

    def public(self) -> Channel:
        return Channel(id=self.id, connect_uri=self.connect_uri, expires=_iso(self.expires_at))


@dataclass(frozen=True)
class Rejection:
    topic: str
    reason: str
    missing: tuple[str, ...] = ()

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.topic,
            "state": "Rejected",
            "rejectionReason": self.reason,
            "missingPermissions": list(self.missing),
        }


def _iso(clock_seconds: float) -> str:
    return format_ms(round(clock_seconds * 1000))


def _permitted(topic: str) -> dict[str, Any]:
    return {"id": topic, "state": "Permitted"}


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_json.encode(body), content_type="application/json")


def _not_found() -> web.Response:
    return api_error(404, "not.found", "The channel does not exist or has expired.")


class Notifications:
    """Serves the channels REST API and the streaming sockets; turns facts into events."""

    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        issuer: TokenIssuer,
        faults: FaultState,
        ledger: Ledger,
    ) -> None:
        self.config = config
        self.clock = clock
        self.issuer = issuer
        self.faults = faults
        self.ledger = ledger
        self.channels: dict[str, ChannelState] = {}
        self._index: dict[str, set[ChannelState]] = {}  # concrete topic → subscribed channels
        self._streams: set[Stream] = set()
        self._conn_ids = itertools.count(1)
        self._uses = itertools.count(1)
        issuer.on_revoke.append(self._on_tokens_revoked)

    def _require(self, request: web.Request) -> IssuedToken:
        """The request's valid token, or 401 as ``issuer.require`` answers — without its
        ``HTTPUnauthorized(body=…)``, deprecated by aiohttp 3.14 (an error under pytest).
        """
        token, problem = self.issuer.from_request(request)
        if token is None:
            error = ApiError(
                status=401,
                code="bad.credentials",
                message=f"Invalid login credentials ({problem} token).",
            )
            raise web.HTTPUnauthorized(
                text=_json.encode(error).decode(), content_type="application/json"
            )
        return token

    def routes(self) -> list[web.RouteDef]:
        subscriptions = API + "/channels/{channel_id}/subscriptions"
        return [
            web.post(API + "/channels", self._create_channel),
            web.get(API + "/channels", self._list_channels, allow_head=False),
            web.head(API + "/channels/{channel_id}", self._head_channel),
            web.get(subscriptions, self._get_subscriptions, allow_head=False),
            web.post(subscriptions, self._post_subscriptions),
            web.put(subscriptions, self._put_subscriptions),
            web.delete(subscriptions, self._delete_subscriptions),
            web.get(API + "/availabletopics", self._available_topics, allow_head=False),
            web.get("/channels/{channel_id}", self._socket, allow_head=False),
        ]

    # -- channels --------------------------------------------------------------------------------

    async def _create_channel(self, request: web.Request) -> web.Response:
        token = self._require(request)
        owned = [c for c in self.channels.values() if c.client_id == token.client.client_id]
        while len(owned) >= self.config.max_channels:
            victim = _least_recently_used(owned)
            owned.remove(victim)
            self._evict(victim)
        channel_id = CHANNEL_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))
        channel = ChannelState(
            id=channel_id,
            tag=channel_tag(channel_id),
            token=token,
            connect_uri=f"ws://{request.host}/channels/{channel_id}",
            expires_at=self.clock.time() + self.config.channel_ttl,
            last_used=next(self._uses),
        )
        self.channels[channel_id] = channel
        self._record(channel, "created")
        return _json_response(channel.public())

    async def _list_channels(self, request: web.Request) -> web.Response:
        token = self._require(request)
        across_client = request.query.get("includechannels", "token").lower() == "oauthclient"
        entities: list[Any] = []
        for channel in self._live_channels():
            if channel.token is token:
                entities.append(channel.public())
            elif across_client and channel.client_id == token.client.client_id:
                entities.append({"expires": _iso(channel.expires_at)})
        return _json_response({"entities": entities})

    async def _head_channel(self, request: web.Request) -> web.Response:
        channel = self._owned(request)
        return web.Response(status=200) if channel is not None else _not_found()

    def _live(self, channel_id: str) -> ChannelState | None:
        """The channel if it exists and has not expired (an expired one dies here and now)."""
        channel = self.channels.get(channel_id)
        if channel is not None and channel.expires_at <= self.clock.time():
            self._kill(channel, "expired")
            return None
        return channel

    def _live_channels(self) -> list[ChannelState]:
        return [c for c in list(self.channels.values()) if self._live(c.id) is not None]

    def _owned(self, request: web.Request) -> ChannelState | None:
        """The request's channel if it is alive and belongs to the token's client (checks auth)."""
        token = self._require(request)
        channel = self._live(request.match_info["channel_id"])
        if channel is None or channel.client_id != token.client.client_id:
            return None
        return channel

    def _touch(self, channel: ChannelState) -> None:
        channel.last_used = next(self._uses)

    def _record(self, channel: ChannelState, event: str, **details: Any) -> None:
        self.ledger.record(
            "channel", channel=channel.tag, client=channel.client_id, event=event, **details
        )

    def _evict(self, channel: ChannelState) -> None:
        notice = system_frame(
            NO_LONGER_SUBSCRIBED.replace("{id}", channel.id),
            "Channel replaced: create a new channel",
            ledger_topic=NO_LONGER_SUBSCRIBED.removesuffix(".{id}"),
        )
        self._kill(channel, "evicted", notice)

    def _kill(self, channel: ChannelState, why: str, notice: OutFrame | None = None) -> None:
        """Remove ``channel`` everywhere; its socket gets ``notice`` (if any) and is closed."""
        if self.channels.pop(channel.id, None) is None:
            return
        for topic in channel.topics:
            self._unindex(topic, channel)
        stream, channel.stream = channel.stream, None
        if stream is not None and not stream.socket.closed.is_set():
            if notice is not None:
                stream.socket.send_control(notice)
            stream.socket.request_close(CLOSE_NORMAL, f"channel {why}")
        self._record(channel, why)

    def _on_tokens_revoked(self) -> None:
        for channel in [c for c in self.channels.values() if c.token.revoked]:
            notice = system_frame(
                TOKEN_REVOKED.replace("{id}", channel.id),
                "The token that created this channel was revoked",
                ledger_topic=TOKEN_REVOKED.removesuffix(".{id}"),
            )
            self._kill(channel, "revoked", notice)

    # -- subscriptions ---------------------------------------------------------------------------

    async def _get_subscriptions(self, request: web.Request) -> web.Response:
        channel = self._owned(request)
        if channel is None:
            return _not_found()
        return _json_response({"entities": [_permitted(t) for t in channel.topics]})

    async def _post_subscriptions(self, request: web.Request) -> web.Response:
        return await self._change_subscriptions(request, replace=False)

    async def _put_subscriptions(self, request: web.Request) -> web.Response:
        return await self._change_subscriptions(request, replace=True)

    async def _delete_subscriptions(self, request: web.Request) -> web.Response:
        channel = self._owned(request)
        if channel is None:
            return _not_found()
        self._set_topics(channel, [])
        self._touch(channel)
        self._record(channel, "unsubscribed")
        return web.Response(status=204)

    async def _change_subscriptions(self, request: web.Request, *, replace: bool) -> web.Response:
        channel = self._owned(request)
        if channel is None:
            return _not_found()
        try:
            refs = msgspec.json.decode(await request.read(), type=list[TopicRef])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return api_error(400, "bad.request", f"The body must be [{{'id': topic}}, …]: {exc}")
        accepted, rejected = self._vet(refs, channel.token.client.permissions)
        if rejected and request.query.get("ignoreErrors", "").lower() != "true":
            return _rejected_response(rejected)
        topics = accepted if replace else list(dict.fromkeys([*channel.topics, *accepted]))
        if len(topics) > self.config.max_topics:
            return _topic_limit_response(len(topics), self.config.max_topics)
        self._set_topics(channel, topics)
        channel.expires_at = self.clock.time() + self.config.channel_ttl
        self._touch(channel)
        self._record(
            channel,
            "subscribed",
            method="PUT" if replace else "POST",
            topics=len(topics),
            rejected=len(rejected),
        )
        entities = [_permitted(t) for t in topics] + [r.entry() for r in rejected]
        return _json_response({"entities": entities})

    def _vet(
        self, refs: list[TopicRef], permissions: frozenset[str]
    ) -> tuple[list[str], list[Rejection]]:
        """Expand combined topics and judge each: (accepted topics, rejections)."""
        accepted: dict[str, None] = {}
        rejected: list[Rejection] = []
        for ref in refs:
            try:
                topics = expand_combined(ref.id, self.config.max_combined_topic_length)
            except TopicError as exc:
                rejected.append(Rejection(ref.id, str(exc)))
                continue
            for topic in topics:
                rejection = self._judge(topic, permissions)
                if rejection is None:
                    accepted[topic] = None
                else:
                    rejected.append(rejection)
        return list(accepted), rejected

    def _judge(self, topic: str, permissions: frozenset[str]) -> Rejection | None:
        parsed = parse_topic(topic)
        if parsed.problem is not None or parsed.spec is None:
            return Rejection(topic, parsed.problem or "unknown topic")
        missing = missing_permissions(parsed.spec, permissions)
        if missing:
            return Rejection(topic, "Missing permissions", tuple(missing))
        if not over_websocket(self._transports(parsed.spec)):
            return Rejection(topic, "not available over WebSocket")
        return None

    def _transports(self, spec: TopicSpec) -> tuple[str, ...]:
        if spec.pattern == FLOW_METRICS and not self.config.flow_metrics_websocket:
            return (EVENTBRIDGE,)
        return spec.transports

    def _set_topics(self, channel: ChannelState, topics: list[str]) -> None:
        for topic in channel.topics:
            self._unindex(topic, channel)
        channel.topics = dict.fromkeys(topics)
        for topic in channel.topics:
            self._index.setdefault(topic, set()).add(channel)

    def _unindex(self, topic: str, channel: ChannelState) -> None:
        subscribers = self._index.get(topic)
        if subscribers is not None:
            subscribers.discard(channel)
            if not subscribers:
                del self._index[topic]

    # -- the topic catalogue ---------------------------------------------------------------------

    async def _available_topics(self, request: web.Request) -> web.Response:
        self._require(request)
        expand = {
            name.strip()
            for value in request.query.getall("expand", [])
            for name in value.split(",")
            if name.strip()
        }
        entities = [self._describe(spec, expand) for spec in CATALOGUE if spec.subscribable]
        return _json_response({"entities": entities})

    def _describe(self, spec: TopicSpec, expand: set[str]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": spec.pattern,
            "description": spec.description,
            "requiresCurrentUser": False,
            "requiresCurrentUserOrPermission": False,
        }
        if "requiresPermissions" in expand:
            entry["requiresPermissions"] = list(spec.permissions)
        if "transports" in expand:
            entry["transports"] = list(self._transports(spec))
        if "topicParameters" in expand:
            entry["topicParameters"] = [spec.parameter] if spec.parameter else []
        if "schema" in expand:
            entry["schema"] = {"type": "object", "title": spec.body, "properties": {}}
        return entry

    # -- the socket ------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        socket = EmulatedSocket(
            f"nt-{next(self._conn_ids)}",
            "notifications",
            ws,
            request,
            self.faults,
            self.ledger,
            make_malformed,
            self.config.send_queue_limit,
        )
        channel_id = request.match_info["channel_id"]
        channel = self._live(channel_id)
        stream = Stream(socket, channel)
        self._streams.add(stream)
        try:
            if channel is None:
                self.ledger.record("channel", channel=channel_tag(channel_id), event="refused")
                socket.send_control(not_found_frame())
                socket.request_close(CLOSE_NORMAL, "channel not found")
                await socket.serve()
            else:
                await self._serve(channel, stream)
        finally:
            self._streams.discard(stream)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
        return ws

    async def _serve(self, channel: ChannelState, stream: Stream) -> None:
        previous = channel.stream
        if previous is not None and not previous.socket.closed.is_set():
            previous.socket.request_close(CLOSE_NORMAL, "another socket connected to the channel")
            self._record(channel, "replaced", conn=previous.socket.conn_id)
        channel.stream = stream
        self._touch(channel)
        self._record(channel, "connected", conn=stream.socket.conn_id)
        heartbeat = asyncio.ensure_future(self._heartbeats(stream.socket))
        try:
            await stream.socket.serve(lambda msg: self._on_client_message(stream, msg))
        finally:
            for task in (heartbeat, stream.closer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if channel.stream is stream:
                channel.stream = None

    async def _heartbeats(self, socket: EmulatedSocket) -> None:
        interval = self.config.heartbeat_interval
        if interval <= 0:
            return
        while not socket.closed.is_set():
            await self.clock.sleep(interval)
            socket.send_control(HEARTBEAT)

    def _on_client_message(self, stream: Stream, msg: WSMessage) -> None:
        if msg.type != WSMsgType.TEXT:
            return
        try:
            message = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            return
        if isinstance(message, dict) and message.get("message") == "ping":
            stream.socket.send_control(PONG)
            if stream.channel is not None and stream.channel.stream is stream:
                self._touch(stream.channel)

    async def _close_after_grace(self, socket: EmulatedSocket) -> None:
        await self.clock.sleep(self.config.socket_closing_grace)
        socket.request_close(CLOSE_GOING_AWAY, "socket closing for maintenance")

    # -- facts → events --------------------------------------------------------------------------

    def on_fact(self, fact: Fact) -> None:
        if not self._index:
            return
        call = fact.call
        candidates = (
            render.detail_topic(fact),
            render.queue_topic(call),
            render.flow_metrics_topic(call),
        )
        if not any(t is not None and self._receivers(t) for t in candidates):
            return
        for n, (topic, body) in enumerate(render.notifications_for(fact)):
            receivers = self._receivers(topic)
            if not receivers:
                continue
            envelope = NotificationEnvelope(
                topic_name=topic,
                version="2",
                event_body=body,
                metadata={"CorrelationId": stable_uuid("notification", fact.fact_id, topic, n)},
            )
            frame = OutFrame(_json.encode(envelope), text=True, fact=fact.fact_id, topic=topic)
            for socket in receivers:
                socket.send_event(frame)

    def _receivers(self, topic: str) -> list[EmulatedSocket]:
        """Open sockets of the channels subscribed to ``topic``."""
        return [
            c.stream.socket
            for c in self._index.get(topic, ())
            if c.stream is not None and not c.stream.socket.closed.is_set()
        ]

    # -- time ------------------------------------------------------------------------------------

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._expire_channels()]

    async def _expire_channels(self) -> None:
        """Kill channels as they expire. Expiry only moves later (a new channel expires last,
        re-subscribing extends), so sleeping until the earliest one never oversleeps."""
        while True:
            now = self.clock.time()
            for channel in [c for c in self.channels.values() if c.expires_at <= now]:
                self._kill(channel, "expired")
            earliest = min(
                (c.expires_at for c in self.channels.values()),
                default=now + self.config.channel_ttl,
            )
            await self.clock.sleep(max(earliest - now, 0.001))

    # -- faults and introspection ----------------------------------------------------------------

    def sockets(self) -> list[EmulatedSocket]:
        return [s.socket for s in self._streams if not s.socket.closed.is_set()]

    def fire(self, action: str) -> dict[str, Any]:
        if action == "socket_closing":
            count = self._socket_closing()
            self.faults.fired(action, sockets=count)
            return {"sockets": count}
        if action == "expire_channels":
            doomed = list(self.channels.values())
            for channel in doomed:
                self._kill(channel, "expired")
            self.faults.fired(action, channels=len(doomed))
            return {"channels": len(doomed)}
        if action == "evict_channel":
            victims = [_least_recently_used(list(self.channels.values()))] if self.channels else []
            for channel in victims:
                self._evict(channel)
            self.faults.fired(action, channels=len(victims))
            return {"channels": len(victims)}
        return {}

    def _socket_closing(self) -> int:
        streams = [
            s for s in self._streams if s.channel is not None and not s.socket.closed.is_set()
        ]
        for stream in streams:
            stream.socket.send_control(
                system_frame(SOCKET_CLOSING, "Socket closing for maintenance")
            )
            if stream.closer is None:
                stream.closer = asyncio.get_running_loop().create_task(
                    self._close_after_grace(stream.socket)
                )
        return len(streams)

    def statistics(self) -> dict[str, Any]:
        clients: dict[str, int] = {}
        for channel in self.channels.values():
            clients[channel.client_id] = clients.get(channel.client_id, 0) + 1
        return {
            "channels": len(self.channels),
            "sockets": len(self.sockets()),
            "subscribedTopics": len(self._index),
            "channelsByClient": clients,
            "topicsByChannel": {c.tag: len(c.topics) for c in self.channels.values()},
        }


def _least_recently_used(channels: list[ChannelState]) -> ChannelState:
    """Unconnected channels go first; among equals, the least recently used."""
    return min(channels, key=lambda c: (c.connected, c.last_used))


def _error(status: int, message: str, details: list[dict[str, Any]]) -> web.Response:
    body = ApiError(status=status, code="bad.request", message=message, details=details)
    return _json_response(body, status=status)


def _rejected_response(rejected: list[Rejection]) -> web.Response:
    """400 naming the first rejected topic and its reason; ``details`` list every one."""
    first = rejected[0]
    more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
    details = [
        {
            "errorCode": "topic.rejected",
            "entityId": r.topic,
            "errorMessage": r.reason,
            "missingPermissions": list(r.missing),
        }
        for r in rejected
    ]
    return _error(400, f"Topic {first.topic!r} was rejected: {first.reason}{more}", details)


def _topic_limit_response(requested: int, limit: int) -> web.Response:
    message = f"A channel may have at most {limit} topics; this request would give it {requested}."
    details = [{"errorCode": "topic.limit", "limit": limit, "requested": requested}]
    return _error(400, message, details)
