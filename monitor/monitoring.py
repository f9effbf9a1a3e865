"""The background half of the monitor: probes, health checks, alert evaluation, webhook delivery.

`Monitoring.from_settings(...)` builds each worker the settings turn on; the app's lifespan
calls `start()` and `stop()`. Every worker is a `PeriodicWorker` around one step (see
`probes.runner`, `alerts.engine`, `alerts.outbox`), off the request path: the only thing a
request does here is `observe(record)`, an append for the energy meter.

`collector()` exposes the workers' state to Prometheus at scrape time: latest probe values,
backend health, active alerts by state and severity, notifications and delivery outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from monitor.alerts.delivery import Post
from monitor.alerts.engine import AlertEngine
from monitor.alerts.http import ThreadedPost
from monitor.alerts.outbox import OutboxWorker
from monitor.alerts.rules import SEVERITIES
from monitor.config import Settings
from monitor.errors import BackendFailed
from monitor.probes.backend_health import BackendHealthCheck
from monitor.probes.backend_metrics import BackendMetricsScraper
from monitor.probes.gpu import GpuProbe, NvmlReader, PynvmlReader
from monitor.probes.runner import ProbeRunner
from monitor.probes.system import SystemProbe, utcnow
from monitor.probes.worker import PeriodicWorker
from monitor.proxy.backend import BackendClient
from monitor.record import RequestRecord

logger = logging.getLogger(__name__)

OUTBOX_INTERVAL_S = 1.0


class Monitoring:
    def __init__(
        self,
        runner: ProbeRunner,
        alerts: AlertEngine | None,
        outbox: OutboxWorker | None,
        workers: list[PeriodicWorker],
    ) -> None:
        self.runner = runner
        self.alerts = alerts
        self.outbox = outbox
        self.workers = workers

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
                _health_send(backend, settings),
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
        if settings.alerts.enabled:
            a = settings.alerts
            receivers = settings.webhook_receivers()
            alerts = AlertEngine(
                engine, settings.alert_rules(), receivers, resolve_after_s=a.resolve_after_s,
                external_url=a.external_url, now=now,
            )  # fmt: skip
            outbox = OutboxWorker(
                engine, receivers, post or ThreadedPost(), retry_base_s=a.retry_base_s,
                retry_cap_s=a.retry_cap_s, give_up_after_s=a.give_up_after_s, now=now,
            )  # fmt: skip
            workers.append(PeriodicWorker("alerts", alerts.step, a.interval_s))
            workers.append(PeriodicWorker("outbox", outbox.step, min(OUTBOX_INTERVAL_S,
                                                                      a.interval_s)))  # fmt: skip
        return cls(runner, alerts, outbox, workers)

    def observe(self, record: RequestRecord) -> None:
        """A finished request (called on the request path: an append, nothing more)."""
        if self.runner.gpu is not None and self.runner.gpu.available:
            self.runner.energy.add_request(record)

    async def start(self) -> None:
        for worker in self.workers:
            worker.start()

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()
        self.runner.close()

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

    def collector(self) -> Collector:
        return _MonitoringCollector(self)


def _health_send(backend: BackendClient, settings: Settings) -> Callable[[Mapping[str, Any]], Any]:
    """The health check's request, in the backend's protocol; any answer but a 2xx raises."""
    ollama = settings.backend_protocol == "ollama"

    async def send(body: Mapping[str, Any]) -> object:
        payload = dict(body)
        if ollama:
            if "model" not in payload:
                tags = await backend.get_json("/api/tags")
                models = tags.get("models") if isinstance(tags, dict) else None
                if not models:
                    raise BackendFailed("the backend lists no model to check")
                payload["model"] = models[0].get("name") or models[0].get("model")
            payload = {
                "model": payload["model"],
                "messages": payload["messages"],
                "stream": False,
                "options": {"num_predict": payload["max_tokens"], "temperature": 0},
            }
        path = "/api/chat" if ollama else "/v1/chat/completions"
        upstream = await backend.send("POST", path, orjson.dumps(payload),
                                      [("content-type", "application/json")])  # fmt: skip
        try:
            raw = await upstream.read(1 << 20)
        finally:
            upstream.release()
        if upstream.status >= 300:
            raise BackendFailed(f"backend answered {upstream.status} to the health check")
        return orjson.loads(raw)

    return send


class _MonitoringCollector(Collector):
    def __init__(self, monitoring: Monitoring) -> None:
        self._m = monitoring

    def collect(self) -> Iterator[Any]:
        runner = self._m.runner
        system = runner.last_system
        if system is not None:
            yield _gauge("gemma_monitor_host_cpu_percent", "Host CPU use, percent of all CPUs.",
                         system.cpu_percent)  # fmt: skip
            yield _gauge("gemma_monitor_host_memory_used_bytes", "Host memory in use.",
                         system.memory_used_bytes)  # fmt: skip
            rss = GaugeMetricFamily("gemma_monitor_process_resident_bytes",
                                    "Resident memory of the proxy and the backend process.",
                                    labels=["process"])  # fmt: skip
            for name, process in (("proxy", system.proxy), ("backend", system.backend)):
                if process is not None:
                    rss.add_metric([name], process.rss_bytes)
            yield rss
        if runner.last_gpus:
            families = {
                "utilization_percent": GaugeMetricFamily(
                    "gemma_monitor_gpu_utilization_percent", "GPU utilisation.", labels=["gpu"]),
                "memory_used_bytes": GaugeMetricFamily(
                    "gemma_monitor_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"]),
                "memory_total_bytes": GaugeMetricFamily(
                    "gemma_monitor_gpu_memory_total_bytes", "GPU memory.", labels=["gpu"]),
                "temperature_c": GaugeMetricFamily(
                    "gemma_monitor_gpu_temperature_celsius", "GPU temperature.", labels=["gpu"]),
                "power_w": GaugeMetricFamily(
                    "gemma_monitor_gpu_power_watts", "GPU power draw.", labels=["gpu"]),
            }  # fmt: skip
            for gpu in runner.last_gpus:
                for field, family in families.items():
                    value = getattr(gpu, field)
                    if value is not None:
                        family.add_metric([str(gpu.index)], value)
            yield from families.values()
            yield CounterMetricFamily(
                "gemma_monitor_energy_joules",
                "GPU energy attributed to finished requests (shared among concurrent ones).",
                value=runner.energy.joules_total,
            )
        health = runner.last_health
        if health is not None:
            yield _gauge("gemma_monitor_backend_up",
                         "Latest backend health check: 1 healthy or degraded, 0 unhealthy.",
                         0.0 if health.status == "unhealthy" else 1.0)  # fmt: skip
            yield _gauge("gemma_monitor_backend_health_check_seconds",
                         "Duration of the latest backend health check.",
                         health.latency_ms / 1000.0)  # fmt: skip
        scraped = runner.last_backend_metrics
        if scraped is not None:
            for name, value in (("requests_running", scraped.requests_running),
                                ("requests_waiting", scraped.requests_waiting),
                                ("kv_cache_usage_ratio", scraped.kv_cache_usage)):  # fmt: skip
                if value is not None:
                    yield _gauge(f"gemma_monitor_backend_{name}",
                                 f"Scraped from the backend's metrics: {name}.", value)  # fmt: skip
        yield CounterMetricFamily("gemma_monitor_probe_values_dropped",
                                  "Probe values the database could not take.",
                                  value=runner.values_dropped_total)  # fmt: skip
        alerts = self._m.alerts
        if alerts is not None:
            active = GaugeMetricFamily("gemma_monitor_alerts",
                                       "Active alerts by state and severity.",
                                       labels=["state", "severity"])  # fmt: skip
            counts = {(s, v): 0 for s in ("pending", "firing") for v in SEVERITIES}
            for alert in alerts.tracker.active():
                counts[(alert.state, alert.severity)] += 1
            for (state, severity), count in counts.items():
                active.add_metric([state, severity], count)
            yield active
            yield CounterMetricFamily("gemma_monitor_alert_notifications",
                                      "Firing and resolved notifications produced.",
                                      value=alerts.notifications_total)  # fmt: skip
        outbox = self._m.outbox
        if outbox is not None:
            yield CounterMetricFamily("gemma_monitor_webhook_deliveries",
                                      "Webhook notifications delivered.",
                                      value=outbox.delivered_total)  # fmt: skip
            yield CounterMetricFamily("gemma_monitor_webhook_failed_attempts",
                                      "Webhook delivery attempts that failed (retried or not).",
                                      value=outbox.failed_attempts_total)  # fmt: skip
            yield CounterMetricFamily("gemma_monitor_webhook_given_up",
                                      "Webhook notifications marked failed for good.",
                                      value=outbox.given_up_total)  # fmt: skip
        workers = GaugeMetricFamily("gemma_monitor_worker_failing",
                                    "1 while a background worker's step keeps failing.",
                                    labels=["worker"])  # fmt: skip
        for worker in self._m.workers:
            workers.add_metric([worker.name], 1.0 if worker.consecutive_failures else 0.0)
        yield workers


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family
