"""Model listing for both protocols: `GET /v1/models` and `GET /api/tags`.

Admitted like the generation routes (host, API key, rate limit: a listing costs a backend call,
so it counts against the principal's window). A backend that cannot answer raises `ProxyError`
from the backend client; `monitor.api.errors` renders it in the protocol of the path (Ollama's
shape for `/api/tags`).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from monitor.proxy import protocols
from monitor.proxy.admission import Admission
from monitor.proxy.ratelimit import rate_limit_headers
from monitor.proxy.translate import models_to_tags
from monitor.upstream.backend import BackendClient


def listing_router(
    backend: BackendClient, backend_protocol: str, admission: Admission
) -> APIRouter:
    router = APIRouter()

    async def fetch(request: Request, path: str, protocol: str) -> Response:
        _, decision = await admission.admit(request.scope)
        payload = await backend.get_json(path)
        if path == "/v1/models" and protocol == protocols.OLLAMA:
            body = models_to_tags(payload if isinstance(payload, dict) else {})
        else:
            body = orjson.dumps(payload)
        response = Response(body, 200, media_type="application/json")
        if decision is not None:
            response.raw_headers.extend(rate_limit_headers(decision))
        return response

    @router.get("/v1/models")
    async def openai_models(request: Request) -> Response:
        return await fetch(request, "/v1/models", protocols.OPENAI)

    @router.get("/api/tags")
    async def ollama_tags(request: Request) -> Response:
        path = "/api/tags" if backend_protocol == protocols.OLLAMA else "/v1/models"
        return await fetch(request, path, protocols.OLLAMA)

    return router
