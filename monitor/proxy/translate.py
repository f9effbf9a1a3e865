"""Ollama clients in front of an OpenAI-compatible backend: requests one way, answers the other.

Ollama's `/api/chat` and `/api/generate` become `/v1/chat/completions` (or `/v1/completions`
for `raw` generate); the backend's JSON or SSE comes back as Ollama JSON or NDJSON. Images become
`image_url` data-URL parts; tools and tool calls keep their meaning; options map to their OpenAI
names and unknown options pass through as extra fields (vLLM and llama.cpp accept `top_k`,
`min_p`, `repeat_penalty`...), except those naming a field the translation sets: an option
`messages` or `prompt` would replace the text the guard checked, `stream` the relay's mode.

Both directions take what they are given as it comes: a field of the wrong type (an `images`
that is no list, a backend choice that is no object) is skipped, never an exception.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

_OPTION_NAMES = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_DROPPED_OPTIONS = frozenset({"num_ctx", "num_gpu", "num_thread", "num_batch", "use_mmap", "numa"})
_SET_BY_TRANSLATION = frozenset(
    {"model", "stream", "stream_options", "messages", "prompt", "suffix", "tools"}
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _image_part(image: str) -> dict[str, Any]:
    url = image if image.startswith("data:") else f"data:image/png;base64,{image}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call_to_openai(call: dict[str, Any], index: int) -> dict[str, Any]:
    function = _dict(call.get("function"))
    arguments = function.get("arguments", {})
    return {
        "id": call.get("id") or f"call_{index}",
        "type": "function",
        "function": {
            "name": _str(function.get("name")),
            "arguments": arguments
            if isinstance(arguments, str)
            else orjson.dumps(arguments).decode(),
        },
    }


def _message_to_openai(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if k not in ("images", "tool_calls", "tool_name")}
    images = _list(message.get("images"))
    if images:
        parts: list[dict[str, Any]] = []
        if message.get("content"):
            parts.append({"type": "text", "text": message["content"]})
        parts.extend(_image_part(i) for i in images if isinstance(i, str))
        out["content"] = parts
    if _list(message.get("tool_calls")):
        out["tool_calls"] = [
            _tool_call_to_openai(c, i)
            for i, c in enumerate(message["tool_calls"])
            if isinstance(c, dict)
        ]
    if message.get("role") == "tool" and "tool_name" in message:
        out.setdefault("name", message["tool_name"])
    return out


def _apply_options(request: dict[str, Any], payload: dict[str, Any]) -> None:
    for name, value in _dict(payload.get("options")).items():
        if name in _DROPPED_OPTIONS or _OPTION_NAMES.get(name, name) in _SET_BY_TRANSLATION:
            continue
        request[_OPTION_NAMES.get(name, name)] = value
    fmt = payload.get("format")
    if fmt == "json":
        request["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt},
        }


def ollama_to_openai(
    route: str, payload: dict[str, Any], stream: bool
) -> tuple[str, dict[str, Any]]:
    """The backend path and body for an Ollama request."""
    request: dict[str, Any] = {"model": payload.get("model"), "stream": stream}
    if stream:
        request["stream_options"] = {"include_usage": True}
    if route == "/api/chat":
        path = "/v1/chat/completions"
        request["messages"] = [
            _message_to_openai(m) for m in _list(payload.get("messages")) if isinstance(m, dict)
        ]
        if payload.get("tools"):
            request["tools"] = payload["tools"]
    elif payload.get("raw"):
        path = "/v1/completions"
        request["prompt"] = payload.get("prompt") or ""
        if payload.get("suffix"):
            request["suffix"] = payload["suffix"]
    else:
        path = "/v1/chat/completions"
        messages: list[dict[str, Any]] = []
        if payload.get("system"):
            messages.append({"role": "system", "content": payload["system"]})
        user: dict[str, Any] = {"role": "user", "content": payload.get("prompt") or ""}
        if payload.get("images"):
            user["images"] = payload["images"]
        messages.append(_message_to_openai(user))
        request["messages"] = messages
    _apply_options(request, payload)
    return path, request


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _tool_calls_to_ollama(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = _dict(call.get("function"))
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                pass  # keep the string: the model wrote something that is not JSON
        out.append({"function": {"name": _str(function.get("name")), "arguments": arguments}})
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finish_reason(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


class OllamaAnswer:
    """Builds Ollama replies for one request from what the OpenAI backend sends."""

    def __init__(self, route: str, model: str | None, started_ns: int) -> None:
        self.chat = route == "/api/chat"
        self.model = model or ""
        self.started_ns = started_ns
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None

    def _base(self, done: bool) -> dict[str, Any]:
        return {"model": self.model, "created_at": _now_iso(), "done": done}

    def _content(self, out: dict[str, Any], text: str, tool_calls: list[Any] | None) -> None:
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["tool_calls"] = _tool_calls_to_ollama(tool_calls)
            out["message"] = message
        else:
            out["response"] = text

    def _final_fields(
        self, out: dict[str, Any], prompt_tokens: int | None, completion_tokens: int | None
    ) -> None:
        total = time.perf_counter_ns() - self.started_ns
        out["done_reason"] = _finish_reason(self.finish)
        out["total_duration"] = total
        out["load_duration"] = 0
        out["prompt_eval_count"] = _count(prompt_tokens)
        out["eval_count"] = _count(completion_tokens)

    def whole(self, payload: dict[str, Any]) -> bytes:
        """A non-streamed OpenAI completion as one Ollama JSON reply."""
        choices = _list(payload.get("choices"))
        choice = _dict(choices[0]) if choices else {}
        message = _dict(choice.get("message"))
        text = message.get("content") if self.chat or "text" not in choice else choice["text"]
        if not isinstance(text, str):
            text = _str(choice.get("text"))
        self.finish = choice.get("finish_reason")
        out = self._base(True)
        self._content(out, text, _list(message.get("tool_calls")))
        usage = _dict(payload.get("usage"))
        self._final_fields(out, usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return orjson.dumps(out)

    def chunk(self, event: dict[str, Any]) -> bytes | None:
        """One NDJSON line for one OpenAI stream chunk, or None when it carries no content."""
        text = ""
        for choice in _list(event.get("choices")):
            if not isinstance(choice, dict):
                continue
            delta = _dict(choice.get("delta"))
            text += _str(delta.get("content")) or _str(choice.get("text"))
            for call in _list(delta.get("tool_calls")):
                if not isinstance(call, dict):
                    continue
                index = call.get("index", 0)
                slot = self.tool_calls.setdefault(
                    index if isinstance(index, int) else 0,
                    {"function": {"name": "", "arguments": ""}},
                )
                function = _dict(call.get("function"))
                name = _str(function.get("name"))
                if name != slot["function"]["name"]:  # some servers repeat the name in every delta
                    slot["function"]["name"] += name
                slot["function"]["arguments"] += _str(function.get("arguments"))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if not text:
            return None
        out = self._base(False)
        self._content(out, text, None)
        return orjson.dumps(out) + b"\n"

    def text_line(self, text: str) -> bytes:
        """One NDJSON content line with `text` (a held-back stream sent again, redacted)."""
        out = self._base(False)
        self._content(out, text, None)
        return orjson.dumps(out) + b"\n"

    def last(self, prompt_tokens: int | None, completion_tokens: int | None) -> bytes:
        out = self._base(True)
        calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        self._content(out, "", calls or None)
        self._final_fields(out, prompt_tokens, completion_tokens)
        return orjson.dumps(out) + b"\n"


def models_to_tags(payload: dict[str, Any]) -> bytes:
    """`GET /v1/models` as Ollama's `GET /api/tags`."""
    models = []
    for entry in _list(payload.get("data")):
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        created = entry.get("created")
        modified = _now_iso()
        if isinstance(created, int) and 0 <= created < 253402300800:  # up to year 9999
            modified = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
        models.append(
            {
                "name": entry["id"],
                "model": entry["id"],
                "modified_at": modified,
                "size": 0,
                "digest": "",
                "details": {
                    "family": "gemma",
                    "format": "",
                    "parameter_size": "",
                    "quantization_level": "",
                },
            }
        )
    return orjson.dumps({"models": models})
