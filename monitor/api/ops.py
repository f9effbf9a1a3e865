"""Operational endpoints: `/health` (liveness), `/ready` (backend and database reachable, and
the latest backend health check not unhealthy), `/metrics`.

`/ready` is for load balancers and orchestrators, which need only its status: by default the
body is `{"status": "ready"}` (200) or `{"status": "not ready"}` (503). The reasons (backend
and database state, error text, the latest health check, spooled bytes) are for the operator:
sent only with `Authorization: Bearer <admin token>`. The probe behind it (a backend call and a
database ping) runs at most once per `READY_CACHE_S`; callers in between, and callers while it
runs, share its answer, so a flood of `/ready` costs the backend and the database nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from monitor.config import Settings
from monitor.errors import ProxyError
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.store.engine import ping
from monitor.store.recorder import Recorder
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring

READY_TIMEOUT_S = 3.0
READY_CACHE_S = 1.0


class ReadinessProbe:
    """The backend and database check behind `/ready`, run at most once per `cache_s`."""

    def __init__(
        self,
        backend: BackendClient,
        recorder: Recorder,
        health_path: str,
        monitoring: Monitoring | None,
        cache_s: float = READY_CACHE_S,
    ) -> None:
        self._backend = backend
        self._recorder = recorder
        self._health_path = health_path
        self._monitoring = monitoring
        self._cache_s = cache_s
        self._lock = asyncio.Lock()
        self._checked_at = -float("inf")
        self._answer: tuple[bool, str, str] = (False, "not checked", "not checked")
        self.probes = 0  # how many times the backend and database were asked

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the detailed body)."""
        async with self._lock:  # one probe at a time; those waiting take its answer
            if time.monotonic() - self._checked_at >= self._cache_s:
                self._answer = await self._probe()
                self._checked_at = time.monotonic()
        reachable, backend_state, database_state = self._answer
        health = self._monitoring.health_state() if self._monitoring is not None else None
        ready = reachable and (health is None or health["status"] != "unhealthy")
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "backend": backend_state,
            "database": database_state,
            "spooled_bytes": self._recorder.spool_bytes,
        }
        if health is not None:
            body["backend_health"] = health
        return ready, body

    async def _probe(self) -> tuple[bool, str, str]:
        self.probes += 1

        async def backend_status() -> str:
            try:
                await self._backend.get_json(self._health_path, timeout_s=READY_TIMEOUT_S)
            except ProxyError as error:
                return error.message
            return "ok"

        async def database_status() -> str:
            try:
                ok = await asyncio.wait_for(
                    asyncio.to_thread(ping, self._recorder.engine), READY_TIMEOUT_S
                )
            except TimeoutError:
                return "database did not answer in time"
            return "ok" if ok else "database unreachable"

        backend_state, database_state = await asyncio.gather(backend_status(), database_status())
        return backend_state == "ok" and database_state == "ok", backend_state, database_state


def ops_router(
    backend: BackendClient,
    recorder: Recorder,
    metrics: Metrics,
    settings: Settings,
    monitoring: Monitoring | None = None,
    scrape: Callable[[], Awaitable[bytes]] | None = None,
) -> APIRouter:
    """`scrape`: the exposition of every worker (`worker_metrics`), when there are several."""
    router = APIRouter()
    health_path = "/api/tags" if settings.backend_protocol == "ollama" else "/v1/models"
    probe = ReadinessProbe(backend, recorder, health_path, monitoring)
    admin = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def is_operator(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        return admin is not None and hmac.compare_digest(given, admin)

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        is_ready, body = await probe.check()
        if not is_operator(request):
            body = {"status": body["status"]}
        return JSONResponse(body, status_code=200 if is_ready else 503)

    @router.get("/metrics")
    async def prometheus() -> Response:
        # off the loop: the collectors read /proc (the TCP table, descriptors) and every
        # series; on the loop that held every stream for several milliseconds per scrape
        body = await scrape() if scrape is not None else await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return router
