"""The composition root: `create_app(settings)` builds every service once and wires the routes.

Generation routes go straight to the pure-ASGI `ProxyHandler` (streaming, timing, no framework
in the way); everything else (health, readiness, metrics, model lists, later admin) is a
FastAPI app. Its lifespan owns the shared upstream client and the recorder's background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI

from monitor.api.admin import admin_router
from monitor.api.admin_stats import monitoring_router
from monitor.config import Settings
from monitor.api.feedback import RecentRequests, feedback_router
from monitor.guard.classifier import ClassifierError
from monitor.guard.model_guard import ClassifierFactory
from monitor.guard.shieldgemma.classifiers import TextClassifiers
from monitor.metrics import Metrics
from monitor.workers.background import Monitoring
from monitor.api.ops import ops_router
from monitor.proxy.admission import Admission, build_limiter
from monitor.upstream.backend import BackendClient
from monitor.proxy.exchange import Receive, Scope, Send
from monitor.proxy.guarding import GuardStep, build_guard
from monitor.proxy.handler import GENERATION_ROUTES, ProxyHandler
from monitor.api.listing import listing_router
from monitor.workers.judge import BackendJudge
from monitor.workers.quality import QualityWorker
from monitor.record import RequestRecord
from monitor.store.engine import make_engine
from monitor.store.migrate import check_migrated, upgrade
from monitor.store.queries import request_exists
from monitor.store.recorder import Recorder
from monitor.store.samples import write_quality_scores

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
) -> Services:
    engine = make_engine(settings.database_url)
    if settings.auto_migrate:
        upgrade(settings.database_url)
    else:
        check_migrated(engine)
    recorder = Recorder.from_settings(engine, settings)
    metrics = Metrics()
    metrics.track_recorder(recorder)
    backend = BackendClient(settings)
    admission = Admission(settings, build_limiter(settings))
    monitoring = Monitoring.from_settings(settings, engine, backend, **(monitoring_options or {}))
    metrics.registry.register(monitoring.collector())
    quality = QualityWorker(
        settings.quality,
        partial(write_quality_scores, engine),
        judge=BackendJudge(backend, settings) if "judge" in settings.quality.scorers else None,
        store_content=settings.content_storage == "full",
    )
    metrics.track_quality(quality.stats)
    recent = RecentRequests()

    def submit(record: RequestRecord) -> None:
        metrics.observe(record)
        monitoring.observe(record)
        recent.add(record.id)
        recorder.submit(record)

    text_classifiers = TextClassifiers() if classifiers is None else None
    factory = classifiers if text_classifiers is None else text_classifiers.build

    def guard() -> GuardStep | None:  # at start-up, and again on each policy reload
        return build_guard(settings.policies, factory, metrics.observe_classifier)

    handler = ProxyHandler(settings, backend, admission, guard, submit, on_complete=quality.offer)
    metrics.track_inflight(lambda: handler.inflight)
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
    )


def create_app(
    settings: Settings,
    *,
    classifiers: ClassifierFactory | None = None,
    monitoring_options: dict[str, Any] | None = None,
) -> MonitorApp:
    """Build the app. Raises `NotMigratedError` when the database is behind and
    `auto_migrate` is off, `PolicyError` for a bad policy. `classifiers` builds the guard's
    model classifiers (default: the ShieldGemma ones, when the policy has model checks);
    `monitoring_options` go to `Monitoring.from_settings` (an NVML reader, a webhook POST,
    a clock)."""
    services = build_services(settings, classifiers, monitoring_options)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.handler.ready()  # the guard's models loaded, or start-up fails
        await services.backend.open()
        await services.recorder.start()
        await services.monitoring.start()
        services.quality.start()
        try:
            yield
        finally:
            await _drain(services)

    api = FastAPI(title="Gemma Monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    api.include_router(
        ops_router(
            services.backend, services.recorder, services.metrics, settings, services.monitoring
        )
    )
    api.include_router(listing_router(services.backend, settings.backend_protocol))
    engine = services.recorder.engine
    api.include_router(
        feedback_router(
            services.admission,
            services.recent,
            partial(request_exists, engine),
            partial(write_quality_scores, engine),
            store_comments=settings.content_storage == "full",
            stats=services.quality.stats,
        )
    )
    if settings.admin_token is not None:
        api.include_router(
            admin_router(settings.admin_token, services.admission, services.handler.reload_policy)
        )
        api.include_router(
            monitoring_router(settings.admin_token, services.monitoring, services.recorder.engine)
        )
    return MonitorApp(services, api)


async def _drain(services: Services) -> None:
    """Let in-flight requests finish (bounded), then flush every record."""
    handler = services.handler
    if handler.inflight:
        log.info("waiting for %d in-flight requests", handler.inflight)
        try:
            await asyncio.wait_for(handler.idle.wait(), services.settings.drain_timeout_s)
        except TimeoutError:
            log.warning("%d requests still running after the drain timeout", handler.inflight)
    await services.monitoring.stop()
    await services.quality.stop()  # before the backend closes: the judge asks it
    await services.backend.close()
    await handler.aclose()  # the guard's classifiers (models, connections)
    if services.text_classifiers is not None:
        try:
            await services.text_classifiers.aclose()
        except ClassifierError as exc:  # the records below must still be flushed
            log.error("closing the guard's classifiers: %s", exc)
    if services.admission.limiter is not None:
        await services.admission.limiter.aclose()
    await services.recorder.stop()
