"""Notifications API: channels, topic subscriptions and the streaming socket (being built)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from ivrstream.clock import Clock
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.faults import FaultState
from ivrstream.emulator.ledger import Ledger
from ivrstream.emulator.oauth import TokenIssuer
from ivrstream.emulator.sockets import EmulatedSocket
from ivrstream.emulator.traffic import Fact


class Notifications:
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

    def routes(self) -> list[web.RouteDef]:
        return []

    def on_fact(self, fact: Fact) -> None:
        pass

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return []

    def sockets(self) -> list[EmulatedSocket]:
        return []

    def fire(self, action: str) -> dict[str, Any]:
        return {}

    def statistics(self) -> dict[str, Any]:
        return {}
