"""`PeriodicWorker`: repeat one async step every `interval_s` seconds, owned by the app's lifespan.

The step does the work (take a sample, hand it on); the worker only schedules it, so the step is
tested alone and the worker is tested with a trivial step. Ticks keep a fixed cadence: a slow
step delays the next tick, it does not shift every later one. A step that raises is logged
(with its traceback the first time, then once more when it recovers) and the loop goes on; a
worker that died silently would be worse than one that logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]


class PeriodicWorker:
    """Runs `step` every `interval_s` seconds in one task, from `start()` until `stop()`."""

    def __init__(
        self,
        name: str,
        step: Step,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"{name}: interval_s must be positive, not {interval_s}")
        self.name = name
        self.interval_s = interval_s
        self._step = step
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.ticks_total = 0
        self.failures_total = 0
        self.consecutive_failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in a task this worker owns (and `stop()` cancels)."""
        if self.running:
            raise RuntimeError(f"{self.name}: already running")
        self._task = asyncio.create_task(self.run(), name=f"probe:{self.name}")

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end. Safe to call when not running."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait() neither raises the task's CancelledError nor swallows our own cancellation
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: loop ended with an error", self.name, exc_info=task.exception())

    async def run(self) -> None:
        """Tick forever: one step, then sleep until the next deadline."""
        deadline = self._clock()
        while True:
            await self.tick()
            deadline += self.interval_s
            now = self._clock()
            if deadline < now:  # the step overran whole intervals: skip them, do not burst
                deadline = now
            await self._sleep(deadline - now)

    async def tick(self) -> None:
        """Run the step once; an exception is counted and logged, never raised."""
        self.ticks_total += 1
        try:
            await self._step()
        except Exception:
            self.failures_total += 1
            self.consecutive_failures += 1
            if self.consecutive_failures == 1:
                logger.exception("%s: step failed (logged again only when it recovers)", self.name)
            return
        if self.consecutive_failures:
            logger.info(
                "%s: step recovered after %d failures", self.name, self.consecutive_failures
            )
        self.consecutive_failures = 0
