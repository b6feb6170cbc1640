"""The library's front door: ``async with Subscriber(config) as sub: async for event in sub``.

A subscriber owns an HTTP session, the token manager, the journal (through
:class:`~ivrstream.aio.intake.Intake`) and one source. Iterating yields events only once they
are committed to the journal — read back from it, so a slow consumer never holds the stream up
and never makes memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from functools import partial
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from ivrstream import config as configuration
from ivrstream import sinks
from ivrstream.aio.auth import TokenManager, jwt_signer
from ivrstream.aio.dispatcher import Dispatcher
from ivrstream.aio.eventstreams import EventStreamsSource
from ivrstream.aio.intake import Intake
from ivrstream.aio.reader import JournalReader
from ivrstream.clock import Clock, SystemClock
from ivrstream.config import Config
from ivrstream.errors import ConfigError
from ivrstream.hooks import Hooks
from ivrstream.journal import Journal
from ivrstream.logs import register_secret
from ivrstream.models import InteractionEvent
from ivrstream.protocol.auth import AuthPolicy, ClientCredentials, Grant, JwtBearer

log = logging.getLogger("ivrstream.subscriber")


def grant_for(config: Config, token_url: str) -> Grant:
    """The OAuth grant the configuration names."""
    g = config.genesys
    client_id = configuration.client_id(config)
    if g.grant == "jwt":
        assert g.jwt_private_key_file is not None
        return JwtBearer(client_id, token_url, jwt_signer(g.jwt_private_key_file, g.jwt_algorithm))
    secret = configuration.client_secret(config)
    register_secret(secret)
    return ClientCredentials(client_id, secret)


class Subscriber:
    """Runs one source into the journal and yields committed events."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
        connect: bool = True,
    ) -> None:
        """``connect=False``: deliver what the journal holds to the sinks, without a source."""
        if connect and config.source != "eventstreams":
            raise ConfigError("source", f"{config.source!r} is not available yet")
        self.config = config
        self.connect = connect
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.hooks = Hooks()
        self.endpoints = configuration.endpoints(config) if connect else None
        self.grant = grant_for(config, self.endpoints.token_url) if self.endpoints else None
        self._session = session
        self._own_session = session is None
        self.intake = Intake(
            config.journal,
            config.ordering,
            self.clock,
            self.hooks,
            max_frame_bytes=config.eventstreams.max_frame_bytes,
        )
        self.tokens: TokenManager | None = None
        self.source: EventStreamsSource | None = None
        self.dispatchers = [
            Dispatcher(sink, settings, self.intake, self.clock, self.rng, self.hooks)
            for sink, settings in sinks.build(config, self.clock)
        ]
        self._deliveries: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._run: asyncio.Task[None] | None = None
        self.start_pos = 0

    def on(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Register a hook: connected, subscribed, disconnected, reconnecting, gap, auth_failed,
        max_reconnects, quarantined, schema_field."""
        return self.hooks.on(name, callback)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await self.intake.open()
        self.start_pos = self.intake.last_pos
        # sinks drain the journal whatever the source is doing (even unable to connect)
        self._deliveries = [asyncio.ensure_future(d.run()) for d in self.dispatchers]
        if self.endpoints is None or self.grant is None:
            return
        self.tokens = TokenManager(
            self.grant,
            self.endpoints.token_url,
            self._session,
            self.clock,
            self.rng,
            AuthPolicy(max_retry_after=self.config.genesys.max_retry_after),
            on_failure=lambda exc: self.hooks.emit("auth_failed", error=str(exc)),
        )
        self.source = EventStreamsSource(
            self.config,
            self.endpoints,
            self.grant.client_id,
            self.tokens,
            self._session,
            self.intake,
            self.clock,
            self.rng,
            self.hooks,
        )
        self._run = asyncio.ensure_future(self.source.run())
        self._tasks.append(asyncio.ensure_future(self.tokens.keep_fresh()))

    async def stop(self) -> None:
        """Close the socket (1000), stop delivering, commit what was received and the sinks'
        cursors, close the journal."""
        if self.source is not None:
            await self.source.stop()
        for task in self._deliveries:
            task.cancel()
        for task in self._deliveries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._deliveries.clear()
        for dispatcher in self.dispatchers:
            with contextlib.suppress(Exception):
                await dispatcher.sink.close()
        for task in [*self._tasks, *([self._run] if self._run else [])]:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.tokens is not None:
            await self.tokens.close()
        await self.intake.close()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def wait(self) -> None:
        """Until the source ends: re-raises why it stopped (a refused subscription, bad
        credentials, a reconnect budget used up)."""
        if self._run is None:  # delivering only: until stopped
            await asyncio.Event().wait()
            return
        await asyncio.shield(self._run)

    async def __aenter__(self) -> Subscriber:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- events ---------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[InteractionEvent]:
        return self.events()

    async def events(self, after: int | None = None) -> AsyncIterator[InteractionEvent]:
        """Committed events after journal position ``after`` (default: those committed since
        this subscriber started), in journal order, as they are committed."""
        position = self.start_pos if after is None else after
        decoder = msgspec.json.Decoder(InteractionEvent)
        reader = JournalReader(self.intake.path)
        try:
            while True:
                rows = await reader.call(partial(Journal.read_after, pos=position, limit=1_000))
                if not rows:
                    if not await self._wait_for_more(position):
                        return
                    continue
                for pos, body in rows:
                    position = pos
                    yield decoder.decode(body)
        finally:
            reader.close()

    async def _wait_for_more(self, position: int) -> bool:
        """Wait for commits after ``position``; False once the source has ended quietly."""
        run = self._run
        waiter = asyncio.ensure_future(self.intake.wait_committed(position))
        waits: set[asyncio.Future[Any]] = {waiter}
        if run is not None:
            waits.add(run)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            assert run is not None
            run.result()  # the source ended: raise why, if it failed
            return False
        waiter.result()
        return True

    def statistics(self) -> dict[str, Any]:
        return {
            "source": self.source.statistics() if self.source else None,
            "intake": self.intake.statistics(),
            "auth": self.tokens.statistics() if self.tokens else None,
            "sinks": {d.name: d.statistics() for d in self.dispatchers},
        }
