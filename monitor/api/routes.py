"""`build_api`: every non-proxy route on one FastAPI app, with the one error renderer.

The composition root builds the services and passes them in; this module only decides which
routers exist (the admin ones only with an admin token) and wires them to those services:
admission's refusals are counted in the metrics (`Admission.on_refusal`), and every route but
`/health` and `/ready` (which a probe may reach by any name, and which tell nothing) answers
only to the allowed host names (`HostCheck`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.api.admin import admin_router
from monitor.api.admin_stats import monitoring_router
from monitor.api.errors import error_response, install_error_handling
from monitor.api.feedback import Made, RecentRequests, feedback_router
from monitor.api.listing import listing_router
from monitor.api.ops import ops_router
from monitor.config import Settings
from monitor.errors import ProxyError
from monitor.metrics import Metrics
from monitor.proxy.admission import Admission
from monitor.store.queries import get_request
from monitor.store.recorder import Recorder
from monitor.store.samples import write_quality_scores
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring
from monitor.workers.quality import QualityStats

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
    scrape_metrics: Callable[[], Awaitable[bytes]] | None = None,
) -> FastAPI:
    """The FastAPI app behind every path the proxy handler does not take."""
    api = FastAPI(title="Gemma Monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    admission.on_refusal = metrics.observe
    if admission.checks_host:
        api.add_middleware(HostCheck, admission=admission)  # inside RequestIds: ids on refusals
    install_error_handling(api, body_timeout_s=settings.request_body_timeout_s)
    api.include_router(ops_router(backend, recorder, metrics, settings, monitoring, scrape_metrics))
    api.include_router(listing_router(backend, settings.backend_protocol, admission))
    engine = recorder.engine
    api.include_router(
        feedback_router(
            admission,
            recent,
            partial(_made_by, engine),
            partial(write_quality_scores, engine),
            store_comments=settings.content_storage == "full",
            stats=quality_stats,
        )
    )
    if settings.admin_token is not None:
        api.include_router(admin_router(settings.admin_token, admission, reload_policy))
        api.include_router(monitoring_router(settings.admin_token, monitoring, engine))
    return api


_ANY_HOST_PATHS = frozenset({"/health", "/ready"})


class HostCheck:
    """Pure ASGI middleware refusing (421, in the client's protocol) a `Host` outside
    `allowed_hosts`, so that a web page that rebinds its own name to this address cannot read
    `/metrics` or the model list."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _ANY_HOST_PATHS:
            try:
                self.admission.check_host(scope)
            except ProxyError as error:
                await error_response(scope, error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _made_by(engine: Engine, request_id: str) -> Made | None:
    """Who made a stored request (blocking: called in a thread)."""
    record = get_request(engine, request_id)
    return None if record is None else Made(record.principal)
