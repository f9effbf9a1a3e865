"""Operational endpoints: `/health` (liveness), `/ready` (backend and database reachable, and
the latest backend health check not unhealthy), `/metrics`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from monitor.config import Settings
from monitor.errors import ProxyError
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.store.engine import ping
from monitor.store.recorder import Recorder
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring

READY_TIMEOUT_S = 3.0


def ops_router(
    backend: BackendClient,
    recorder: Recorder,
    metrics: Metrics,
    settings: Settings,
    monitoring: Monitoring | None = None,
) -> APIRouter:
    router = APIRouter()
    health_path = "/api/tags" if settings.backend_protocol == "ollama" else "/v1/models"

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        async def backend_status() -> str:
            try:
                await backend.get_json(health_path, timeout_s=READY_TIMEOUT_S)
            except ProxyError as error:
                return error.message
            return "ok"

        async def database_status() -> str:
            try:
                ok = await asyncio.wait_for(
                    asyncio.to_thread(ping, recorder.engine), READY_TIMEOUT_S
                )
            except TimeoutError:
                return "database did not answer in time"
            return "ok" if ok else "database unreachable"

        backend_state, database_state = await asyncio.gather(backend_status(), database_status())
        health = monitoring.health_state() if monitoring is not None else None
        is_ready = (
            backend_state == "ok"
            and database_state == "ok"
            and (health is None or health["status"] != "unhealthy")
        )
        body: dict[str, Any] = {
            "status": "ready" if is_ready else "not ready",
            "backend": backend_state,
            "database": database_state,
            "spooled_bytes": recorder.spool_bytes,
        }
        if health is not None:
            body["backend_health"] = health
        return JSONResponse(body, status_code=200 if is_ready else 503)

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router
