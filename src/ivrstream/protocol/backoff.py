"""Exponential backoff with full jitter (AWS: "Exponential Backoff And Jitter").

Attempt ``n`` (from 0) waits a uniform random time in ``[0, min(cap, base × 2ⁿ)]``; the random
source is an argument so tests are repeatable. Once the cap is reached it stays there: a
long-running service keeps trying at the cap rather than giving up (``max_attempts`` is a
caller's setting, not this module's).
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def delays(base: float, cap: float, rng: random.Random) -> Iterator[float]:
    """Endless jittered delays: ``uniform(0, min(cap, base·2ⁿ))`` for n = 0, 1, 2, …"""
    ceiling = base
    while True:
        yield rng.uniform(0.0, min(cap, ceiling))
        ceiling = min(cap, ceiling * 2)


def ceiling(base: float, cap: float, attempt: int) -> float:
    """The upper bound of the ``attempt``-th delay (without jitter)."""
    return min(cap, base * 2.0 ** min(attempt, 62))


def jittered(seconds: float, rng: random.Random, spread: float = 0.2) -> float:
    """``seconds`` stretched by up to ``spread``: for Retry-After, never earlier, a bit later."""
    return seconds * (1.0 + rng.uniform(0.0, spread))
