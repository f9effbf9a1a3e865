"""Leadership: which replica runs the work that must happen once, and failover between them.

Replicas sharing Postgres elect one *leader* through an advisory lock (`store.leader_lock`).
The leader runs the leader-only workers (alert evaluation, scheduled reports, retention);
every replica runs the rest (probes, health checks, rollups, the webhook outbox, which claims
its rows). `Leadership.tick()`, every `leader.interval_s`:

- a follower tries to take the lock; when it gets it, it resets the alert engine (so its first
  step restores the stored active alerts, under the fence) and starts the leader's workers;
- the leader checks the lock's connection; when it is gone (terminated, database down,
  network cut) the leader steps down at once: it stops those workers, drops its in-memory
  alert state and unsaved notifications (the next leader recomputes them from the table), and
  waits two intervals before it stands again, so a healthy follower takes over first.

A leader that dies loses the lock when Postgres ends its session (at once for a process that
exits or is killed, `leader.peer_timeout_s` for a host that vanishes): a follower takes over at
its next tick. Between a deposition and the deposed leader noticing, the fence on every alert
write keeps it from storing or notifying anything.

On SQLite the database is one process's file: that process is the leader from the start, and
says so in one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from monitor.record import utcnow
from monitor.store.leader_lock import Fence, LeaderLock, NotLeader
from monitor.workers.alerting import AlertEngine
from monitor.workers.periodic import PeriodicWorker

logger = logging.getLogger(__name__)

STANDBY_INTERVALS = 2  # after stepping down, intervals to wait before standing again


class Leadership:
    def __init__(
        self,
        lock: LeaderLock | None,
        workers: Sequence[PeriodicWorker],
        alerts: AlertEngine | None = None,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.lock = lock  # None: one process (SQLite), the leader from the start
        self.workers = list(workers)
        self.alerts = alerts
        self.interval_s = interval_s
        self._clock = clock
        self._now = now
        self._loop = PeriodicWorker("leader", self.tick, interval_s)
        self._stand_at = 0.0
        self._unreachable = False
        self.is_leader = False
        self.elected_at: datetime | None = None
        self.elections_total = 0
        self.stepdowns_total = 0

    def fence(self) -> Fence | None:
        """The current term's fence for a leader's write; None on SQLite. Raises `NotLeader`
        on a replica that is not the leader, so nothing unfenced is ever stored."""
        if self.lock is None:
            return None
        fence = self.lock.fence
        if not self.is_leader or fence is None:
            raise NotLeader("this replica is not the leader")
        return fence

    async def start(self) -> None:
        if self.lock is None:
            logger.info(
                "leader: SQLite is one process's database; this process evaluates alerts, sends "
                "scheduled reports and prunes, with no election (use Postgres for replicas)"
            )
            self._elect()
            return
        self._loop.start()

    async def stop(self) -> None:
        """Stop trying, stop the leader's workers, and give the lock up, so another replica
        takes over at its next tick instead of after a timeout."""
        await self._loop.stop()
        if self.is_leader:
            await self._step_down("shutting down")
        if self.lock is not None:
            await asyncio.to_thread(self.lock.close)

    async def tick(self) -> None:
        lock = self.lock
        if lock is None:
            return
        if self.is_leader:
            try:
                await asyncio.to_thread(lock.check)
            except Exception as exc:
                await self._step_down(f"lost the lock's connection ({exc.__class__.__name__})")
            return
        if self._clock() < self._stand_at:
            return
        try:
            fence = await asyncio.to_thread(lock.try_acquire)
        except Exception as exc:
            if not self._unreachable:
                logger.warning("leader: cannot reach the database (%s)", exc.__class__.__name__)
            self._unreachable = True
            return
        self._unreachable = False
        if fence is not None:
            logger.info("leader: elected (lock session pid %d)", fence.pid)
            self._elect()

    def _elect(self) -> None:
        if self.alerts is not None:
            self.alerts.reset()  # its first step restores the stored alerts, under the fence
        self.is_leader = True
        self.elected_at = self._now()
        self.elections_total += 1
        for worker in self.workers:
            worker.start()

    async def _step_down(self, reason: str) -> None:
        logger.warning("leader: stepping down: %s", reason)
        self.is_leader = False
        self.elected_at = None
        self.stepdowns_total += 1
        for worker in self.workers:
            await worker.stop()
        if self.alerts is not None:
            self.alerts.reset()  # what it had not stored is the next leader's to decide
        if self.lock is not None:
            await asyncio.to_thread(self.lock.release)
        self._stand_at = self._clock() + STANDBY_INTERVALS * self.interval_s

    def state(self) -> dict[str, Any]:
        """For /admin/stats: this replica's role and term."""
        fence = self.lock.fence if self.lock is not None and self.is_leader else None
        return {
            "role": "single" if self.lock is None else "leader" if self.is_leader else "follower",
            "leader": self.is_leader,
            "elected_at": self.elected_at.isoformat() if self.elected_at else None,
            "lock_pid": fence.pid if fence is not None else None,
            "elections": self.elections_total,
            "stepdowns": self.stepdowns_total,
            "interval_s": self.interval_s,
            "workers": [w.name for w in self.workers],
        }
