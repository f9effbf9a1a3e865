"""The backend health check's request, in the backend's protocol (the check itself, its timing
and its verdict are `monitor.probes.backend_health`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from monitor.config import Settings
from monitor.errors import BackendFailed
from monitor.upstream.backend import BackendClient


def health_request(
    backend: BackendClient, settings: Settings
) -> Callable[[Mapping[str, Any]], Any]:
    """The health check's request, in the backend's protocol; any answer but a 2xx raises."""
    ollama = settings.backend_protocol == "ollama"

    async def send(body: Mapping[str, Any]) -> object:
        payload = dict(body)
        if ollama:
            if "model" not in payload:
                tags = await backend.get_json("/api/tags")
                models = tags.get("models") if isinstance(tags, dict) else None
                if not models:
                    raise BackendFailed("the backend lists no model to check")
                payload["model"] = models[0].get("name") or models[0].get("model")
            payload = {
                "model": payload["model"],
                "messages": payload["messages"],
                "stream": False,
                "options": {"num_predict": payload["max_tokens"], "temperature": 0},
            }
        path = "/api/chat" if ollama else "/v1/chat/completions"
        headers = [("content-type", "application/json"), *backend.auth_headers]
        upstream = await backend.send("POST", path, orjson.dumps(payload), headers)
        try:
            raw = await upstream.read(1 << 20)
        finally:
            upstream.release()
        if upstream.status >= 300:
            raise BackendFailed(f"backend answered {upstream.status} to the health check")
        return orjson.loads(raw)

    return send
