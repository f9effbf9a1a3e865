"""The two client protocols: parsing and checking request bodies, reading usage and content out of
responses and stream events, and writing errors in each protocol's own shape.

Only structure is checked here (is this a chat request at all?); content rules are the guard's.
A chat request's recorded prompt text is the texts the guard reads (`monitor.guard.messages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from monitor.errors import ProxyError, RequestInvalid
from monitor.guard.messages import BadPart, Segment, message_parts

OPENAI: Final = "openai"
OLLAMA: Final = "ollama"
ROLES: Final = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    if not body:
        raise RequestInvalid("request body is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _is_bad_utf8(body):
            raise RequestInvalid("request body is not valid UTF-8") from exc
        raise RequestInvalid(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise RequestInvalid(f"request body must be a JSON object, not {_kind(payload)}")
    return payload


def _is_bad_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


@dataclass(slots=True)
class RequestInfo:
    """What the recorder needs to know about a request, read once from its body."""

    model: str | None
    stream: bool
    input_chars: int
    input_messages: int
    prompt_text: str


def _expect(payload: dict[str, Any], name: str, types: type | tuple[type, ...], what: str) -> Any:
    value = payload.get(name)
    if value is None:
        return None
    accepted = isinstance(value, types) and (
        bool in _as_tuple(types) or not isinstance(value, bool)
    )
    if not accepted:
        raise RequestInvalid(f"'{name}' must be {what}, not {_kind(value)}", param=name)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_common(
    payload: dict[str, Any], *, model_required: bool, stream_default: bool
) -> tuple[str | None, bool]:
    model = _expect(payload, "model", str, "a string")
    if model_required and not model:
        raise RequestInvalid("'model' is required", param="model")
    stream = _expect(payload, "stream", bool, "a boolean")
    return model, stream_default if stream is None else stream


def _message_text(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in message_parts(index, message, images=False):
            if isinstance(part, Segment):
                texts.append(part.text)
            elif isinstance(part, BadPart) and part.field is None:  # a bad `text`: skipped
                raise RequestInvalid(
                    f"messages[{index}].content parts must be objects with a 'type'",
                    param=f"messages[{index}].content",
                )
        return "\n".join(texts)
    raise RequestInvalid(
        f"messages[{index}].content must be a string or a list of parts, not {_kind(content)}",
        param=f"messages[{index}].content",
    )


def _check_messages(payload: dict[str, Any]) -> tuple[int, str]:
    messages = payload.get("messages")
    if messages is None:
        raise RequestInvalid("'messages' is required", param="messages")
    if not isinstance(messages, list):
        raise RequestInvalid(
            f"'messages' must be an array, not {_kind(messages)}", param="messages"
        )
    if not messages:
        raise RequestInvalid("'messages' must not be empty", param="messages")
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestInvalid(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise RequestInvalid(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                param=f"messages[{i}].role",
            )
        texts.append(_message_text(message, i))
    return len(messages), "\n".join(texts)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    if isinstance(prompt, list) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in prompt
    ):
        return ""  # token ids
    raise RequestInvalid("'prompt' must be a string or an array of strings", param="prompt")


def inspect_request(route: str, payload: dict[str, Any]) -> RequestInfo:
    """Check the structure of a request body for `route` and read what the record needs."""
    if route in ("/v1/chat/completions", "/api/chat"):
        ollama = route == "/api/chat"
        model, stream = _check_common(payload, model_required=ollama, stream_default=ollama)
        count, text = _check_messages(payload)
    elif route == "/v1/completions":
        model, stream = _check_common(payload, model_required=False, stream_default=False)
        if "prompt" not in payload:
            raise RequestInvalid("'prompt' is required", param="prompt")
        count, text = 1, _prompt_text(payload["prompt"])
    elif route == "/api/generate":
        model, stream = _check_common(payload, model_required=True, stream_default=True)
        prompt = _expect(payload, "prompt", str, "a string") or ""
        system = _expect(payload, "system", str, "a string") or ""
        count, text = 1, f"{system}\n{prompt}" if system else prompt
    else:  # pragma: no cover - routes are fixed by the router
        raise RequestInvalid(f"no such route {route}")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _expect(payload, name, int, "an integer")
    for name in ("temperature", "top_p"):
        _expect(payload, name, (int, float), "a number")
    _expect(payload, "options", dict, "an object")
    return RequestInfo(model, stream, len(text), count, text)


# --- responses -------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def choices(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices of an OpenAI reply or stream chunk that are objects (a backend may send
    anything: no list, or items that are not objects, count as none)."""
    found = payload.get("choices")
    if not isinstance(found, list):
        return []
    return [choice for choice in found if isinstance(choice, dict)]


def openai_response_text(payload: dict[str, Any]) -> str:
    texts = []
    for choice in choices(payload):
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
    return "".join(texts)


def openai_usage(payload: dict[str, Any]) -> Usage:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))


def openai_delta_text(event: dict[str, Any]) -> str:
    """The content carried by one streamed chunk (chat `delta.content` or completions `text`)."""
    out = ""
    for choice in choices(event):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                out += content
            if delta.get("tool_calls"):
                out += "\u0000"  # a tool-call fragment is output too; counted, not stored
        elif isinstance(choice.get("text"), str):
            out += choice["text"]
    return out


def ollama_response_text(payload: dict[str, Any]) -> str:
    message = payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message["content"])
    response = payload.get("response")
    return response if isinstance(response, str) else ""


def ollama_usage(payload: dict[str, Any]) -> Usage:
    return Usage(_int(payload.get("prompt_eval_count")), _int(payload.get("eval_count")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def estimate_tokens(text: str) -> int:
    """A rough count for backends that report no usage: about four characters a token."""
    return (len(text) + 3) // 4


# --- errors ----------------------------------------------------------------------------------


def error_body(protocol: str, error: ProxyError, request_id: str) -> bytes:
    if protocol == OLLAMA:
        return orjson.dumps({"error": error.message, "code": error.code, "request_id": request_id})
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": error.param,
                "code": error.code,
                "request_id": request_id,
            }
        }
    )
