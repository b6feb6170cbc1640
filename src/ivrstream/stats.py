"""Small statistics kept in memory: latency histograms with percentiles, and rates."""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Iterable
from functools import partial

# 0.1 ms to ~100 s, 20 buckets per decade
BOUNDS = tuple(10 ** (e / 20) / 10_000 for e in range(0, 121))


_bucket = partial(bisect.bisect_left, BOUNDS)


class LatencyHistogram:
    """Counts of durations (seconds) in fixed log-scale buckets; percentiles within 12 %."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    def add_many(self, values: Iterable[float]) -> None:
        """Add a batch (bucketing runs in C: this is called once per commit, not per event)."""
        values = list(values)
        if not values:
            return
        for index, count in Counter(map(_bucket, values)).items():
            self.counts[index] += count
        self.total += len(values)
        self.sum += math.fsum(values)
        self.max = max(self.max, max(values))

    def percentile(self, p: float) -> float | None:
        """The upper bound of the bucket holding the ``p``-th percentile (0–100)."""
        if not self.total:
            return None
        rank = math.ceil(self.total * p / 100)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return BOUNDS[index] if index < len(BOUNDS) else self.max
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "count": self.total,
            "mean_ms": ms(self.sum / self.total) if self.total else None,
            "p50_ms": ms(self.percentile(50)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(self.max) if self.total else None,
        }


class RateWindow:
    """Events per second over a sliding window, from (time, count) samples."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, count: int) -> None:
        self._samples.append((now, count))
        horizon = now - self.seconds
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def rate(self, now: float) -> float:
        horizon = now - self.seconds
        return sum(c for t, c in self._samples if t >= horizon) / self.seconds


class CountHistogram:
    """Counts of sizes (events in a commit, …) in fixed buckets: ``counts[i]`` holds the values
    ≤ ``bounds[i]`` and above the bound before; the last slot holds the rest."""

    def __init__(
        self, bounds: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000)
    ) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0
        self.sum = 0

    def add(self, value: int) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value
