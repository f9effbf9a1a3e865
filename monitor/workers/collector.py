"""The background workers' state for Prometheus, read at scrape time: latest probe values,
backend health, active alerts by state and severity, notifications and delivery outcomes, and
whether this replica is the leader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config_types import SEVERITIES
from monitor.workers.alerting import AlertEngine
from monitor.workers.leader import Leadership
from monitor.workers.outbox import OutboxWorker
from monitor.workers.periodic import PeriodicWorker
from monitor.workers.probes import ProbeRunner


class WorkersCollector(Collector):
    def __init__(
        self,
        runner: ProbeRunner,
        alerts: AlertEngine | None,
        outbox: OutboxWorker | None,
        workers: list[PeriodicWorker],
        leadership: Leadership | None = None,
    ) -> None:
        self._runner = runner
        self._alerts = alerts
        self._outbox = outbox
        self._workers = workers
        self._leadership = leadership

    def collect(self) -> Iterator[Any]:
        runner = self._runner
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
        alerts = self._alerts
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
        outbox = self._outbox
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
        for worker in self._workers:
            workers.add_metric([worker.name], 1.0 if worker.consecutive_failures else 0.0)
        yield workers
        leadership = self._leadership
        if leadership is not None:
            yield _gauge("gemma_monitor_leader",
                         "1 while this replica is the leader (alerts, reports, retention).",
                         1.0 if leadership.is_leader else 0.0)  # fmt: skip
            yield CounterMetricFamily("gemma_monitor_leader_elections",
                                      "Times this replica became the leader.",
                                      value=leadership.elections_total)  # fmt: skip
            yield CounterMetricFamily("gemma_monitor_leader_stepdowns",
                                      "Times this replica stopped being the leader.",
                                      value=leadership.stepdowns_total)  # fmt: skip


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family
