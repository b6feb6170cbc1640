"""Shared fixtures: an emulator on 127.0.0.1 port 0, and a loopback HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from ivrstream.emulator.config import EmulatorConfig
from ivrstream.emulator.server import Emulator

EmulatorFactory = Callable[..., AbstractAsyncContextManager[Emulator]]


@pytest.fixture
def emulator_factory() -> EmulatorFactory:
    """``async with emulator_factory(rate=50, time_scale=1000) as emu:`` — any config field."""

    @asynccontextmanager
    async def make(clock: Any = None, **overrides: Any) -> AsyncIterator[Emulator]:
        config = EmulatorConfig(**overrides)
        async with Emulator(config, clock=clock) as emu:
            yield emu

    return make


@pytest.fixture
async def emulator(emulator_factory: EmulatorFactory) -> AsyncIterator[Emulator]:
    """A quiet emulator: no traffic, default limits."""
    async with emulator_factory(traffic=False) as emu:
        yield emu


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # no connection cap: tests open more than aiohttp's default 100 sockets on purpose
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards (real PostgreSQL)."""
    import uuid

    import asyncpg

    from tests.services import require_postgres

    base = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
def nats_url() -> str:
    """The real NATS server (JetStream on); tests name their own streams."""
    from tests.services import require_nats

    return require_nats()
