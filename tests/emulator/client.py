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
