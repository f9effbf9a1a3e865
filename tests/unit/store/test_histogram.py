"""The rollups' histogram: quantiles within one bucket of exact, merging, JSON."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from monitor.store.histogram import (
    CAP_INDEX,
    GROWTH,
    MIN_VALUE,
    Histogram,
    bucket_index,
    lower_bound,
    upper_bound,
)


def exact_percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (Postgres's percentile_cont)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bucket_width(value: float) -> float:
    index = bucket_index(value)
    return upper_bound(index) - lower_bound(index)


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "lognormal latency": lambda rng: rng.lognormvariate(6.5, 0.9),
    "uniform": lambda rng: rng.uniform(0.0, 5000.0),
    "exponential": lambda rng: rng.expovariate(1 / 300),
    "bimodal": lambda rng: rng.gauss(40, 5) if rng.random() < 0.7 else rng.gauss(9000, 800),
    "tiny values": lambda rng: rng.uniform(0.0, 0.05),
    "pareto tail": lambda rng: 10 * rng.paretovariate(1.2),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_of_merged_histograms_are_within_one_bucket(name: str, seed: int) -> None:
    rng = random.Random(f"{name}-{seed}")
    draw = DISTRIBUTIONS[name]
    parts = [[max(draw(rng), 0.0) for _ in range(rng.randint(0, 400))] for _ in range(30)]
    merged = Histogram()
    for part in parts:
        merged.merge(Histogram.of(part))
    values = [v for part in parts for v in part]
    assert merged.count == len(values)
    assert math.isclose(merged.total, sum(values), rel_tol=1e-9)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_percentile(values, q)
        estimate = merged.quantile(q)
        assert estimate is not None
        bound = max(bucket_width(exact), bucket_width(estimate))
        assert abs(estimate - exact) <= bound, (q, exact, estimate, bound)


def test_a_bucket_is_one_growth_step_wide_and_holds_its_lower_bound() -> None:
    for index in (1, 7, 8, 100, CAP_INDEX - 1):
        low = MIN_VALUE * GROWTH**index
        assert bucket_index(low) == index
        assert bucket_index(math.nextafter(low, 0)) == index - 1
        assert math.isclose(upper_bound(index) / lower_bound(index), GROWTH)
    assert bucket_index(0.0) == bucket_index(-3.0) == bucket_index(MIN_VALUE) == 0
    assert bucket_index(1e300) == bucket_index(math.inf) == CAP_INDEX


def test_merge_equals_adding_everything() -> None:
    rng = random.Random(7)
    a_values = [rng.lognormvariate(3, 2) for _ in range(500)]
    b_values = [rng.uniform(0, 100) for _ in range(300)]
    merged = Histogram.of(a_values)
    merged.merge(Histogram.of(b_values))
    assert merged == Histogram.of(a_values + b_values)


def test_json_round_trip_keeps_counts_and_total() -> None:
    histogram = Histogram.of([0.0, 1.5, 1.5, 250.0, 1e12])
    data = histogram.to_json()
    assert all(isinstance(k, str) and isinstance(n, int) for k, n in data.items())
    assert Histogram.from_json(data, histogram.total) == histogram
    assert Histogram.from_json(data).count == 5  # without its total: counts still exact


def test_empty_histogram_answers_none() -> None:
    empty = Histogram()
    assert empty.quantile(0.5) is None
    assert empty.mean() is None
    assert empty.buckets() == []
    assert Histogram.from_json({}).count == 0


def test_nan_is_ignored_and_mean_is_exact() -> None:
    histogram = Histogram.of([1.0, 2.0, math.nan, 6.0])
    assert histogram.count == 3
    assert histogram.mean() == 3.0


def test_buckets_cover_the_values_in_order() -> None:
    histogram = Histogram.of([0.5, 0.5, 3.0, 800.0])
    buckets = histogram.buckets()
    assert [n for _, _, n in buckets] == [2, 1, 1]
    for (low, high, _), value in zip(buckets, (0.5, 3.0, 800.0), strict=True):
        assert low <= value < high


def test_quantile_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="within"):
        Histogram.of([1.0]).quantile(1.5)
