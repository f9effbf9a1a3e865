"""Model listing for both protocols: `GET /v1/models` and `GET /api/tags`.

A backend that cannot answer raises `ProxyError` from the backend client; `monitor.api.errors`
renders it in the protocol of the path (Ollama's shape for `/api/tags`).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from monitor.proxy import protocols
from monitor.proxy.translate import models_to_tags
from monitor.upstream.backend import BackendClient


def listing_router(backend: BackendClient, backend_protocol: str) -> APIRouter:
    router = APIRouter()

    async def fetch(path: str, protocol: str) -> Response:
        payload = await backend.get_json(path)
        if path == "/v1/models" and protocol == protocols.OLLAMA:
            body = models_to_tags(payload if isinstance(payload, dict) else {})
        else:
            body = orjson.dumps(payload)
        return Response(body, 200, media_type="application/json")

    @router.get("/v1/models")
    async def openai_models() -> Response:
        return await fetch("/v1/models", protocols.OPENAI)

    @router.get("/api/tags")
    async def ollama_tags() -> Response:
        path = "/api/tags" if backend_protocol == protocols.OLLAMA else "/v1/models"
        return await fetch(path, protocols.OLLAMA)

    return router
