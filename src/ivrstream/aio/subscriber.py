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
import os
import random
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from ivrstream import config as configuration
from ivrstream import privacy, sinks
from ivrstream.aio.audit import (
    OPERATION_CURSOR,
    AuditSink,
    AuditTrail,
    config_digest,
    operation_record,
)
from ivrstream.aio.audit import wire as wire_audit
from ivrstream.aio.auth import TokenManager, jwt_signer
from ivrstream.aio.dispatcher import Dispatcher
from ivrstream.aio.eventstreams import EventStreamsSource
from ivrstream.aio.intake import Intake
from ivrstream.aio.notifications import NotificationsSource
from ivrstream.aio.reader import JournalReader
from ivrstream.aio.runtime import Runtime
from ivrstream.aio.tail import JournalTail
from ivrstream.backfill import Backfiller
from ivrstream.clock import Clock, SystemClock
from ivrstream.config import Config, SinkSettings
from ivrstream.errors import ConfigError
from ivrstream.hooks import Hooks
from ivrstream.journal import Journal, WriteBatch
from ivrstream.lifecycle import StartStop
from ivrstream.logs import register_secret
from ivrstream.models import InteractionEvent
from ivrstream.privacy import Redactor
from ivrstream.protocol.auth import AuthPolicy, ClientCredentials, Grant, JwtBearer

log = logging.getLogger("ivrstream.subscriber")


# the audit trail never gives up on an event: it retries (slowly) until its disk works again
AUDIT_DELIVERY = SinkSettings(
    batch_max=2_000, lanes=1, max_attempts=2**31, retry_base=0.5, retry_cap=5.0
)


def privacy_for(config: Config) -> Redactor | None:
    """The caller-privacy stage the configuration asks for (None when switched off)."""
    settings = config.privacy
    if not settings.enabled:
        return None
    key_file = Path(settings.key_file or f"{config.journal.path}.privacy-key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = privacy.load_key(key_file, os.environ.get(privacy.KEY_ENV))
    user = [privacy.Rule(r.path, r.action, r.keep_last) for r in settings.rules or []]
    try:
        return Redactor([*user, *privacy.DEFAULT_RULES], key, scan_cards=settings.scan_cards)
    except ValueError as exc:
        raise ConfigError("privacy.rules", str(exc)) from None


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


class Subscriber(StartStop):
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
        self.config = config
        self.connect = connect
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.hooks = Hooks()
        self.endpoints = configuration.endpoints(config) if connect else None
        self.grant = grant_for(config, self.endpoints.token_url) if self.endpoints else None
        self._session = session
        self._own_session = session is None
        self.redactor = privacy_for(config)
        self.intake = Intake(
            config.journal,
            config.ordering,
            self.clock,
            self.hooks,
            max_frame_bytes=config.eventstreams.max_frame_bytes,
            redactor=self.redactor,
        )
        self.tokens: TokenManager | None = None
        self.source: EventStreamsSource | NotificationsSource | None = None
        self.backfill: Backfiller | None = None
        self.tail = JournalTail()
        self.dispatchers = [
            Dispatcher(sink, settings, self.intake, self.clock, self.rng, self.hooks, self.tail)
            for sink, settings in sinks.build(config, self.clock)
        ]
        self.audit: AuditTrail | None = None
        if config.audit.directory:
            self.audit = AuditTrail(config.audit, self.clock)
            self.dispatchers.append(
                Dispatcher(
                    AuditSink(self.audit),
                    AUDIT_DELIVERY,
                    self.intake,
                    self.clock,
                    self.rng,
                    self.hooks,
                    self.tail,
                )
            )
        if self.dispatchers:
            self.intake.share_commits(self.tail)
        self._deliveries: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._run: asyncio.Task[None] | None = None
        self.start_pos = 0
        self.stop_reason = "stopped"

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
        if self.audit is not None:
            await self.audit.open(config_digest(configuration.redacted(self.config)))
            wire_audit(self.audit, self.hooks)
            self._tasks.append(asyncio.ensure_future(self._audit_duties(self.audit)))
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
        runtime = Runtime(self.tokens, self._session, self.intake, self.clock, self.rng, self.hooks)
        if self.config.backfill.enabled:
            self.backfill = Backfiller(self.config.backfill, self.endpoints.api_url, runtime)
        source = (self.config, self.endpoints, self.grant.client_id, runtime)
        if self.config.source == "notifications":
            self.source = NotificationsSource(*source, self.backfill)
        else:
            self.source = EventStreamsSource(*source)
        self._run = asyncio.ensure_future(self.source.run())
        self._tasks.append(asyncio.ensure_future(self.tokens.keep_fresh()))
        if self.backfill is not None:
            self._tasks.append(asyncio.ensure_future(self.backfill.run()))

    async def stop(self) -> None:
        """Close the socket (1000), stop delivering, commit what was received and the sinks'
        cursors, close the journal."""
        if self.source is not None:
            await self.source.stop()
        await self._drain_audit(within=1.0)
        for task in self._deliveries:
            task.cancel()
        for task in self._deliveries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._deliveries.clear()
        for dispatcher in self.dispatchers:
            with contextlib.suppress(Exception):
                await dispatcher.sink.close()
        if self.audit is not None:
            await self.audit.close(self.stop_reason)
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

    async def _drain_audit(self, within: float) -> None:
        """On a clean stop, give the audit trail a moment to record every committed event
        (whatever it misses, it catches up on at the next start)."""
        audit = next((d for d in self.dispatchers if d.name == AuditSink.name), None)
        if audit is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self.intake.wait_idle()
                await audit.wait_delivered(self.intake.last_pos)

    async def _audit_duties(self, trail: AuditTrail) -> None:
        """Twice a second: fsync/checkpoint/rotate the trail, and record administrative
        actions the journal noted (``journal dlq …`` run from the command line)."""
        reader = JournalReader(self.intake.path)
        try:
            seen = (await reader.call(Journal.cursors)).get(OPERATION_CURSOR, 0)
            while True:
                await self.clock.sleep(0.5)
                await trail.tick()
                operations = await reader.call(partial(Journal.operations_after, op_id=seen))
                noted = [operation_record(kind, details) for _, kind, details in operations]
                if operations:
                    await trail.append([r for r in noted if r is not None])
                    seen = operations[-1][0]
                    self.intake.submit(WriteBatch(cursors={OPERATION_CURSOR: seen}))
        finally:
            reader.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "source": self.source.statistics() if self.source else None,
            "intake": self.intake.statistics(),
            "auth": self.tokens.statistics() if self.tokens else None,
            "backfill": self.backfill.statistics() if self.backfill else None,
            "sinks": {d.name: d.statistics() for d in self.dispatchers},
            "shared_reads": {"served": self.tail.hits, "read": self.tail.misses},
        }
