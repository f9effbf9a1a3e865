"""The judge's call: one short, greedy, non-streaming request to the backend through its client.

The judge's requests go straight to the `BackendClient`, not through the proxy handler, so they
are neither admitted, guarded nor recorded as requests (and never judged themselves).
"""

from __future__ import annotations

from asyncio import timeout as asyncio_timeout
from typing import Any

import orjson

from monitor.config import Settings
from monitor.errors import BackendFailed, BackendTimeout
from monitor.proxy import protocols
from monitor.proxy.headers import request_headers
from monitor.quality.judge import Message, judge_request
from monitor.upstream.backend import BackendClient
from monitor.upstream.client import UpstreamError

MAX_ANSWER_BYTES = 64 * 1024


class BackendJudge:
    """Asks the backend's model to rate an answer: `await judge(messages, model)` → its text.

    The model is `quality.judge_model`, else the model the rated request asked for. Raises
    `BackendFailed` (or `BackendTimeout`) when the backend cannot answer within `timeout_s`.
    """

    def __init__(self, backend: BackendClient, settings: Settings, timeout_s: float = 30.0) -> None:
        self._backend = backend
        self._protocol = settings.backend_protocol
        self._model = settings.quality.judge_model
        self._headers = request_headers([], settings)
        self._timeout_s = timeout_s

    async def __call__(self, messages: list[Message], model: str | None) -> str:
        name = self._model or model or ""
        if self._protocol == protocols.OLLAMA:
            path = "/api/chat"
            body: dict[str, Any] = {
                "model": name,
                "messages": messages,
                "stream": False,
                "options": {"temperature": 0, "num_predict": 16},
            }
        else:
            path = "/v1/chat/completions"
            body = {**judge_request(name, "", ""), "messages": messages}
        try:
            async with asyncio_timeout(self._timeout_s):
                upstream = await self._backend.send("POST", path, orjson.dumps(body), self._headers)
                try:
                    raw = await upstream.read(MAX_ANSWER_BYTES)
                finally:
                    if upstream.complete:
                        upstream.release()
                    else:
                        upstream.close()
        except TimeoutError as exc:
            raise BackendTimeout(f"judge: no answer within {self._timeout_s:g}s") from exc
        except UpstreamError as exc:
            raise BackendFailed(f"judge: {exc}") from exc
        if upstream.status >= 400:
            raise BackendFailed(
                f"judge: backend answered {upstream.status}", upstream_status=upstream.status
            )
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackendFailed("judge: backend answer is not JSON") from exc
        if not isinstance(payload, dict):
            raise BackendFailed("judge: backend answer is not a JSON object")
        if self._protocol == protocols.OLLAMA:
            return protocols.ollama_response_text(payload)
        return protocols.openai_response_text(payload)
