"""Relays: what goes upstream for a request, and how the backend's answer reaches the client.

Three cases, one class each:

- `OpenAIRelay`: an OpenAI client; the backend is OpenAI-compatible (or Ollama's /v1). SSE events
  are forwarded as they come. Streams ask the backend for a usage chunk, which is kept from the
  client unless it asked for one too.
- `OllamaRelay`: an Ollama client in front of Ollama: NDJSON lines forwarded as they come.
- `TranslatedOllamaRelay`: an Ollama client in front of an OpenAI-compatible backend: the request
  is translated, SSE events become NDJSON lines.

Each relay reads content and usage out of the events it passes on and tells the timer about
every event that carries output.
"""

from __future__ import annotations

from typing import Any

import orjson

from monitor.errors import BackendFailed, ProxyError
from monitor.proxy import protocols
from monitor.proxy.framing import DONE, ndjson_data, ndjson_splitter, sse_data, sse_splitter
from monitor.proxy.protocols import RequestInfo, Usage
from monitor.proxy.timing import RequestTimer
from monitor.proxy.translate import OllamaAnswer, ollama_to_openai

_NDJSON = (b"content-type", b"application/x-ndjson")
_JSON = (b"content-type", b"application/json")


def _loads_object(data: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendFailed("backend sent a reply that is not JSON") from exc
    if not isinstance(payload, dict):
        raise BackendFailed("backend sent a reply that is not a JSON object")
    return payload


class Relay:
    protocol = protocols.OPENAI

    def __init__(
        self, route: str, payload: dict[str, Any], info: RequestInfo, timer: RequestTimer
    ) -> None:
        self.upstream_path = route
        self.upstream_payload: dict[str, Any] | None = None  # None: forward the client's bytes
        self.stream = info.stream
        self.timer = timer
        self.usage = Usage()
        self.pieces: list[str] = []
        self.failed: ProxyError | None = None
        self.done = False  # the stream's terminal event has been seen: nothing valid follows

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def _output(self, text: str) -> None:
        if text:
            self.timer.token()
            self.pieces.append(text.replace("\u0000", ""))

    def response_headers(self, upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return upstream

    def whole(self, data: bytes) -> bytes:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> bytes:
        raise NotImplementedError

    def stream_error(self, error: ProxyError, request_id: str) -> bytes:
        return protocols.error_body(self.protocol, error, request_id) + b"\n"


class OpenAIRelay(Relay):
    def __init__(
        self, route: str, payload: dict[str, Any], info: RequestInfo, timer: RequestTimer
    ) -> None:
        super().__init__(route, payload, info, timer)
        self._splitter = sse_splitter()
        options = payload.get("stream_options")
        client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._hide_usage = self.stream and not client_wants_usage
        if self._hide_usage:
            upstream = dict(payload)
            upstream["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
            self.upstream_payload = upstream

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self.pieces.append(protocols.openai_response_text(payload))
        self.usage = protocols.openai_usage(payload)
        return data

    def feed(self, chunk: bytes) -> bytes:
        kept: list[bytes] = []
        for event in self._splitter.feed(chunk):
            data = sse_data(event)
            if data is DONE:
                self.done = True
            elif isinstance(data, dict):
                if data.get("usage"):
                    self.usage = protocols.openai_usage(data)
                    if self._hide_usage and not data.get("choices"):
                        continue
                if "error" in data and not data.get("choices"):
                    self.failed = BackendFailed(
                        f"backend reported an error mid-stream: {data['error']}"
                    )
                self._output(protocols.openai_delta_text(data))
            kept.append(event)
        return b"".join(kept)

    def close(self) -> bytes:
        return self._splitter.rest()

    def stream_error(self, error: ProxyError, request_id: str) -> bytes:
        return b"data: " + protocols.error_body(self.protocol, error, request_id) + b"\n\n"


class OllamaRelay(Relay):
    protocol = protocols.OLLAMA

    def __init__(
        self, route: str, payload: dict[str, Any], info: RequestInfo, timer: RequestTimer
    ) -> None:
        super().__init__(route, payload, info, timer)
        self._splitter = ndjson_splitter()

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self.pieces.append(protocols.ollama_response_text(payload))
        self.usage = protocols.ollama_usage(payload)
        return data

    def feed(self, chunk: bytes) -> bytes:
        lines = self._splitter.feed(chunk)
        for line in lines:
            data = ndjson_data(line)
            if isinstance(data, dict):
                if "error" in data:
                    self.failed = BackendFailed(
                        f"backend reported an error mid-stream: {data['error']}"
                    )
                self._output(protocols.ollama_response_text(data))
                if data.get("done"):
                    self.usage = protocols.ollama_usage(data)
                    self.done = True
        return b"".join(lines)

    def close(self) -> bytes:
        return self._splitter.rest()


class TranslatedOllamaRelay(Relay):
    protocol = protocols.OLLAMA

    def __init__(
        self, route: str, payload: dict[str, Any], info: RequestInfo, timer: RequestTimer
    ) -> None:
        super().__init__(route, payload, info, timer)
        self.upstream_path, self.upstream_payload = ollama_to_openai(route, payload, info.stream)
        self._answer = OllamaAnswer(route, info.model, int(timer.start * 1e9))
        self._splitter = sse_splitter()

    def response_headers(self, upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in upstream if k != b"content-type"]
        kept.append(_NDJSON if self.stream else _JSON)
        return kept

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self.pieces.append(protocols.openai_response_text(payload))
        self.usage = protocols.openai_usage(payload)
        return self._answer.whole(payload)

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._splitter.feed(chunk):
            data = sse_data(event)
            if data is DONE:
                self.done = True
            if not isinstance(data, dict):
                continue
            if data.get("usage"):
                self.usage = protocols.openai_usage(data)
            line = self._answer.chunk(data)
            if line is not None:
                self._output(protocols.openai_delta_text(data))
                out.append(line)
        return b"".join(out)

    def close(self) -> bytes:
        # Without a usage chunk (llama-cpp-python sends none), the content events are the count.
        completion = self.usage.completion_tokens
        if completion is None:
            completion = self.timer.token_events
        return self._answer.last(self.usage.prompt_tokens, completion)


def relay_for(
    route: str,
    protocol: str,
    backend_protocol: str,
    payload: dict[str, Any],
    info: RequestInfo,
    timer: RequestTimer,
) -> Relay:
    if protocol == protocols.OPENAI:
        return OpenAIRelay(route, payload, info, timer)
    if backend_protocol == protocols.OLLAMA:
        return OllamaRelay(route, payload, info, timer)
    return TranslatedOllamaRelay(route, payload, info, timer)
