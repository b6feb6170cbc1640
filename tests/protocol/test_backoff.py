"""Backoff: full jitter under a doubling ceiling that stops at the cap; seeded, so repeatable."""

from __future__ import annotations

import itertools
import random

import pytest

from ivrstream.protocol.backoff import ceiling, delays, jittered


class Highest(random.Random):
    """Always the top of the range: shows the ceiling each draw was allowed."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def first(n: int, base: float, cap: float, rng: random.Random) -> list[float]:
    return list(itertools.islice(delays(base, cap, rng), n))


def test_the_ceiling_doubles_from_base_and_stays_at_the_cap():
    assert first(8, 1.0, 30.0, Highest()) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert first(4, 0.5, 3.0, Highest()) == [0.5, 1, 2, 3]


def test_full_jitter_may_wait_nothing_at_all():
    assert first(5, 1.0, 30.0, Lowest()) == [0.0] * 5


def test_every_delay_lies_within_zero_and_its_ceiling():
    rng = random.Random(7)
    for n, delay in enumerate(first(200, 0.25, 10.0, rng)):
        assert 0.0 <= delay <= min(10.0, 0.25 * 2**n)


def test_the_jitter_is_full_not_a_narrow_band_near_the_ceiling():
    samples = first(2_000, 30.0, 30.0, random.Random(3))  # every ceiling is 30
    assert min(samples) < 1.5
    assert max(samples) > 28.5
    assert 13.0 < sum(samples) / len(samples) < 17.0


def test_a_base_above_the_cap_is_capped_from_the_first_delay():
    assert first(3, 50.0, 30.0, Highest()) == [30.0, 30.0, 30.0]


def test_the_same_seed_gives_the_same_delays_and_another_seed_does_not():
    assert first(20, 1.0, 30.0, random.Random(42)) == first(20, 1.0, 30.0, random.Random(42))
    assert first(20, 1.0, 30.0, random.Random(42)) != first(20, 1.0, 30.0, random.Random(43))


def test_delays_never_end_and_never_overflow():
    last = list(itertools.islice(delays(1.0, 30.0, Highest()), 5_000))[-1]
    assert last == 30.0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (4, 16.0), (5, 30.0), (6, 30.0), (62, 30.0), (10_000, 30.0)],
)
def test_ceiling_of_an_attempt(attempt, expected):
    assert ceiling(1.0, 30.0, attempt) == expected


def test_ceiling_matches_what_delays_draws_from():
    highs = first(12, 0.5, 20.0, Highest())
    assert highs == [ceiling(0.5, 20.0, n) for n in range(12)]


def test_jittered_is_never_earlier_and_at_most_a_fifth_later():
    assert jittered(10.0, Lowest()) == 10.0
    assert jittered(10.0, Highest()) == pytest.approx(12.0)
    assert jittered(10.0, Highest(), spread=0.5) == pytest.approx(15.0)
    rng = random.Random(5)
    for _ in range(500):
        assert 10.0 <= jittered(10.0, rng) <= 12.0
    assert jittered(0.0, rng) == 0.0
