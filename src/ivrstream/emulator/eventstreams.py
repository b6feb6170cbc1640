"""``GET /api/v2/events``: the Event Streams WebSocket (``shared/reference/event-streams.md``).

Rules this module keeps:

- Upgrade needs a valid bearer token (header, or ``access_token`` in the query for the seed's
  clients): 401 when missing, invalid or expired; 403 without ``view:interaction``.
- At most ``max_connections`` sockets per organisation: the next one is closed with 4029.
- The first message must be a valid subscription (``protocol.eventstreams``); any violation
  closes with 4003 and a reason naming the field.
- A subscription is identified by (client, eventType, dataTypes, filters). It assigns consecutive
  ``sequenceId`` s to every matching event from its creation on, whether or not a socket is
  attached, and keeps each event ``retry`` seconds for a client that comes back with
  ``resumeAfter``. Several sockets may share a subscription (a hot-standby pair); each gets
  every event.
- A socket whose token expires (or is revoked) is closed with 4001.
- ``contentType`` picks MessagePack binary frames or JSON text frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from ivrstream.clock import Clock
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.fastmode import FastFrames
from ivrstream.emulator.faults import FaultState, OutFrame
from ivrstream.emulator.ledger import Ledger
from ivrstream.emulator.oauth import IssuedToken, TokenIssuer
from ivrstream.emulator.render import es_event_type, interaction_snapshot
from ivrstream.emulator.sockets import EmulatedSocket
from ivrstream.emulator.traffic import Fact
from ivrstream.isotime import format_ms
from ivrstream.models import Subscribed, Subscription
from ivrstream.protocol.eventstreams import (
    CLOSE_QUOTA_EXCEEDED,
    CLOSE_SUBSCRIPTION_FORBIDDEN,
    CLOSE_TOKEN_INVALID,
    MAX_PAYLOAD_BYTES,
    FilterCondition,
    check_subscription_bytes,
    parse_filter,
)

REQUIRED_SCOPE = "view:interaction"
MSGPACK = "application/msgpack"
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
EVOLUTION_FIELDS = ("schemaVersion", "traceId", "partition", "region")


@dataclass
class BufferedEvent:
    seq: int
    fact_id: str
    assigned_ms: int
    event: dict[str, Any]
    encoded: dict[bool, bytes] = field(default_factory=dict)  # by "is msgpack"

    def frame(self, msgpack: bool) -> OutFrame:
        payload = self.encoded.get(msgpack)
        if payload is None:
            payload = (_msgpack if msgpack else _json).encode(self.event)
            self.encoded[msgpack] = payload
        return OutFrame(payload, text=not msgpack, seq=self.seq, fact=self.fact_id)


@dataclass(eq=False)
class Connection:
    socket: EmulatedSocket
    token: IssuedToken
    msgpack: bool = True


@dataclass(eq=False)
class SubscriptionState:
    """One subscription's sequence, resend buffer and attached sockets."""

    id: str
    client_id: str
    event_type: str
    conditions: list[FilterCondition]
    retry: int
    last_seq: int = 0
    buffer: deque[BufferedEvent] = field(default_factory=deque)
    connections: set[Connection] = field(default_factory=set)

    def prune(self, now_ms: int) -> None:
        horizon = now_ms - self.retry * 1000
        while self.buffer and self.buffer[0].assigned_ms < horizon:
            self.buffer.popleft()


def resolve(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def condition_holds(condition: FilterCondition, data: dict[str, Any]) -> bool:
    value = resolve(data, condition.path)
    if value is None:
        return False
    operand = condition.operand
    if condition.operator == "contains":
        if isinstance(value, str):
            return operand in value
        if isinstance(value, list | dict):
            return operand in [str(v) for v in value]
        return False
    if condition.operator == "gt":
        try:
            return float(value) > float(operand)
        except (TypeError, ValueError):
            return str(value) > operand
    if isinstance(value, bool):
        return str(value).lower() == operand.lower()
    return str(value) == operand


class EventStreams:
    """Serves the Event Streams WebSocket and turns facts into sequenced events."""

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
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self.fast = FastFrames(config) if config.fast_frames > 0 else None
        issuer.on_revoke.append(self._close_revoked)

    # -- facts → events ------------------------------------------------------------------------

    def on_fact(self, fact: Fact) -> None:
        if not self.subscriptions:
            return
        now_ms = round(self.clock.time() * 1000)
        event_type = es_event_type(fact)
        data = interaction_snapshot(fact)
        for sub in self.subscriptions.values():
            sub.prune(now_ms)
            if sub.event_type != event_type:
                continue
            if not all(condition_holds(c, data) for c in sub.conditions):
                continue
            sub.last_seq += 1
            event: dict[str, Any] = {
                "eventType": event_type,
                "sequenceId": sub.last_seq,
                "timestamp": format_ms(fact.time_ms),
                "data": data,
            }
            self._evolve(event, fact)
            buffered = BufferedEvent(sub.last_seq, fact.fact_id, now_ms, event)
            sub.buffer.append(buffered)
            self.ledger.record(
                "assigned",
                subscription=sub.id,
                seq=sub.last_seq,
                fact=fact.fact_id,
                eventType=event_type,
                conversationId=fact.conversation_id,
            )
            for conn in sub.connections:
                conn.socket.send_event(buffered.frame(conn.msgpack))

    def _evolve(self, event: dict[str, Any], fact: Fact) -> None:
        share = self.config.schema_evolution_share
        if share <= 0:
            return
        digest = hashlib.sha256(fact.fact_id.encode()).digest()
        if int.from_bytes(digest[:4], "big") / 2**32 >= share:
            return
        name = EVOLUTION_FIELDS[digest[4] % len(EVOLUTION_FIELDS)]
        event[name] = {
            "schemaVersion": 3,
            "traceId": digest[5:13].hex(),
            "partition": digest[13] % 16,
            "region": "emulated-1",
        }[name]

    # -- the socket ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token, problem = self.issuer.from_request(request, allow_query=True)
        if token is None:
            self.ledger.record("auth_failure", surface="eventstreams", reason=problem)
            raise web.HTTPUnauthorized(text=f"{problem} token")
        if REQUIRED_SCOPE not in token.scopes:
            self.ledger.record("auth_failure", surface="eventstreams", reason="scope")
            raise web.HTTPForbidden(text=f"token lacks the {REQUIRED_SCOPE} scope")
        ws = web.WebSocketResponse(compress=False, max_msg_size=4 * MAX_PAYLOAD_BYTES)
        raw_writer = await ws.prepare(request)
        socket = EmulatedSocket(
            f"es-{next(self._ids)}",
            "eventstreams",
            ws,
            request,
            self.faults,
            self.ledger,
            self._malformed_json,
            self.config.send_queue_limit,
        )
        socket.raw_writer = raw_writer
        conn = Connection(socket, token)
        if len(self.connections) >= self.config.max_connections:
            self.ledger.record("fault", fault="connection_quota", conn=socket.conn_id)
            await socket.close_now(CLOSE_QUOTA_EXCEEDED, "connection quota exceeded")
            return ws
        self.connections.add(conn)
        expiry = asyncio.ensure_future(self._close_on_expiry(conn))
        try:
            sub = await self._subscribe(conn)
            if sub is not None:
                try:
                    await socket.serve()
                finally:
                    sub.connections.discard(conn)
        finally:
            expiry.cancel()
            self.connections.discard(conn)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
        return ws

    async def _subscribe(self, conn: Connection) -> SubscriptionState | None:
        """Read and check the subscription, acknowledge it, queue what to resend, attach."""
        socket = conn.socket
        try:
            msg = await socket.ws.receive(timeout=self.config.subscribe_timeout)
        except TimeoutError:
            await socket.close_now(CLOSE_SUBSCRIPTION_FORBIDDEN, "no subscription received")
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            socket.mark_closed(1006, "closed before subscribing")
            return None
        raw = msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
        verdict = check_subscription_bytes(raw)
        if verdict.subscription is None:
            reasons = "; ".join(str(v) for v in verdict.violations)
            self.ledger.record("subscription_rejected", conn=socket.conn_id, reasons=reasons)
            await socket.close_now(CLOSE_SUBSCRIPTION_FORBIDDEN, reasons)
            return None
        subscription = verdict.subscription
        if self.faults.settings.forbid_subscriptions:
            self.faults.fired("forbid_subscriptions", conn=socket.conn_id)
            await socket.close_now(CLOSE_SUBSCRIPTION_FORBIDDEN, "subscription forbidden")
            return None
        conn.msgpack = subscription.content_type == MSGPACK
        if conn.msgpack:
            socket.frame_faults.make_malformed = self._malformed_msgpack
        sub = self._state_for(conn.token.client.client_id, subscription)
        ack = OutFrame(
            _json.encode(Subscribed(subscription_id=sub.id, sequence_id=sub.last_seq)), text=True
        )
        if self.fast is not None and sub.last_seq == 0 and not sub.connections:
            await socket.ws.send_frame(ack.payload, WSMsgType.TEXT)
            report = await self.fast.send(socket, conn.msgpack)
            sub.last_seq = report["to"]
            self.ledger.record("sent_range", conn=socket.conn_id, subscription=sub.id, **report)
        else:
            socket.send_control(ack)
        resent = 0
        if subscription.resume_after is not None:
            for buffered in sub.buffer:
                if buffered.seq > subscription.resume_after:
                    socket.send_event(buffered.frame(conn.msgpack))
                    resent += 1
        sub.connections.add(conn)  # no await since the resend was queued: nothing slips between
        self.ledger.record(
            "subscribed",
            conn=socket.conn_id,
            subscription=sub.id,
            resumeAfter=subscription.resume_after,
            resent=resent,
            lastSeq=sub.last_seq,
            contentType=subscription.content_type,
        )
        return sub

    def _state_for(self, client_id: str, subscription: Subscription) -> SubscriptionState:
        key = msgspec.json.encode(
            [
                client_id,
                subscription.event_type,
                subscription.data_types,
                sorted(subscription.filters.items()),
            ]
        )
        sub_id = "sub-" + hashlib.sha256(key).hexdigest()[:16]
        state = self.subscriptions.get(sub_id)
        if state is None:
            state = SubscriptionState(
                sub_id,
                client_id,
                subscription.event_type,
                [parse_filter(k, v) for k, v in subscription.filters.items()],
                subscription.retry,
            )
            self.subscriptions[sub_id] = state
        state.retry = subscription.retry
        return state

    async def _close_on_expiry(self, conn: Connection) -> None:
        if not self.config.close_on_token_expiry:
            return
        await self.clock.sleep(conn.token.expires_at - self.clock.time())
        if not conn.socket.closed.is_set():
            self.ledger.record("token_expired", conn=conn.socket.conn_id)
            conn.socket.request_close(CLOSE_TOKEN_INVALID, "token expired")

    def _close_revoked(self) -> None:
        for conn in list(self.connections):
            conn.socket.request_close(CLOSE_TOKEN_INVALID, "token revoked")

    # -- faults and introspection ----------------------------------------------------------------

    def sockets(self) -> list[EmulatedSocket]:
        return [c.socket for c in self.connections]

    def lose_buffers(self) -> int:
        lost = sum(len(s.buffer) for s in self.subscriptions.values())
        for sub in self.subscriptions.values():
            sub.buffer.clear()
        self.ledger.record("fault", fault="lose_buffer", events=lost)
        return lost

    def _malformed_json(self, kind: str, oversized_bytes: int) -> OutFrame:
        return self._malformed(kind, oversized_bytes, msgpack=False)

    def _malformed_msgpack(self, kind: str, oversized_bytes: int) -> OutFrame:
        return self._malformed(kind, oversized_bytes, msgpack=True)

    def _malformed(self, kind: str, oversized_bytes: int, *, msgpack: bool) -> OutFrame:
        """A broken event frame of ``kind``, in the connection's encoding where it has one."""
        if kind == "invalid_json":
            return OutFrame(b'{"eventType": "interaction:updated", "sequenceId": ', text=True)
        if kind == "invalid_msgpack":
            return OutFrame(b"\x84\xa9eventType\xc1\xc1\xc1", text=False)
        if kind == "truncated_event":
            whole = self._latest_event_frame(msgpack)
            return OutFrame(whole[: len(whole) * 3 // 5], text=not msgpack)
        event: dict[str, Any] = {
            "eventType": "interaction:updated",
            "sequenceId": 0,
            "timestamp": format_ms(round(self.clock.time() * 1000)),
            "data": {"id": "malformed", "conversationId": "malformed"},
        }
        if kind == "missing_field":
            del event["sequenceId"]
        elif kind == "wrong_type":
            event["sequenceId"] = "forty-two"
        elif kind == "oversized":
            event["data"]["padding"] = "x" * oversized_bytes
        return OutFrame((_msgpack if msgpack else _json).encode(event), text=not msgpack)

    def _latest_event_frame(self, msgpack: bool) -> bytes:
        newest = max(
            (s.buffer[-1] for s in self.subscriptions.values() if s.buffer),
            key=lambda b: b.assigned_ms,
            default=None,
        )
        if newest is None:
            event = {
                "eventType": "interaction:updated",
                "sequenceId": 0,
                "timestamp": format_ms(round(self.clock.time() * 1000)),
                "data": {"conversationId": "malformed", "ani": "tel:+15555550199"},
            }
            return (_msgpack if msgpack else _json).encode(event)
        return newest.frame(msgpack).payload

    def statistics(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "subscriptions": {
                s.id: {
                    "lastSeq": s.last_seq,
                    "buffered": len(s.buffer),
                    "connections": len(s.connections),
                }
                for s in self.subscriptions.values()
            },
        }
