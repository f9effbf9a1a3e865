"""The event loop's lateness: a stall is seen (at least its length less one interval), counted
in the right bucket, and exposed on /metrics as a histogram and a worst value."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.workers.loop_lag import BUCKETS, LoopLag, LoopLagCollector


def test_observations_land_in_their_buckets_and_the_worst_is_kept() -> None:
    lag = LoopLag(0.01)
    for value in (0.0, 0.0004, 0.003, 0.003, 0.07, 3.0, -0.0001):
        lag.observe(value)
    assert lag.count == 7
    assert lag.worst_s == 3.0
    assert lag.sum_s == pytest.approx(3.0764)
    counts = dict(zip((*BUCKETS, "inf"), lag.bucket_counts, strict=True))
    assert counts[0.001] == 3  # 0, 0.4 ms and a clock's negative jitter taken as 0
    assert counts[0.005] == 2
    assert counts[0.1] == 1
    assert counts["inf"] == 1


def test_a_blocked_loop_shows_as_lag_at_least_the_stall_less_one_interval() -> None:
    async def scenario() -> LoopLag:
        lag = LoopLag(0.005)
        lag.start()
        await asyncio.sleep(0.05)  # a few quiet ticks
        time.sleep(0.08)  # noqa: ASYNC251 - holds the loop, as work on it would
        await asyncio.sleep(0.03)
        await lag.stop()
        return lag

    lag = asyncio.run(scenario())
    assert lag.count >= 3
    assert lag.worst_s >= 0.08 - 0.005
    assert sum(lag.bucket_counts[BUCKETS.index(0.05) + 1 :]) >= 1  # counted past 50 ms


def test_stop_ends_the_sampling_and_start_again_resumes() -> None:
    async def scenario() -> tuple[int, int, int]:
        lag = LoopLag(0.002)
        lag.start()
        await asyncio.sleep(0.03)
        await lag.stop()
        stopped = lag.count
        await asyncio.sleep(0.03)
        after = lag.count
        lag.start()
        await asyncio.sleep(0.03)
        await lag.stop()
        await lag.stop()  # twice is fine
        return stopped, after, lag.count

    stopped, after, resumed = asyncio.run(scenario())
    assert stopped > 0 and after == stopped and resumed > after


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLag(0)


def test_exposed_as_a_histogram_and_a_worst_value() -> None:
    lag = LoopLag(0.01)
    for value in (0.0005, 0.012, 0.3):
        lag.observe(value)
    registry = CollectorRegistry()
    registry.register(LoopLagCollector(lag))
    text = generate_latest(registry).decode()
    assert 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="0.001"} 1.0' in text
    assert 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="0.02"} 2.0' in text
    assert 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="0.25"} 2.0' in text
    assert 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="+Inf"} 3.0' in text
    assert "gemma_monitor_runtime_event_loop_lag_seconds_count 3.0" in text
    assert "gemma_monitor_runtime_event_loop_lag_max_seconds 0.3" in text
