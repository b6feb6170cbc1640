"""Analytics conversation details (query and jobs), flows and queues (being built)."""

from __future__ import annotations

from aiohttp import web

from ivrstream.clock import Clock
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.faults import FaultState
from ivrstream.emulator.oauth import TokenIssuer
from ivrstream.emulator.world import World


class Analytics:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        issuer: TokenIssuer,
        faults: FaultState,
        world: World,
    ) -> None:
        self.config = config
        self.clock = clock
        self.issuer = issuer
        self.faults = faults
        self.world = world

    def routes(self) -> list[web.RouteDef]:
        return []
