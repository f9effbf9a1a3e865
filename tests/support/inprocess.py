"""The real app driven in-process from synchronous tests: `create_app(settings)` called as ASGI
in one event loop that also runs its lifespan (the upstream client, the recorder, the workers),
so a request costs a function call rather than a connection. The fuzz tests send thousands.

Requests are shaped as a server would hand them over (a scope with raw header bytes, the
client's address, the body in one or more messages); the client stays connected until its
answer is complete, then hangs up.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.app import MonitorApp

Headers = Sequence[tuple[bytes, bytes]]
JSON_HEADERS: Headers = ((b"content-type", b"application/json"), (b"host", b"localhost:8000"))


@dataclass
class Answer:
    """A whole response: status, raw headers and the body (a stream's events joined)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class InProcessApp:
    """An ASGI app driven from synchronous tests: lifespan started once, requests one by one."""

    def __init__(self, app: MonitorApp, timeout_s: float = 30.0) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self._lifespan_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan_outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._lifespan = self.loop.create_task(self._run_lifespan())
        started = self._lifespan_call("lifespan.startup")
        assert started["type"] == "lifespan.startup.complete", started

    async def _run_lifespan(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await self.app(scope, self._lifespan_inbox.get, self._lifespan_outbox.put)

    def _lifespan_call(self, message: str) -> MutableMapping[str, Any]:
        self._lifespan_inbox.put_nowait({"type": message})
        return self.loop.run_until_complete(asyncio.wait_for(self._lifespan_outbox.get(), 30))

    def close(self) -> None:
        self._lifespan_call("lifespan.shutdown")
        self.loop.run_until_complete(asyncio.wait_for(self._lifespan, 30))
        self.loop.close()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST a JSON body; the status and the body of the answer."""
        length = (b"content-length", str(len(body)).encode())
        answer = self.request("POST", path, [*JSON_HEADERS, length], [body])
        return answer.status, answer.body

    def request(
        self,
        method: str,
        path: str,
        headers: Headers = JSON_HEADERS,
        body: Sequence[bytes] = (b"",),
        *,
        query: bytes = b"",
        client: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> Answer:
        """Send one request, its body in as many messages as `body` has pieces."""
        request = self._request(method, path, headers, body, query, client)
        return self.loop.run_until_complete(asyncio.wait_for(request, self.timeout_s))

    async def _request(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: Sequence[bytes],
        query: bytes,
        client: tuple[str, int] | None,
    ) -> Answer:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": query,
            "root_path": "", "client": client, "server": ("127.0.0.1", 8000),
            "headers": [(name.lower(), value) for name, value in headers], "state": {},
        }  # fmt: skip
        pieces = list(body) or [b""]
        answered = asyncio.Event()
        answer = Answer(0, [], b"")
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if pieces:
                piece = pieces.pop(0)
                return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
            await answered.wait()  # the client stays until its answer is complete
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        await self.app(scope, receive, send)
        answered.set()
        answer.body = b"".join(chunks)
        return answer
