"""`build_api`: every non-proxy route on one FastAPI app, with the one error renderer.

The composition root builds the services and passes them in; this module only decides which
routers exist (the admin ones only with an admin token) and wires them to those services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

from fastapi import FastAPI

from monitor.api.admin import admin_router
from monitor.api.admin_stats import monitoring_router
from monitor.api.errors import install_error_handling
from monitor.api.feedback import RecentRequests, feedback_router
from monitor.api.listing import listing_router
from monitor.api.ops import ops_router
from monitor.config import Settings
from monitor.metrics import Metrics
from monitor.proxy.admission import Admission
from monitor.store.queries import request_exists
from monitor.store.recorder import Recorder
from monitor.store.samples import write_quality_scores
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring
from monitor.workers.quality import QualityStats

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_api(
    settings: Settings,
    *,
    backend: BackendClient,
    recorder: Recorder,
    metrics: Metrics,
    admission: Admission,
    monitoring: Monitoring,
    recent: RecentRequests,
    quality_stats: QualityStats,
    reload_policy: Callable[[], Awaitable[str | None]],
    lifespan: Lifespan,
) -> FastAPI:
    """The FastAPI app behind every path the proxy handler does not take."""
    api = FastAPI(title="Gemma Monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handling(api)
    api.include_router(ops_router(backend, recorder, metrics, settings, monitoring))
    api.include_router(listing_router(backend, settings.backend_protocol))
    engine = recorder.engine
    api.include_router(
        feedback_router(
            admission,
            recent,
            partial(request_exists, engine),
            partial(write_quality_scores, engine),
            store_comments=settings.content_storage == "full",
            stats=quality_stats,
        )
    )
    if settings.admin_token is not None:
        api.include_router(admin_router(settings.admin_token, admission, reload_policy))
        api.include_router(monitoring_router(settings.admin_token, monitoring, engine))
    return api
