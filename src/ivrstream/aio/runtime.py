"""What the running parts of a service share: one token manager, HTTP session, intake, clock,
random source and set of hooks."""

from __future__ import annotations

import random
from typing import NamedTuple

import aiohttp

from ivrstream.aio.auth import TokenManager
from ivrstream.aio.intake import Intake
from ivrstream.clock import Clock
from ivrstream.hooks import Hooks


class Runtime(NamedTuple):
    """Handed to each source and the backfiller (unpack it: the fields are in this order)."""

    tokens: TokenManager
    session: aiohttp.ClientSession
    intake: Intake
    clock: Clock
    rng: random.Random
    hooks: Hooks
