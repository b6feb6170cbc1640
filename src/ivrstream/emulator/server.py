"""The emulator as one aiohttp application on one port, and the :class:`Emulator` that runs it.

Routes:

- ``POST /oauth/token`` — :mod:`ivrstream.emulator.oauth`
- ``GET /api/v2/events`` — Event Streams WebSocket, :mod:`ivrstream.emulator.eventstreams`
- ``/api/v2/notifications/…`` and ``GET /channels/{id}`` — :mod:`ivrstream.emulator.notifications`
- ``/api/v2/analytics/…``, ``GET /api/v2/flows``, ``GET /api/v2/routing/queues`` —
  :mod:`ivrstream.emulator.analytics`
- ``GET /emulator/ledger`` (JSON lines; ``?kind=`` and ``?since=``), ``GET /emulator/status``,
  ``GET|POST /emulator/faults`` — control and inspection, no authentication (bind to loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from aiohttp import web

from ivrstream.clock import Clock, SystemClock
from ivrstream.emulator.analytics import Analytics
from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.eventstreams import EventStreams
from ivrstream.emulator.faults import ACTIONS, FaultRequest, FaultSpecError, FaultState
from ivrstream.emulator.ledger import Ledger
from ivrstream.emulator.notifications import Notifications
from ivrstream.emulator.oauth import TokenIssuer
from ivrstream.emulator.tally import Tally
from ivrstream.emulator.world import World
from ivrstream.lifecycle import StartStop


class Emulator(StartStop):
    """A local Genesys Cloud. ``async with Emulator(config) as emu: emu.base_url …``."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock or SystemClock()
        self.ledger = Ledger(self.config.ledger_limit)
        self.faults = FaultState(self.config.faults, self.config.seed, self._record_fault)
        self.world = World(self.config, self.clock, self.ledger)
        self.issuer = TokenIssuer(self.config, self.clock, self.faults, self.ledger)
        self.eventstreams = EventStreams(
            self.config, self.clock, self.issuer, self.faults, self.ledger
        )
        self.notifications = Notifications(
            self.config, self.clock, self.issuer, self.faults, self.ledger
        )
        self.analytics = Analytics(self.config, self.clock, self.issuer, self.faults, self.world)
        self.tally = Tally()
        self.world.subscribe(self.tally.on_fact)
        self.world.subscribe(self.eventstreams.on_fact)
        self.world.subscribe(self.notifications.on_fact)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    def _record_fault(self, fault: str, **details: Any) -> None:
        self.ledger.record("fault", fault=fault, **details)

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/oauth/token", self.issuer.handle_token)
        app.router.add_get("/api/v2/events", self.eventstreams.handle)
        app.router.add_routes(self.notifications.routes())
        app.router.add_routes(self.analytics.routes())
        app.router.add_get("/emulator/ledger", self._ledger)
        app.router.add_get("/emulator/status", self._status)
        app.router.add_get("/emulator/faults", self._get_faults)
        app.router.add_post("/emulator/faults", self._post_faults)
        return app

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        if self.eventstreams.fast is not None:
            # pre-encode fast mode's burst before listening, so no client waits for it
            await asyncio.to_thread(self.eventstreams.fast.framed, True)
        # no access log: notification socket paths carry channel ids, which are bearer secrets
        self._runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        self._tasks.append(asyncio.create_task(self.world.run()))
        self._tasks.extend(asyncio.create_task(t) for t in self.notifications.background())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for socket in self.sockets():
            socket.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- faults ---------------------------------------------------------------------------------

    def sockets(self) -> list[Any]:
        return [*self.eventstreams.sockets(), *self.notifications.sockets()]

    def set_faults(self, **changes: Any) -> None:
        self.faults.update(changes)

    def fire(self, action: str) -> dict[str, Any]:
        """Fire a one-shot fault (see :data:`ivrstream.emulator.faults.ACTIONS`)."""
        if action not in ACTIONS:
            raise FaultSpecError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        result: dict[str, Any] = {"action": action}
        if action == "drop":
            sockets = self.sockets()
            for socket in sockets:
                socket.drop()
            result["sockets"] = len(sockets)
        elif action == "stall":
            sockets = self.sockets()
            for socket in sockets:
                socket.stall()
            result["sockets"] = len(sockets)
        elif action == "malformed":
            count = 0
            for socket in self.sockets():
                for kind in self.faults.settings.malformed_kinds:
                    socket.send_control(socket.frame_faults.malformed(kind))
                    count += 1
            result["frames"] = count
        elif action == "lose_buffer":
            result["events"] = self.eventstreams.lose_buffers()
        elif action == "revoke_tokens":
            self._record_fault("revoke_tokens")
            result["tokens"] = self.issuer.revoke_all()
        else:  # notification channel actions
            result.update(self.notifications.fire(action))
        return result

    # -- control endpoints ----------------------------------------------------------------------

    async def _ledger(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be an integer") from None
        kind = request.query.get("kind")
        body = self.ledger.jsonl(kind, since)
        return web.Response(
            body=body,
            content_type="application/x-ndjson",
            headers={"X-Ledger-Next": str(len(self.ledger))},
        )

    def status(self) -> dict[str, Any]:
        return {
            "baseUrl": self.base_url,
            "seed": self.config.seed,
            "rate": self.config.rate,
            "timeScale": self.config.time_scale,
            "clock": self.clock.time(),
            "callsStarted": self.world.model.calls_started,
            "callsInProgress": self.world.model.calls_in_progress,
            "factsPublished": self.world.facts_published,
            "tokensIssued": self.issuer.issued,
            "traffic": self.tally.snapshot(),
            "eventstreams": self.eventstreams.statistics(),
            "notifications": self.notifications.statistics(),
            "ledger": self.ledger.summary(),
        }

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.Response(
            body=msgspec.json.encode(self.faults.settings), content_type="application/json"
        )

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            fault_request = msgspec.json.decode(await request.read(), type=FaultRequest)
            self.faults.update(fault_request.set)
            fired = [self.fire(action) for action in fault_request.actions]
        except (msgspec.DecodeError, msgspec.ValidationError, FaultSpecError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(
            body=msgspec.json.encode({"settings": self.faults.settings, "fired": fired}),
            content_type="application/json",
        )
