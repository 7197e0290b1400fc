"""A cumulative histogram fed from the engine's bounded deque of set-up latencies.

node.setup_latencies keeps the last 4096 values and node.setup_count counts every value
ever appended: each scrape observes the values appended since the previous one. Should
more than the deque holds be appended between two scrapes, the oldest are not seen
(`missed`)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class HistogramView:
    buckets: tuple[float, ...]
    counts: tuple[int, ...]        # per bucket, not cumulative; the last one is +Inf
    total: float
    missed: int

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        out, acc = [], 0
        for bound, n in zip(self.buckets + (float("inf"),), self.counts):
            acc += n
            out.append((bound, acc))
        return out


class LatencyHistogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.seen = 0           # node.setup_count at the last feed
        self.missed = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def feed(self, count: int, recent) -> None:
        """count: values appended so far; recent: the last of them (a deque)."""
        new = count - self.seen
        if new <= 0:
            self.seen = count
            return
        values = list(recent)[-new:]
        for v in values:
            self.observe(v)
        self.missed += new - len(values)
        self.seen = count

    def view(self) -> HistogramView:
        return HistogramView(self.buckets, tuple(self.counts), self.total, self.missed)
