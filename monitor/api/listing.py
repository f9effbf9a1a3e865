"""Model listing for both protocols: `GET /v1/models` and `GET /api/tags`."""

from __future__ import annotations

import uuid

import orjson
from fastapi import APIRouter, Request, Response

from monitor.errors import ProxyError
from monitor.proxy import protocols
from monitor.upstream.backend import BackendClient
from monitor.proxy.translate import models_to_tags


def listing_router(backend: BackendClient, backend_protocol: str) -> APIRouter:
    router = APIRouter()

    async def fetch(path: str, protocol: str) -> Response:
        request_id = uuid.uuid4().hex
        headers = {"x-request-id": request_id}
        try:
            payload = await backend.get_json(path)
        except ProxyError as error:
            body = protocols.error_body(protocol, error, request_id)
            return Response(body, error.status, headers, media_type="application/json")
        if path == "/v1/models" and protocol == protocols.OLLAMA:
            body = models_to_tags(payload if isinstance(payload, dict) else {})
        else:
            body = orjson.dumps(payload)
        return Response(body, 200, headers, media_type="application/json")

    @router.get("/v1/models")
    async def openai_models(request: Request) -> Response:
        return await fetch("/v1/models", protocols.OPENAI)

    @router.get("/api/tags")
    async def ollama_tags(request: Request) -> Response:
        path = "/api/tags" if backend_protocol == protocols.OLLAMA else "/v1/models"
        return await fetch(path, protocols.OLLAMA)

    return router
