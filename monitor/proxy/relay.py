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

from collections.abc import Callable
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

    @property
    def response_model(self) -> str | None:
        """The model the backend says answered (its reply's `model`), when it says one."""
        model = self._reply_head().get("model")
        return model if isinstance(model, str) else None

    def _reply_head(self) -> dict[str, Any]:
        return {}

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

    # -- what the output guard needs ------------------------------------------------------

    def whole_texts(self) -> list[str]:
        """The texts of the whole reply that `rewrite_whole` passes through its `redact`."""
        texts: list[str] = []

        def keep(text: str) -> str:
            texts.append(text)
            return text

        self._each_text(keep)
        return texts

    def rewrite_whole(self, redact: Callable[[str], str]) -> bytes:
        """The whole reply again, each choice's text passed through `redact`."""
        raise NotImplementedError

    def _each_text(self, apply: Callable[[str], str]) -> None:
        """Replace each text of the whole reply by `apply(text)`."""
        raise NotImplementedError

    def filtered_ending(self, error: ProxyError, request_id: str) -> bytes:
        """How a stream ends when the output guard blocks it: an error line for Ollama."""
        return self.stream_error(error, request_id)

    def redacted_stream(self, text: str) -> bytes:
        """A held-back (buffered) stream again, as one content event with `text`, then its end."""
        raise NotImplementedError

    def _replace_text(self, text: str) -> None:
        self.pieces = [text]


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
        self._chat = route == "/v1/chat/completions"
        self._whole: dict[str, Any] | None = None
        self._head: dict[str, Any] = {}  # id, model, created of the stream's chunks
        self._finish: Any = None
        self._usage_event: bytes | None = None  # relayed to clients that asked for usage

    def _reply_head(self) -> dict[str, Any]:
        return self._whole or self._head

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self._whole = payload
        self.pieces.append(protocols.openai_response_text(payload))
        self.usage = protocols.openai_usage(payload)
        return data

    def rewrite_whole(self, redact: Callable[[str], str]) -> bytes:
        self._each_text(redact)
        assert self._whole is not None
        self._replace_text(protocols.openai_response_text(self._whole))
        return orjson.dumps(self._whole)

    def _each_text(self, apply: Callable[[str], str]) -> None:
        assert self._whole is not None
        _redact_openai_choices(self._whole, apply)

    def _chunk(self, delta_text: str | None, finish: Any) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self._chat:
            choice["delta"] = {"role": "assistant", "content": delta_text} if delta_text else {}
        else:
            choice["text"] = delta_text or ""
        obj = "chat.completion.chunk" if self._chat else "text_completion"
        event = {**self._head, "object": obj, "choices": [choice]}
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def filtered_ending(self, error: ProxyError, request_id: str) -> bytes:
        return self._chunk(None, "content_filter") + b"data: [DONE]\n\n"

    def redacted_stream(self, text: str) -> bytes:
        self._replace_text(text)
        usage = self._usage_event or b""
        return (
            self._chunk(text, None)
            + self._chunk(None, self._finish or "stop")
            + usage
            + b"data: [DONE]\n\n"
        )

    def feed(self, chunk: bytes) -> bytes:
        kept: list[bytes] = []
        for event in self._splitter.feed(chunk):
            data = sse_data(event)
            if data is DONE:
                self.done = True
            elif isinstance(data, dict):
                if not self._head:
                    self._head = {k: data[k] for k in ("id", "model", "created") if k in data}
                for choice in protocols.choices(data):
                    if choice.get("finish_reason"):
                        self._finish = choice["finish_reason"]
                if data.get("usage"):
                    self.usage = protocols.openai_usage(data)
                    if not data.get("choices"):
                        if self._hide_usage:
                            continue
                        self._usage_event = event
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
        self._chat = route == "/api/chat"
        self._whole: dict[str, Any] | None = None
        self._model = info.model
        self._last_line = b""

    def _reply_head(self) -> dict[str, Any]:
        return self._whole or {}

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self._whole = payload
        self.pieces.append(protocols.ollama_response_text(payload))
        self.usage = protocols.ollama_usage(payload)
        return data

    def rewrite_whole(self, redact: Callable[[str], str]) -> bytes:
        self._each_text(redact)
        assert self._whole is not None
        self._replace_text(protocols.ollama_response_text(self._whole))
        return orjson.dumps(self._whole)

    def _each_text(self, apply: Callable[[str], str]) -> None:
        assert self._whole is not None
        _redact_ollama(self._whole, apply)

    def redacted_stream(self, text: str) -> bytes:
        self._replace_text(text)
        line: dict[str, Any] = {"model": self._model, "done": False}
        if self._chat:
            line["message"] = {"role": "assistant", "content": text}
        else:
            line["response"] = text
        return orjson.dumps(line) + b"\n" + self._last_line

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
                    self._last_line = line
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
        self._whole: dict[str, Any] = {}

    def _reply_head(self) -> dict[str, Any]:
        return self._whole

    def response_headers(self, upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in upstream if k != b"content-type"]
        kept.append(_NDJSON if self.stream else _JSON)
        return kept

    def whole(self, data: bytes) -> bytes:
        payload = _loads_object(data)
        self._whole = payload
        self.pieces.append(protocols.openai_response_text(payload))
        self.usage = protocols.openai_usage(payload)
        return self._answer.whole(payload)

    def rewrite_whole(self, redact: Callable[[str], str]) -> bytes:
        self._each_text(redact)
        self._replace_text(protocols.openai_response_text(self._whole))
        return self._answer.whole(self._whole)

    def _each_text(self, apply: Callable[[str], str]) -> None:
        _redact_openai_choices(self._whole, apply)

    def redacted_stream(self, text: str) -> bytes:
        self._replace_text(text)
        return self._answer.text_line(text) + self.close()

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


def _redact_openai_choices(payload: dict[str, Any], redact: Callable[[str], str]) -> None:
    for choice in protocols.choices(payload):
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] = redact(message["content"])
        elif isinstance(choice.get("text"), str):
            choice["text"] = redact(choice["text"])


def _redact_ollama(payload: dict[str, Any], redact: Callable[[str], str]) -> None:
    message = payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        message["content"] = redact(message["content"])
    elif isinstance(payload.get("response"), str):
        payload["response"] = redact(payload["response"])
