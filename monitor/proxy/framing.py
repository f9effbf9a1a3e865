"""Splitting a byte stream into whole events: SSE (`\\n\\n`-separated) and NDJSON (`\\n`).

Upstream reads arrive cut anywhere; the relay forwards only whole events, so that an event can be
inspected (and, later, dropped or rewritten by the guard) without breaking the client's parser.
"""

from __future__ import annotations

from typing import Any

import orjson


class EventSplitter:
    """Accumulates bytes and returns the complete events seen so far, separators included."""

    __slots__ = ("_buf", "_sep")

    def __init__(self, separator: bytes) -> None:
        self._sep = separator
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        sep = self._sep
        end = buf.rfind(sep)
        if end < 0:
            self._buf = buf
            return []
        end += len(sep)
        self._buf = buf[end:]
        whole = buf[:end]
        parts = whole.split(sep)
        parts.pop()  # the empty tail after the last separator
        return [p + sep for p in parts if p.strip()]

    def rest(self) -> bytes:
        """Whatever came after the last separator (a stream that ended without one)."""
        rest, self._buf = self._buf, b""
        return rest if rest.strip() else b""


def sse_splitter() -> EventSplitter:
    return EventSplitter(b"\n\n")


def ndjson_splitter() -> EventSplitter:
    return EventSplitter(b"\n")


DONE = object()


def sse_data(event: bytes) -> Any:
    """The JSON payload of one SSE event; `DONE` for `[DONE]`; None for comments and non-JSON."""
    data = b""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            chunk = line[5:]
            if chunk.startswith(b" "):
                chunk = chunk[1:]
            data = data + b"\n" + chunk if data else chunk
    if not data:
        return None
    if data == b"[DONE]":
        return DONE
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def ndjson_data(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
