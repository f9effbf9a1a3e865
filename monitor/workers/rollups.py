"""The rollup and retention workers' steps: the store's blocking work, run in a thread.

`RollupWorker.step()` seals the minutes that are `lag_s` old (`monitor.store.rollups`);
`RetentionWorker.step()` prunes what retention lets go (`monitor.store.retention`), a bounded
number of batches per step, so a first prune of a large store spreads over several steps
instead of holding one thread for minutes. Both are safe with several replicas on one
database: sealing takes the state row's lock, pruning deletes what nobody needs any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from monitor.record import utcnow
from monitor.store.retention import PruneResult, prune
from monitor.store.rollups import SealResult, seal_step

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

PRUNE_BATCHES_PER_STEP: Final = 200


class RollupWorker:
    def __init__(
        self, engine: Engine, *, lag_s: float, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.lag = timedelta(seconds=lag_s)
        self._now = now
        self.last: SealResult | None = None

    async def step(self) -> SealResult:
        self.last = await asyncio.to_thread(seal_step, self.engine, self._now(), self.lag)
        if self.last.late is not None:
            logger.info("rollups: rolled up %s to %s again for late records", *self.last.late)
        return self.last


class RetentionWorker:
    def __init__(
        self,
        engine: Engine,
        *,
        raw_days: float,
        rollup_days: float,
        batch_size: int,
        max_batches: int = PRUNE_BATCHES_PER_STEP,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.raw_age = timedelta(days=raw_days)
        self.rollup_age = timedelta(days=rollup_days)
        self.batch_size = batch_size
        self.max_batches = max_batches
        self._now = now
        self.last: PruneResult | None = None
        self.deleted_total = 0

    async def step(self) -> PruneResult:
        result = await asyncio.to_thread(
            prune, self.engine, self._now(), self.raw_age, self.rollup_age,
            batch=self.batch_size, max_batches=self.max_batches,
        )  # fmt: skip
        self.last = result
        deleted = sum(result.deleted.values())
        self.deleted_total += deleted
        if deleted:
            logger.info(
                "retention: pruned %d row(s) in %d batch(es)%s: %s", deleted, result.batches,
                "" if result.done else " (more next time)",
                ", ".join(f"{t} {n}" for t, n in sorted(result.deleted.items())),
            )  # fmt: skip
        return result
