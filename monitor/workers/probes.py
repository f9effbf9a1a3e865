"""The probe workers' steps: sample, keep the latest in memory, store the values.

Three steps, each run by its own `PeriodicWorker`:

- `sample_host`: the system probe (host CPU and memory, this process, the backend process)
  and the GPU probe, in a thread (psutil and NVML block); GPU power also feeds the energy
  meter.
- `check_backend`: the synthetic health request (`BackendHealthCheck`); the latest result is
  what `/ready` and `/admin/stats` report.
- `scrape_backend`: the backend's own Prometheus metrics (vLLM, llama.cpp).

Values go to `probe_samples` in long form (`store.samples.ProbeValue`). A database that is
down loses those samples (with one warning per outage): probes are periodic and the next one
comes soon, unlike request records, which the recorder spools.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.probes.backend_health import BackendHealthCheck, HealthCheckResult
from monitor.probes.backend_metrics import BackendMetricsSample, BackendMetricsScraper
from monitor.probes.energy import PowerSample, RequestEnergy, RequestSpan, request_energy
from monitor.probes.gpu import GpuProbe, GpuSample
from monitor.probes.system import SystemProbe, SystemSample
from monitor.record import RequestRecord, utcnow
from monitor.store.samples import ProbeValue, write_probe_values

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MB = 1024 * 1024


def system_values(sample: SystemSample) -> list[ProbeValue]:
    """A system sample as stored values (host, `proxy`, `backend` targets)."""
    ts = sample.ts
    values = [
        ProbeValue(ts, "system", "host_cpu_percent", sample.cpu_percent, "host"),
        ProbeValue(ts, "system", "host_memory_used_mb", sample.memory_used_bytes / MB, "host"),
        ProbeValue(ts, "system", "host_memory_percent", sample.memory_percent, "host"),
    ]
    for name, process in (("proxy", sample.proxy), ("backend", sample.backend)):
        if process is None:
            continue
        target = f"{name}:{process.pid}"
        values.append(ProbeValue(ts, "system", f"{name}_rss_mb", process.rss_bytes / MB, target))
        if process.cpu_percent is not None:
            values.append(
                ProbeValue(ts, "system", f"{name}_cpu_percent", process.cpu_percent, target)
            )
    if sample.backend_error is not None:
        values.append(ProbeValue(ts, "system", "backend_rss_mb", None, "backend",
                                 sample.backend_error))  # fmt: skip
    return values


def gpu_values(samples: Sequence[GpuSample]) -> list[ProbeValue]:
    """GPU samples as stored values, one target per GPU index."""
    values: list[ProbeValue] = []
    for s in samples:
        target = str(s.index)

        def add(
            metric: str, value: float | None, target: str = target, ts: datetime = s.ts
        ) -> None:
            if value is not None:
                values.append(ProbeValue(ts, "gpu", metric, value, target))

        add("gpu_utilization_percent", s.utilization_percent)
        add("gpu_memory_used_mb", None if s.memory_used_bytes is None else s.memory_used_bytes / MB)
        add("gpu_memory_total_mb",
            None if s.memory_total_bytes is None else s.memory_total_bytes / MB)  # fmt: skip
        add("gpu_memory_pct", s.memory_percent)
        add("gpu_temperature_c", s.temperature_c)
        add("gpu_power_w", s.power_w)
        for process in s.processes or ():
            if process.used_bytes is not None:
                add("gpu_process_memory_mb", process.used_bytes / MB, f"{target}:{process.pid}")
    return values


def health_values(result: HealthCheckResult, target: str) -> list[ProbeValue]:
    up = 0.0 if result.status == "unhealthy" else 1.0
    detail = result.status if result.error is None else f"{result.status}: {result.error}"
    return [
        ProbeValue(result.ts, "health", "backend_up", up, target, detail),
        ProbeValue(result.ts, "health", "health_latency_ms", result.latency_ms, target),
    ]


def backend_metric_values(sample: BackendMetricsSample, target: str) -> list[ProbeValue]:
    fields = {
        "backend_requests_running": sample.requests_running,
        "backend_requests_waiting": sample.requests_waiting,
        "backend_kv_cache_usage": sample.kv_cache_usage,
        "backend_ttft_s": sample.ttft_recent_mean_s,
    }
    return [
        ProbeValue(sample.ts, "backend", metric, value, target, sample.flavor)
        for metric, value in fields.items()
        if value is not None
    ]


class EnergyMeter:
    """Joules per request from GPU power: finished requests wait until a power sample past
    their end arrives, then their share of the power curve is integrated (`probes.energy`)."""

    def __init__(self, keep: timedelta = timedelta(minutes=10), max_gap_s: float = 60.0) -> None:
        self.keep = keep
        self.max_gap_s = max_gap_s
        self.power: dict[str, deque[PowerSample]] = {}
        self.pending: list[RequestSpan] = []
        self.joules_total = 0.0
        self.tokens_total = 0
        self.requests_total = 0

    def add_request(self, record: RequestRecord) -> None:
        if record.latency_ms is None or record.outcome != "ok":
            return
        start = record.ts.timestamp()
        span = RequestSpan(record.id, start, start + record.latency_ms / 1000.0,
                           record.completion_tokens)  # fmt: skip
        self.pending.append(span)
        if len(self.pending) > 100_000:  # no power samples are coming: do not grow forever
            del self.pending[:50_000]

    def add_power(self, samples: Sequence[GpuSample]) -> list[RequestEnergy]:
        """Take one GPU sample per device; returns the requests it allowed to be measured."""
        for s in samples:
            if s.power_w is not None:
                series = self.power.setdefault(s.uuid, deque())
                series.append(PowerSample(s.ts.timestamp(), s.power_w))
                horizon = s.ts.timestamp() - self.keep.total_seconds()
                while series and series[0].t < horizon:
                    series.popleft()
        if not self.power or not self.pending:
            return []
        latest = min(series[-1].t for series in self.power.values() if series)
        ready = [span for span in self.pending if span.end <= latest]
        if not ready:
            return []
        self.pending = [span for span in self.pending if span.end > latest]
        power = {uuid: list(series) for uuid, series in self.power.items()}
        estimates = request_energy(power, ready, max_gap_s=self.max_gap_s)
        for estimate in estimates:
            self.joules_total += estimate.joules
            self.tokens_total += estimate.completion_tokens or 0
            self.requests_total += 1
        return estimates


def energy_values(estimates: Sequence[RequestEnergy], ts: datetime) -> list[ProbeValue]:
    """One tick's measured requests, summed: joules, requests and completion tokens."""
    if not estimates:
        return []
    joules = sum(e.joules for e in estimates)
    tokens = sum(e.completion_tokens or 0 for e in estimates)
    return [
        ProbeValue(ts, "energy", "energy_j", joules, "gpu"),
        ProbeValue(ts, "energy", "energy_requests", float(len(estimates)), "gpu"),
        ProbeValue(ts, "energy", "energy_tokens", float(tokens), "gpu"),
    ]


class ProbeRunner:
    """Owns the probes, their latest readings, and the writes of their values."""

    def __init__(
        self,
        engine: Engine,
        *,
        system: SystemProbe | None = None,
        gpu: GpuProbe | None = None,
        health: BackendHealthCheck | None = None,
        scraper: BackendMetricsScraper | None = None,
        backend_label: str = "backend",
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.system = system
        self.gpu = gpu
        self.health = health
        self.scraper = scraper
        self.backend_label = backend_label
        self.energy = EnergyMeter()
        self._now = now
        self.last_system: SystemSample | None = None
        self.last_gpus: list[GpuSample] = []
        self.last_backend_metrics: BackendMetricsSample | None = None
        self.values_written_total = 0
        self.values_dropped_total = 0
        self._store_down = False

    @property
    def last_health(self) -> HealthCheckResult | None:
        return self.health.last if self.health is not None else None

    async def sample_host(self) -> None:
        values: list[ProbeValue] = []
        if self.system is not None:
            self.last_system = await asyncio.to_thread(self.system.sample)
            values += system_values(self.last_system)
        if self.gpu is not None and self.gpu.available:
            self.last_gpus = await asyncio.to_thread(self.gpu.sample)
            values += gpu_values(self.last_gpus)
            values += energy_values(self.energy.add_power(self.last_gpus), self._now())
        await self._store(values)

    async def check_backend(self) -> None:
        if self.health is None:
            return
        result = await self.health.check()
        await self._store(health_values(result, self.backend_label))

    async def scrape_backend(self) -> None:
        if self.scraper is None:
            return
        sample = await self.scraper.scrape()
        if sample is not None:
            self.last_backend_metrics = sample
            await self._store(backend_metric_values(sample, self.backend_label))

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.close()

    async def _store(self, values: list[ProbeValue]) -> None:
        if not values:
            return
        try:
            await asyncio.to_thread(write_probe_values, self.engine, values)
        except Exception as exc:
            self.values_dropped_total += len(values)
            if not self._store_down:
                logger.warning(
                    "probes: cannot store samples (%s: %s); dropping them until the database "
                    "is back",
                    exc.__class__.__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                self._store_down = True
            return
        if self._store_down:
            logger.info("probes: storing samples again")
            self._store_down = False
        self.values_written_total += len(values)
