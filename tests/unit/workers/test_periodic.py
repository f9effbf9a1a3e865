from __future__ import annotations

import asyncio
import logging

import pytest

from monitor.workers.periodic import PeriodicWorker


class FakeTime:
    """A clock that only the step and the sleeps move; the loop parks after `ticks` sleeps."""

    def __init__(self, ticks: int) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.ticks = ticks
        self.done = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) == self.ticks:
            self.done.set()
            await asyncio.Event().wait()  # parked until stop() cancels the loop


async def test_ticks_keep_a_fixed_cadence_and_skip_overrun_intervals() -> None:
    fake = FakeTime(ticks=4)
    durations = iter([0.25, 2.5, 0.0, 1.0])

    async def step() -> None:
        fake.now += next(durations)

    worker = PeriodicWorker("test", step, 1.0, clock=fake.clock, sleep=fake.sleep)
    worker.start()
    await fake.done.wait()
    assert worker.running
    await worker.stop()
    assert not worker.running
    # 0.25 → sleep 0.75; 2.5 overran two intervals → sleep 0 and restart the cadence; ...
    assert fake.sleeps == [0.75, 0.0, 1.0, 0.0]
    assert worker.ticks_total == 4


async def test_a_failing_step_is_counted_logged_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.workers.periodic")
    outcomes = iter([RuntimeError("boom"), RuntimeError("boom"), None])

    async def step() -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    worker = PeriodicWorker("gpu", step, 10.0)
    for _ in range(3):
        await worker.tick()
    assert (worker.ticks_total, worker.failures_total, worker.consecutive_failures) == (3, 2, 0)
    failed, recovered = caplog.records
    assert failed.exc_info is not None and "gpu: step failed" in failed.getMessage()
    assert recovered.getMessage() == "gpu: step recovered after 2 failures"


async def test_start_twice_fails_and_stop_is_idempotent() -> None:
    async def step() -> None:
        return None

    worker = PeriodicWorker("w", step, 60.0)
    await worker.stop()
    worker.start()
    with pytest.raises(RuntimeError):
        worker.start()
    await worker.stop()
    await worker.stop()
    with pytest.raises(ValueError):
        PeriodicWorker("w", step, 0)
