"""The process's own gauges on a real /metrics, rendered off the event loop: the loop's tasks
are still counted, and a stall of the loop shows in its lateness histogram and worst value."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.support.proxy import RunningProxy
from tests.support.servers import metric_samples


def test_tasks_counted_and_a_stall_seen(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(loop_lag_interval_s=0.005)
    runtime = proxy.app.services.runtime
    assert runtime is not None
    loop: Any = runtime._loop  # told at start; /metrics renders in another thread
    assert loop is not None and loop.is_running()
    time.sleep(0.1)
    before = metric_samples(proxy.url)
    assert before["gemma_monitor_runtime_asyncio_tasks"] >= 2  # the sampler and the workers
    assert before["gemma_monitor_runtime_event_loop_lag_seconds_count"] > 0
    assert before["gemma_monitor_runtime_event_loop_lag_max_seconds"] < 0.1

    async def hold() -> None:
        time.sleep(0.15)  # noqa: ASYNC251 - work on the loop that never yields, on purpose

    asyncio.run_coroutine_threadsafe(hold(), loop).result(5)
    time.sleep(0.05)
    after = metric_samples(proxy.url)
    assert after["gemma_monitor_runtime_event_loop_lag_max_seconds"] >= 0.15 - 0.005
    late = 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="0.1"}'
    total = 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="+Inf"}'
    # the stalled wake-up is counted past 100 ms
    assert after[total] - after[late] >= 1 + before[total] - before[late]


def test_sampling_off(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(loop_lag_interval_s=0)
    metrics = metric_samples(proxy.url)
    assert proxy.app.services.loop_lag is None
    assert not any(name.startswith("gemma_monitor_runtime_event_loop") for name in metrics)
    assert metrics["gemma_monitor_runtime_asyncio_tasks"] >= 1
