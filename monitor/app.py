"""The composition root: `create_app(settings)` builds every service once and wires the routes.

Generation routes go straight to the pure-ASGI `ProxyHandler` (streaming, timing, no framework
in the way); everything else (health, readiness, metrics, model lists, feedback, admin) is the
FastAPI app `monitor.api.routes.build_api` makes. Its lifespan starts the services and stops
them through one exit stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI

from monitor.api.feedback import RecentRequests
from monitor.api.routes import build_api
from monitor.api.worker_metrics import WorkerMetrics, WorkerSlot
from monitor.config import Settings
from monitor.guard.model_guard import ClassifierCall, ClassifierFactory
from monitor.guard.shieldgemma.classifiers import TextClassifiers
from monitor.metrics import Metrics
from monitor.proxy.admission import Admission, build_limiter
from monitor.proxy.exchange import Receive, Scope, Send
from monitor.proxy.guarding import GuardStep, build_guard
from monitor.proxy.handler import GENERATION_ROUTES, ProxyHandler
from monitor.record import RequestRecord
from monitor.store.engine import make_engine
from monitor.store.hash_key import text_hash_key
from monitor.store.migrate import check_migrated, upgrade
from monitor.store.recorder import Recorder
from monitor.store.samples import write_quality_scores
from monitor.telemetry.build import build_telemetry
from monitor.telemetry.collector import TelemetryCollector
from monitor.telemetry.exporter import Telemetry
from monitor.telemetry.options import resolve as resolve_otel
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring
from monitor.workers.judge import BackendJudge
from monitor.workers.loop_lag import LoopLag, LoopLagCollector
from monitor.workers.quality import QualityWorker
from monitor.workers.runtime import RuntimeCollector

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the workers and routes share; built here, passed in, never imported as globals."""

    settings: Settings
    backend: BackendClient
    recorder: Recorder
    metrics: Metrics
    handler: ProxyHandler
    admission: Admission
    monitoring: Monitoring
    quality: QualityWorker
    recent: RecentRequests  # ids just finished, for feedback before their record is stored
    # the ShieldGemma classifiers built for the guard (None when a factory was passed in)
    text_classifiers: TextClassifiers | None = None
    # the OpenTelemetry exporter, when export is on (`otel:` and the OTEL_* variables)
    telemetry: Telemetry | None = None
    # samples the event loop's lateness (off when `loop_lag_interval_s` is 0)
    loop_lag: LoopLag | None = None
    # the process's own gauges; told the event loop at start, to count its tasks
    runtime: RuntimeCollector | None = None
    # one of several worker processes: serves its samples to the others, gathers theirs
    worker_metrics: WorkerMetrics | None = None


class MonitorApp:
    """The ASGI entry point: generation routes to the proxy handler, the rest to FastAPI."""

    def __init__(self, services: Services, api: FastAPI) -> None:
        self.services = services
        self.api = api
        self._handler = services.handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path in GENERATION_ROUTES:
                await self._handler(scope, receive, send, path)
                return
        await self.api(scope, receive, send)


def build_services(
    settings: Settings,
    classifiers: ClassifierFactory | None = None,
    monitoring_options: dict[str, Any] | None = None,
    worker: WorkerSlot | None = None,
) -> Services:
    engine = make_engine(settings.database_url)
    if settings.auto_migrate:
        upgrade(settings.database_url)
    else:
        check_migrated(engine)
    # each worker process spools in a directory of its own (a spool is one process's); the
    # hash key stays in spool_dir itself, one for all of them
    spooling = settings
    if worker is not None:
        spooling = settings.model_copy(
            update={"spool_dir": settings.spool_dir / f"worker-{worker.index}"}
        )
    recorder = Recorder.from_settings(engine, spooling)
    metrics = Metrics()
    metrics.track_recorder(recorder)
    backend = BackendClient(settings)
    admission = Admission(settings, build_limiter(settings))
    monitoring = Monitoring.from_settings(settings, engine, backend, **(monitoring_options or {}))
    metrics.registry.register(monitoring.collector())
    runtime = RuntimeCollector()
    metrics.registry.register(runtime)  # leaks show here first
    loop_lag = None
    if settings.loop_lag_interval_s > 0:
        loop_lag = LoopLag(settings.loop_lag_interval_s)
        metrics.registry.register(LoopLagCollector(loop_lag))
    quality = QualityWorker(
        settings.quality,
        partial(write_quality_scores, engine),
        judge=BackendJudge(backend, settings) if "judge" in settings.quality.scorers else None,
        store_content=settings.content_storage == "full",
    )
    metrics.track_quality(quality.stats)
    recent = RecentRequests()
    otel = resolve_otel(settings.otel, os.environ)
    telemetry = build_telemetry(otel, metrics.registry) if otel is not None else None
    if telemetry is not None:
        metrics.registry.register(TelemetryCollector(telemetry))

    def submit(record: RequestRecord) -> None:
        metrics.observe(record)
        monitoring.observe(record)
        recent.add(record.id, record.principal)
        if telemetry is not None:  # one queue put: spans are built off the request path
            telemetry.offer(record)
        recorder.submit(record)

    text_classifiers = TextClassifiers() if classifiers is None else None
    factory = classifiers if text_classifiers is None else text_classifiers.build

    def observe_classifier(call: ClassifierCall) -> None:
        metrics.observe_classifier(call)
        if telemetry is not None:
            telemetry.offer(call)

    def guard() -> GuardStep | None:  # at start-up, and again on each policy reload
        return build_guard(settings.policies, factory, observe_classifier)

    handler = ProxyHandler(
        settings,
        backend,
        admission,
        guard,
        submit,
        on_complete=quality.offer,
        hash_key=text_hash_key(settings),
        tracing=telemetry is not None and telemetry.tracing,
    )
    metrics.track_inflight(lambda: handler.inflight)
    worker_metrics = None
    if worker is not None:
        worker_metrics = WorkerMetrics(worker, metrics.registry)
    return Services(
        settings,
        backend,
        recorder,
        metrics,
        handler,
        admission,
        monitoring,
        quality,
        recent,
        text_classifiers,
        telemetry,
        loop_lag,
        runtime,
        worker_metrics,
    )


def create_app(
    settings: Settings,
    *,
    classifiers: ClassifierFactory | None = None,
    monitoring_options: dict[str, Any] | None = None,
    worker: WorkerSlot | None = None,
) -> MonitorApp:
    """Build the app. Raises `NotMigratedError` when the database is behind and
    `auto_migrate` is off, `PolicyError` for a bad policy. `classifiers` builds the guard's
    model classifiers (default: the ShieldGemma ones, when the policy has model checks);
    `monitoring_options` go to `Monitoring.from_settings` (an NVML reader, a webhook POST,
    a clock). `worker`: this process is one of several workers behind one port."""
    services = build_services(settings, classifiers, monitoring_options, worker)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await start_services(services, stack)
            yield

    api = build_api(
        settings,
        backend=services.backend,
        recorder=services.recorder,
        metrics=services.metrics,
        admission=services.admission,
        monitoring=services.monitoring,
        recent=services.recent,
        quality_stats=services.quality.stats,
        reload_policy=services.handler.reload_policy,
        lifespan=lifespan,
        scrape_metrics=services.worker_metrics.scrape if services.worker_metrics else None,
    )
    return MonitorApp(services, api)


async def start_services(services: Services, stack: contextlib.AsyncExitStack) -> None:
    """Start each service and push its stop onto `stack` at once, so that a start failing
    half-way stops what had started, and shutdown runs the stops in reverse: in-flight requests
    drained first, then monitoring, quality (before the backend closes: the judge asks it), the
    backend, the guard's classifiers, the limiter, and the recorder's flush last. The stack
    runs every stop even when one raises, then raises that error.

    Monitoring and the guard push their stop before starting: each starts several things
    (workers, models) and its stop is safe for any part that never started."""
    await services.recorder.start()
    stack.push_async_callback(services.recorder.stop)
    if services.worker_metrics is not None:
        await services.worker_metrics.start()
        stack.push_async_callback(services.worker_metrics.stop)
    if services.runtime is not None:
        services.runtime.watch(asyncio.get_running_loop())
    if services.loop_lag is not None:
        services.loop_lag.start()
        stack.push_async_callback(services.loop_lag.stop)
    if services.telemetry is not None:  # stopped after the drain: its last spans exported
        await services.telemetry.start()
        stack.push_async_callback(services.telemetry.stop)
    limiter = services.admission.limiter
    if limiter is not None:
        stack.push_async_callback(limiter.aclose)
    if services.text_classifiers is not None:
        stack.push_async_callback(services.text_classifiers.aclose)
    stack.push_async_callback(services.handler.aclose)
    await services.handler.ready()  # the guard's models loaded, or start-up fails
    await services.backend.open()
    stack.push_async_callback(services.backend.close)
    services.quality.start()
    stack.push_async_callback(services.quality.stop)
    stack.push_async_callback(services.monitoring.stop)
    await services.monitoring.start()
    stack.push_async_callback(_drain_requests, services.handler, services.settings.drain_timeout_s)


async def _drain_requests(handler: ProxyHandler, timeout_s: float) -> None:
    """Let in-flight requests finish, for at most `timeout_s`."""
    if handler.inflight:
        log.info("waiting for %d in-flight requests", handler.inflight)
        try:
            await asyncio.wait_for(handler.idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("%d requests still running after the drain timeout", handler.inflight)
