"""How long the event loop was held: a timer asks to wake every `interval_s` and the lateness
of each wake-up is the time the loop spent on other work it could not interrupt.

Every stream and every request waits on this loop, so a stall here is added to each of them;
the hardening aim is that no request holds it for more than 20 ms. A wake-up is late by at
most the stall it fell in, and a stall of length D is seen as a lag between D - `interval_s`
and D, so the worst lag plus `interval_s` bounds the worst stall from above.

Node's `monitorEventLoopDelay` measures the same way. The cost is one timer callback per
interval (at the default 10 ms, a hundred wake-ups a second). Under load that is nothing; on an
idle server it is most of what its event loop does: each wake-up runs cold (on a 2-vCPU VM
1-2 % of a core, against 0.2 % with sampling off). A plain timer callback, not a task sleeping
in a loop, spares each wake-up a future and a task step (about a fifth of that idle cost).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

DEFAULT_INTERVAL_S = 0.01
BUCKETS = (
    # every 2.5 ms up to the hardening aim of 20 ms, so a stall can be bounded close to it
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class LoopLag:
    """Measures the loop's lateness from `start()` until `stop()`; read by `LoopLagCollector`."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.interval_s = interval_s
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._asked = 0.0
        self.bucket_counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.count = 0
        self.sum_s = 0.0
        self.worst_s = 0.0

    def observe(self, lag_s: float) -> None:
        lag_s = max(lag_s, 0.0)
        self.bucket_counts[bisect.bisect_left(BUCKETS, lag_s)] += 1
        self.count += 1
        self.sum_s += lag_s
        if lag_s > self.worst_s:
            self.worst_s = lag_s

    def start(self) -> None:
        """Sample from now on, on the running loop, until `stop()`."""
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule()

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _schedule(self) -> None:
        assert self._loop is not None
        self._asked = self._clock()
        self._handle = self._loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        # a timer callback, not a task sleeping in a loop: no future, no task step, a few
        # microseconds less each of the hundred wake-ups a second, mostly while idle
        self.observe(self._clock() - self._asked - self.interval_s)
        self._schedule()


class LoopLagCollector(Collector):
    """`gemma_monitor_runtime_event_loop_lag_seconds` (a histogram of the wake-ups' lateness)
    and `..._max_seconds` (the worst since start)."""

    def __init__(self, lag: LoopLag) -> None:
        self._lag = lag

    def collect(self) -> Iterator[Any]:
        lag = self._lag
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, n in zip((*BUCKETS, float("inf")), lag.bucket_counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "gemma_monitor_runtime_event_loop_lag_seconds",
            f"How late the event loop ran a timer due every {lag.interval_s:g} s: the time it "
            "was held by other work.",
            buckets=buckets,
            sum_value=lag.sum_s,
        )
        yield GaugeMetricFamily(
            "gemma_monitor_runtime_event_loop_lag_max_seconds",
            "The event loop's worst lateness since start (add the timer's interval for a bound "
            "on the longest stall).",
            value=lag.worst_s,
        )
