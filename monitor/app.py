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

from fastapi import FastAPI

from monitor.admin import admin_router
from monitor.config import Settings
from monitor.metrics import Metrics
from monitor.ops import ops_router
from monitor.proxy.admission import Admission, build_limiter
from monitor.proxy.backend import BackendClient
from monitor.proxy.exchange import Receive, Scope, Send
from monitor.proxy.guarding import build_guard
from monitor.proxy.handler import GENERATION_ROUTES, ProxyHandler
from monitor.proxy.listing import listing_router
from monitor.record import RequestRecord
from monitor.store.engine import make_engine
from monitor.store.migrate import check_migrated, upgrade
from monitor.store.recorder import Recorder

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


def build_services(settings: Settings) -> Services:
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

    def submit(record: RequestRecord) -> None:
        metrics.observe(record)
        recorder.submit(record)

    handler = ProxyHandler(settings, backend, admission, build_guard(settings.policies), submit)
    metrics.track_inflight(lambda: handler.inflight)
    return Services(settings, backend, recorder, metrics, handler, admission)


def create_app(settings: Settings) -> MonitorApp:
    """Build the app. Raises `NotMigratedError` when the database is behind and
    `auto_migrate` is off."""
    services = build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.backend.open()
        await services.recorder.start()
        try:
            yield
        finally:
            await _drain(services)

    api = FastAPI(title="Gemma Monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    api.include_router(ops_router(services.backend, services.recorder, services.metrics, settings))
    api.include_router(listing_router(services.backend, settings.backend_protocol))
    if settings.admin_token is not None:
        api.include_router(
            admin_router(settings.admin_token, services.admission, services.handler.reload_policy)
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
    await services.backend.close()
    if services.admission.limiter is not None:
        await services.admission.limiter.aclose()
    await services.recorder.stop()
