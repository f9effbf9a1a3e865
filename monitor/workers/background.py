"""The background half of the monitor: probes, health checks, alert evaluation, webhook delivery,
scheduled reports.

`Monitoring.from_settings(...)` builds each worker the settings turn on; the app's lifespan
calls `start()` and `stop()`. Every worker is a `PeriodicWorker` around one step (see
`probes.runner`, `alerts.engine`, `alerts.outbox`), off the request path: the only thing a
request does here is `observe(record)`, an append for the energy meter.

`collector()` exposes the workers' state to Prometheus at scrape time (`collector.py`); the
health check's request is built in `health.py`.

Alert evaluation, scheduled reports and retention run on one replica only: `leadership`
(`leader.py`) starts them on the replica elected leader and stops them when it steps down;
every other worker runs on every replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.registry import Collector

from monitor.alerts.delivery import Post
from monitor.alerts.rules import effective_rules
from monitor.config import Settings
from monitor.probes.backend_health import BackendHealthCheck
from monitor.probes.backend_metrics import BackendMetricsScraper
from monitor.probes.gpu import GpuProbe, NvmlReader, PynvmlReader
from monitor.probes.system import SystemProbe
from monitor.record import RequestRecord, utcnow
from monitor.store.leader_lock import LeaderLock, is_postgres
from monitor.store.views import acknowledge_alert
from monitor.upstream.backend import BackendClient
from monitor.upstream.webhook import ThreadedPost
from monitor.workers.alerting import AlertEngine
from monitor.workers.collector import WorkersCollector
from monitor.workers.health import health_request
from monitor.workers.leader import Leadership
from monitor.workers.outbox import OutboxWorker
from monitor.workers.periodic import PeriodicWorker
from monitor.workers.probes import ProbeRunner
from monitor.workers.reports import ReportScheduler
from monitor.workers.rollups import RetentionWorker, RollupWorker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

OUTBOX_INTERVAL_S = 1.0


class Monitoring:
    def __init__(
        self,
        runner: ProbeRunner,
        alerts: AlertEngine | None,
        outbox: OutboxWorker | None,
        workers: list[PeriodicWorker],
        webhook_pool: ThreadedPost | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.runner = runner
        self.alerts = alerts
        self.outbox = outbox
        self.workers = workers  # every worker, the leader's (`leadership.workers`) included
        self._webhook_pool = webhook_pool  # built here, so closed here
        self.leadership = leadership or Leadership(None, [], alerts)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        backend: BackendClient,
        *,
        nvml_reader: Callable[[], NvmlReader] = PynvmlReader,
        post: Post | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> Monitoring:
        probes, health, scrape = settings.probes, settings.health, settings.backend_metrics
        system = gpu = None
        if probes.enabled:
            system = SystemProbe(backend_pid=probes.backend_pid, backend_port=probes.backend_port)
            if probes.gpu:
                gpu = GpuProbe.open(nvml_reader)
        check = None
        if health.enabled:
            check = BackendHealthCheck(
                health_request(backend, settings),
                model=health.model,
                max_tokens=health.max_tokens,
                degraded_after_s=min(health.degraded_after_s, health.timeout_s),
                timeout_s=health.timeout_s,
            )
        scraper = None
        if scrape.enabled:
            scraper = BackendMetricsScraper(lambda: backend.get_text(scrape.path))
        runner = ProbeRunner(
            engine, system=system, gpu=gpu, health=check, scraper=scraper,
            backend_label=settings.backend_label, now=now,
        )  # fmt: skip
        workers: list[PeriodicWorker] = []
        if system is not None or gpu is not None:
            workers.append(PeriodicWorker("probes", runner.sample_host, probes.interval_s))
        if check is not None:
            workers.append(PeriodicWorker("health", runner.check_backend, health.interval_s))
        if scraper is not None:
            workers.append(PeriodicWorker("backend-metrics", runner.scrape_backend,
                                          scrape.interval_s))  # fmt: skip
        alerts = outbox = None
        webhook_pool = None
        lock = None
        if is_postgres(engine):  # replicas may share it: elect the one that runs `leading`
            lock = LeaderLock(engine, peer_timeout_s=settings.leader.peer_timeout_s)
        leadership = Leadership(lock, [], interval_s=settings.leader.interval_s, now=now)
        leading = leadership.workers
        if settings.alerts.enabled:
            a = settings.alerts
            receivers = settings.webhook_receivers()
            alerts = AlertEngine(
                engine, effective_rules(a.rules, with_defaults=a.default_rules), receivers,
                resolve_after_s=a.resolve_after_s, external_url=a.external_url, now=now,
                fence=leadership.fence,
            )  # fmt: skip
            leadership.alerts = alerts
            outbox = OutboxWorker(
                engine, receivers, post or (webhook_pool := ThreadedPost()),
                retry_base_s=a.retry_base_s,
                retry_cap_s=a.retry_cap_s, give_up_after_s=a.give_up_after_s, now=now,
            )  # fmt: skip
            leading.append(PeriodicWorker("alerts", alerts.step, a.interval_s))
            workers.append(PeriodicWorker("outbox", outbox.step, min(OUTBOX_INTERVAL_S,
                                                                      a.interval_s)))  # fmt: skip
        if settings.reports.schedule != "off":
            # scheduled reports go out through the same outbox, alerting on or off
            receivers, a = settings.webhook_receivers(), settings.alerts
            if outbox is None:
                outbox = OutboxWorker(
                    engine, receivers, post or (webhook_pool := ThreadedPost()),
                    retry_base_s=a.retry_base_s,
                    retry_cap_s=a.retry_cap_s, give_up_after_s=a.give_up_after_s, now=now,
                )  # fmt: skip
                workers.append(PeriodicWorker("outbox", outbox.step, OUTBOX_INTERVAL_S))
            scheduler = ReportScheduler(engine, settings.reports, receivers, now=now)
            leading.append(PeriodicWorker("reports", scheduler.step, settings.reports.interval_s))
        if settings.rollups.enabled:
            rollups = RollupWorker(engine, lag_s=settings.rollups.lag_s, now=now)
            workers.append(PeriodicWorker("rollups", rollups.step, settings.rollups.interval_s))
        if settings.retention.enabled:
            r = settings.retention
            retention = RetentionWorker(
                engine, raw_days=r.raw_days, rollup_days=r.rollup_days,
                batch_size=r.batch_size, now=now,
            )  # fmt: skip
            leading.append(PeriodicWorker("retention", retention.step, r.interval_s))
        return cls(runner, alerts, outbox, [*workers, *leading], webhook_pool, leadership)

    def observe(self, record: RequestRecord) -> None:
        """A finished request (called on the request path: an append, nothing more)."""
        if self.runner.gpu is not None and self.runner.gpu.available:
            self.runner.energy.add_request(record)

    async def start(self) -> None:
        for worker in self.workers:
            if worker not in self.leadership.workers:  # those start when elected
                worker.start()
        await self.leadership.start()

    async def stop(self) -> None:
        await self.leadership.stop()  # stops the leader's workers and gives the lock up
        for worker in self.workers:
            await worker.stop()
        self.runner.close()
        if self._webhook_pool is not None:
            self._webhook_pool.close()

    def worker_states(self) -> list[dict[str, Any]]:
        return [
            {
                "name": w.name,
                "running": w.running,
                "interval_s": w.interval_s,
                "ticks": w.ticks_total,
                "failures": w.failures_total,
                "failing": w.consecutive_failures > 0,
            }
            for w in self.workers
        ]

    def health_state(self) -> dict[str, Any] | None:
        """The latest backend health check, or None before the first (or when off)."""
        result = self.runner.last_health
        if result is None:
            return None
        return {
            "status": result.status,
            "latency_ms": result.latency_ms,
            "checked_at": result.ts.isoformat(),
            "error": result.error,
            "consecutive_failures": result.consecutive_failures,
        }

    async def acknowledge(self, fingerprint: str, by: str) -> bool:
        """Acknowledge an active alert: through the alert engine on the leader; in the store
        on a follower (the leader's next step takes it over). False when there is none."""
        if self.alerts is None:
            return False
        if self.leadership.is_leader:
            return await self.alerts.acknowledge(fingerprint, by)
        engine = self.alerts.engine
        return await asyncio.to_thread(acknowledge_alert, engine, fingerprint, by, utcnow())

    def collector(self) -> Collector:
        return WorkersCollector(
            self.runner, self.alerts, self.outbox, self.workers, self.leadership
        )
