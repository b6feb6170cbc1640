"""A small test client for the emulator: token, Event Streams socket, ledger. Not the product."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import msgspec

from ivrstream.emulator.server import Emulator


async def token(
    http: aiohttp.ClientSession,
    emu: Emulator,
    client_id: str = "demo-client",
    secret: str = "demo-secret",  # noqa: S107
    **form: str,
) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    async with http.post(
        f"{emu.base_url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers={"Authorization": f"Basic {basic}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return str(body["access_token"])


def ws_url(emu: Emulator, path: str = "/api/v2/events") -> str:
    return emu.base_url.replace("http://", "ws://") + path


def subscription(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": "interaction:updated",
        "dataTypes": ["interaction"],
        "filters": {"interaction.routing.type": "IVR"},
        "retry": 60,
        "contentType": "application/msgpack",
    }
    body.update(overrides)
    return body


def decode(msg: aiohttp.WSMessage) -> Any:
    if msg.type == aiohttp.WSMsgType.BINARY:
        return msgspec.msgpack.decode(msg.data)
    return msgspec.json.decode(msg.data)


async def ledger(http: aiohttp.ClientSession, emu: Emulator, kind: str | None = None) -> list[Any]:
    params = {"kind": kind} if kind else {}
    async with http.get(f"{emu.base_url}/emulator/ledger", params=params) as resp:
        return [msgspec.json.decode(line) for line in (await resp.read()).splitlines()]


async def open_stream(
    http: aiohttp.ClientSession, emu: Emulator, bearer: str, **overrides: Any
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Connect to Event Streams, subscribe, and return the socket and the acknowledgement."""
    ws = await http.ws_connect(ws_url(emu), headers={"Authorization": f"Bearer {bearer}"})
    await ws.send_json(subscription(**overrides))
    ack = decode(await ws.receive(timeout=5))
    assert ack["type"] == "subscribed", ack
    return ws, ack


async def read_events(
    ws: aiohttp.ClientWebSocketResponse, count: int, wait: float = 5
) -> list[Any]:
    """The next ``count`` decoded frames."""
    out = []
    while len(out) < count:
        msg = await ws.receive(timeout=wait)
        assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
        out.append(decode(msg))
    return out


# -- Notifications ---------------------------------------------------------------------------------

NOTIFICATIONS = "/api/v2/notifications"


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def create_channel(
    http: aiohttp.ClientSession, emu: Emulator, access_token: str
) -> dict[str, Any]:
    async with http.post(
        f"{emu.base_url}{NOTIFICATIONS}/channels", headers=bearer(access_token)
    ) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def channel_status(
    http: aiohttp.ClientSession, emu: Emulator, access_token: str, channel_id: str
) -> int:
    """The status of ``HEAD …/channels/{id}``: 200 while alive, 404 after."""
    async with http.head(
        f"{emu.base_url}{NOTIFICATIONS}/channels/{channel_id}", headers=bearer(access_token)
    ) as resp:
        return resp.status


async def subscribe(
    http: aiohttp.ClientSession,
    emu: Emulator,
    access_token: str,
    channel_id: str,
    topics: list[str],
    *,
    method: str = "POST",
    ignore_errors: bool = False,
) -> tuple[int, Any]:
    """``POST``/``PUT`` topics to a channel: (status, decoded body)."""
    params = {"ignoreErrors": "true"} if ignore_errors else {}
    async with http.request(
        method,
        f"{emu.base_url}{NOTIFICATIONS}/channels/{channel_id}/subscriptions",
        json=[{"id": t} for t in topics],
        params=params,
        headers=bearer(access_token),
    ) as resp:
        raw = await resp.read()
        return resp.status, msgspec.json.decode(raw) if raw else None


async def receive_json(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> Any:
    """The next text frame, decoded; fails on a close or a binary frame."""
    msg = await ws.receive(timeout=within)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msgspec.json.decode(msg.data)


async def receive_events(
    ws: aiohttp.ClientWebSocketResponse, count: int, within: float = 5.0
) -> list[Any]:
    """The next ``count`` event envelopes, skipping ``channel.metadata`` frames."""
    events: list[Any] = []
    while len(events) < count:
        frame = await receive_json(ws, within)
        if frame.get("topicName") != "channel.metadata":
            events.append(frame)
    return events


async def ping(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> None:
    """Ping and wait for the pong: proves the server is serving this socket."""
    await ws.send_json({"message": "ping"})
    while True:
        frame = await receive_json(ws, within)
        if frame.get("eventBody") == {"message": "pong"}:
            return
