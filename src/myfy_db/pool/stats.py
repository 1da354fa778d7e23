"""Latency statistics shared by check-pool and profile-pool: percentiles and histograms."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values``, interpolated linearly between ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def log_buckets(values: Sequence[float], buckets: int = 8) -> list[tuple[float, float, int]]:
    """``(from, to, count)`` buckets from the smallest to the largest value, log-width.

    Latencies are skewed (a few slow outliers); buckets of equal width on a log scale keep
    the bulk readable. The last bucket includes its upper edge.
    """
    if not values:
        return []
    low, high = min(values), max(values)
    if high <= low:
        return [(low, high, len(values))]
    positive = [v for v in values if v > 0]
    start = min(positive) if positive else high
    ratio = high / start
    edges = [start * ratio ** (i / buckets) for i in range(buckets + 1)]
    edges[0], edges[-1] = low, high
    counts = [0] * buckets
    for value in values:
        index = 0
        while index < buckets - 1 and value >= edges[index + 1]:
            index += 1
        counts[index] += 1
    return [(edges[i], edges[i + 1], counts[i]) for i in range(buckets)]


def histogram_lines(buckets: Sequence[tuple[float, float, int]], width: int = 40) -> list[str]:
    """Text bars for ``buckets``, one line each: ``  0.055-0.073 ms | ##### 38``."""
    peak = max((count for _, _, count in buckets), default=0) or 1
    labels = [f"{low:.3f}-{high:.3f}" for low, high, _ in buckets]
    pad = max((len(label) for label in labels), default=0)
    return [
        f"  {label.rjust(pad)} ms | {'#' * max(1 if count else 0, round(width * count / peak))} "
        f"{count}"
        for label, (_, _, count) in zip(labels, buckets, strict=True)
    ]


class Reservoir:
    """Timings kept in bounded memory: exact count, mean, min and max, and a uniform sample
    of at most ``capacity`` values for percentiles and histograms (Vitter's algorithm R).

    However many samples a flag asks for, memory stays bounded by ``capacity``.
    """

    def __init__(self, capacity: int = 100_000, seed: int = 0x5EED) -> None:
        import random

        self.capacity = capacity
        self.values: list[float] = []
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        """Record one timing."""
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if len(self.values) < self.capacity:
            self.values.append(value)
            return
        slot = self._random.randrange(self.count)
        if slot < self.capacity:
            self.values[slot] = value
