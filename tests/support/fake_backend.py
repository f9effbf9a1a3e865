"""A scriptable upstream: a real HTTP server (ASGI under uvicorn) speaking OpenAI and Ollama.

Tests set `backend.script` to change what it does: think time, chunk count and gap, an error
status, a broken stream, a hang, non-JSON. It keeps every request it received (path, headers,
JSON body) and notices clients that went away mid-stream. With `required_key` set it answers 401
to any request without `Authorization: Bearer <key>`, as vLLM started with `--api-key` does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.asgi import read_body, serve_lifespan


@dataclass
class Script:
    think_s: float = 0.0
    chunks: int = 3
    chunk_s: float = 0.0
    status: int = 200
    error_body: bytes = b'{"error": {"message": "scripted failure", "type": "server_error"}}'
    # ok | drop_mid_stream | hang | garbage | no_usage | json_for_stream, and for a whole
    # answer: drop_mid_body (half its body, then the connection closes) | stall_mid_body
    mode: str = "ok"
    drop_after: int = 1
    tool_call: bool = False
    linger_s: float = 0.0  # after the last event, before ending the response
    first_chunk_s: float = 0.0  # a stream's wait between its headers and its first event
    text: str | None = None  # the answer's text, sent word by word; default tok0 tok1 ...

    def pieces(self) -> list[str]:
        if self.text is None:
            return [f"tok{i} " for i in range(self.chunks)]
        words = self.text.split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeBackend:
    script: Script = field(default_factory=Script)
    received: list[Received] = field(default_factory=list)
    disconnects: int = 0
    completed_streams: int = 0
    required_key: str | None = None

    def reset(self) -> None:
        self.script = Script()
        self.required_key = None
        self.received.clear()
        self.disconnects = 0
        self.completed_streams = 0

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        payload = orjson.loads(body) if body else None
        path = scope["path"]
        self.received.append(Received(scope["method"], path, headers, payload))
        if self.required_key is not None and headers.get("authorization") != (
            f"Bearer {self.required_key}"
        ):
            await _json(send, 401, {"error": {"message": "invalid API key", "code": 401}})
            return
        s = self.script
        if path == "/v1/models":
            await _json(
                send,
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "gemma-3-270m",
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": "fake",
                        }
                    ],
                },
            )
            return
        if path == "/api/tags":
            await _json(send, 200, {"models": [{"name": "gemma3:270m", "model": "gemma3:270m"}]})
            return
        if s.mode == "hang":
            await asyncio.sleep(3600)
        if s.think_s:
            await asyncio.sleep(s.think_s)
        if s.status >= 400:
            await _raw(send, s.status, b"application/json", s.error_body)
            return
        if s.mode == "garbage":
            await _raw(send, 200, b"application/json", b"<html>not json</html>")
            return
        stream = (
            bool(payload.get("stream", path.startswith("/api/")))
            if isinstance(payload, dict)
            else False
        )
        model = payload.get("model") if isinstance(payload, dict) else None
        if path in ("/v1/chat/completions", "/v1/completions"):
            chat = path == "/v1/chat/completions"
            if stream and s.mode != "json_for_stream":
                await self._openai_stream(send, receive, chat, model, payload)
            elif s.mode in ("drop_mid_body", "stall_mid_body"):
                await self._half_body(send, orjson.dumps(_openai_whole(chat, model, s)))
            else:
                await _json(send, 200, _openai_whole(chat, model, s))
        elif path in ("/api/chat", "/api/generate"):
            if stream:
                await self._ollama_stream(send, receive, path == "/api/chat", model)
            else:
                await _json(send, 200, _ollama_whole(path == "/api/chat", model, s))
        else:
            await _json(send, 404, {"error": f"no route {path}"})

    async def _half_body(self, send: Any, body: bytes) -> None:
        """A whole answer's head (its full `content-length`) and half its body; then the
        connection is dropped, or nothing more comes."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        if self.script.mode == "drop_mid_body":
            raise ConnectionAbortedError("scripted drop")  # uvicorn closes the socket
        await asyncio.sleep(3600)

    async def _stream(self, send: Any, receive: Any, ctype: bytes, events: list[bytes]) -> None:
        s = self.script
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]}
        )
        disconnected = asyncio.Event()

        async def watch() -> None:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            if s.first_chunk_s:
                await asyncio.sleep(s.first_chunk_s)
            for i, event in enumerate(events):
                if s.mode == "drop_mid_stream" and i == s.drop_after:
                    raise ConnectionAbortedError("scripted drop")  # uvicorn closes the socket
                if disconnected.is_set():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
                if s.chunk_s and i < len(events) - 1:
                    await asyncio.sleep(s.chunk_s)
            if s.linger_s:
                await asyncio.sleep(s.linger_s)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.completed_streams += 1
        except OSError:
            self.disconnects += 1
        finally:
            watcher.cancel()

    async def _openai_stream(
        self, send: Any, receive: Any, chat: bool, model: Any, payload: dict[str, Any]
    ) -> None:
        s = self.script
        events = []
        for piece in s.pieces():
            if chat:
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": None}
            events.append(
                _sse(
                    {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [choice],
                    }
                )
            )
        if s.tool_call and chat:
            for part in ('{"city"', ': "Paris"}'):
                delta = {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": part},
                        }
                    ]
                }
                events.append(
                    _sse(
                        {
                            "id": "c1",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                        }
                    )
                )
        events.append(
            _sse({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        )
        options = payload.get("stream_options") or {}
        if options.get("include_usage") and s.mode != "no_usage":
            events.append(
                _sse(
                    {
                        "id": "c1",
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 7,
                            "completion_tokens": s.chunks,
                            "total_tokens": 7 + s.chunks,
                        },
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        await self._stream(send, receive, b"text/event-stream", events)

    async def _ollama_stream(self, send: Any, receive: Any, chat: bool, model: Any) -> None:
        s = self.script
        lines = []
        for piece in s.pieces():
            part: dict[str, Any] = (
                {"message": {"role": "assistant", "content": piece}}
                if chat
                else {"response": piece}
            )
            lines.append(
                orjson.dumps(
                    {"model": model, "created_at": "2026-01-01T00:00:00Z", **part, "done": False}
                )
                + b"\n"
            )
        last: dict[str, Any] = (
            {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        )
        lines.append(
            orjson.dumps(
                {
                    "model": model,
                    "done": True,
                    "done_reason": "stop",
                    **last,
                    "prompt_eval_count": 7,
                    "eval_count": s.chunks,
                }
            )
            + b"\n"
        )
        await self._stream(send, receive, b"application/x-ndjson", lines)


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _openai_whole(chat: bool, model: Any, s: Script) -> dict[str, Any]:
    text = "".join(s.pieces())
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if s.tool_call:
            message["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
    out: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if s.mode != "no_usage":
        out["usage"] = {
            "prompt_tokens": 7,
            "completion_tokens": s.chunks,
            "total_tokens": 7 + s.chunks,
        }
    return out


def _ollama_whole(chat: bool, model: Any, s: Script) -> dict[str, Any]:
    text = "".join(s.pieces())
    part: dict[str, Any] = (
        {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
    )
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        **part,
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 7,
        "eval_count": s.chunks,
    }


async def _json(send: Any, status: int, obj: Any) -> None:
    await _raw(send, status, b"application/json", orjson.dumps(obj))


async def _raw(send: Any, status: int, ctype: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
