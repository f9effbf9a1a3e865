"""A mergeable histogram on fixed logarithmic buckets: percentiles of any window by summing.

Bucket `i` covers `[MIN_VALUE * GROWTH**i, MIN_VALUE * GROWTH**(i + 1))`; bucket 0 also takes
every value at or below `MIN_VALUE` (zero included), and bucket `CAP_INDEX` everything from its
lower bound up. With `GROWTH = 2 ** (1/8)` a bucket is 9 % wide: eight per doubling, about 330
from 0.01 ms to past a day. The buckets are the same for every histogram, so two histograms
merge by adding counts, and the rollups store a minute's histogram and sum them for any window.

`quantile(q)` interpolates between the closest ranks as `percentile_cont` does, taking each
rank's value to be the middle of its bucket: the answer is within one bucket's width of the
exact percentile. `count` and `total` are exact, so `mean()` is too.

Stored as sparse JSON, `{"bucket index": count}` (JSON keys are strings); the total is stored
beside it (a float column), and given back to `from_json`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

MIN_VALUE: Final = 0.01
GROWTH: Final = 2 ** (1 / 8)
CAP_INDEX: Final = 330  # MIN_VALUE * GROWTH**330 ≈ 2.7e10: past a day in milliseconds
_LOG_GROWTH: Final = math.log(GROWTH)


def bucket_index(value: float) -> int:
    """The bucket a value falls in."""
    if not value > MIN_VALUE:  # also NaN: callers skip it, this only keeps it in range
        return 0
    if value == math.inf:
        return CAP_INDEX
    index = int(math.log(value / MIN_VALUE) / _LOG_GROWTH)
    # the logarithm can land one off at a bucket's edge: settle on the exact bounds
    if index > 0 and value < lower_bound(index):
        index -= 1
    elif value >= lower_bound(index + 1):
        index += 1
    return min(index, CAP_INDEX)


def lower_bound(index: int) -> float:
    """Where bucket `index` starts (bucket 0 from zero: it holds everything below)."""
    return 0.0 if index <= 0 else MIN_VALUE * GROWTH**index


def upper_bound(index: int) -> float:
    """Where bucket `index` ends (the last bucket has no end)."""
    return math.inf if index >= CAP_INDEX else MIN_VALUE * GROWTH ** (index + 1)


def representative(index: int) -> float:
    """The value a bucket's members are taken to have: its middle (the last bucket's start)."""
    if index >= CAP_INDEX:
        return lower_bound(index)
    return (lower_bound(index) + upper_bound(index)) / 2


class Histogram:
    """Counts of values per bucket, with their number and sum. Mergeable, sparse."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> Histogram:
        histogram = cls()
        for value in values:
            histogram.add(value)
        return histogram

    def add(self, value: float) -> None:
        """Count one value; NaN is ignored (it has no place on a time axis)."""
        if math.isnan(value):
            return
        index = bucket_index(value)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        """Add every value `other` counted."""
        counts = self.counts
        for index, n in other.counts.items():
            counts[index] = counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total

    def merge_json(self, data: Mapping[str, int] | None, total: float | None) -> None:
        """`merge(Histogram.from_json(data, total))` without building the histogram (the
        rollup readers merge thousands of stored rows)."""
        if not data:
            return
        counts = self.counts
        for key, n in data.items():
            index = int(key)
            counts[index] = counts.get(index, 0) + n
            self.count += n
        self.total += total or 0.0

    def quantile(self, q: float) -> float | None:
        """The q-quantile (q in [0, 1]), within one bucket's width; None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], not {q}")
        if self.count == 0:
            return None
        position = q * (self.count - 1)
        low_rank = int(position)
        high_rank = min(low_rank + 1, self.count - 1)
        low = high = None
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if low is None and seen > low_rank:
                low = representative(index)
            if seen > high_rank:
                high = representative(index)
                break
        assert low is not None and high is not None  # ranks are below `count`
        return low + (high - low) * (position - low_rank)

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_json(self) -> dict[str, int]:
        """The counts as sparse JSON: `{"bucket index": count}`."""
        return {str(index): n for index, n in sorted(self.counts.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, int] | None, total: float | None = None) -> Histogram:
        """The histogram `to_json` gave `data` for. Without `total` (stored apart), the sum
        is estimated from the buckets' middles."""
        histogram = cls()
        for key, n in (data or {}).items():
            if n:
                histogram.counts[int(key)] = int(n)
                histogram.count += int(n)
        if total is None:
            total = sum(representative(i) * n for i, n in histogram.counts.items())
        histogram.total = float(total)
        return histogram

    def buckets(self) -> list[tuple[float, float, int]]:
        """`(low, high, count)` of every non-empty bucket, lowest first (for charts)."""
        return [(lower_bound(i), upper_bound(i), n) for i, n in sorted(self.counts.items())]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.counts == other.counts
            and self.count == other.count
            and math.isclose(self.total, other.total, rel_tol=1e-9, abs_tol=1e-9)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, total={self.total:g}, buckets={len(self.counts)})"
