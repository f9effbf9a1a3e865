"""How the proxy's HTTP protocol writes a response (`monitor.api.http_protocol.HeadHeld`): a
whole answer leaves in one write of the socket, head and body together, while a stream still
gets its head as soon as the proxy starts it, before its first event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.api.http_protocol import with_header_timeout
from monitor.app import create_app
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import proxy_settings
from tests.support.servers import ThreadedServer
from tests.support.transport import RecordingTransport

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def served(tmp_path: Path, fake_backend_url: str) -> Iterator[tuple[str, list[bytes]]]:
    writes: list[bytes] = []

    class Recorded(with_header_timeout(10.0)):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(RecordingTransport(transport, writes))  # type: ignore[arg-type]

    app = create_app(proxy_settings(fake_backend_url, tmp_path))
    server = ThreadedServer(app, http=Recorded, proxy_headers=False).start()
    try:
        yield server.url, writes
    finally:
        server.stop()


def test_a_whole_answer_is_one_write(served: tuple[str, list[bytes]]) -> None:
    url, writes = served
    with httpx.Client() as client:
        for path, body in (
            ("/v1/chat/completions", CHAT),
            ("/api/chat", {**CHAT, "stream": False}),
        ):
            writes.clear()
            answer = client.post(f"{url}{path}", json=body)
            assert answer.status_code == 200
            assert len(writes) == 1, writes
            assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
            assert writes[0].endswith(answer.content) and b"tok0" in answer.content
        writes.clear()
        assert client.get(f"{url}/health").status_code == 200  # a framework route too
        assert len(writes) == 1 and writes[0].endswith(b'{"status":"ok"}')


def test_a_stream_gets_its_head_before_its_first_event(
    served: tuple[str, list[bytes]], fake_backend: FakeBackend
) -> None:
    url, writes = served
    fake_backend.script.first_chunk_s = 1.0
    started = time.monotonic()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        head_after = time.monotonic() - started
        events = b"".join(r.iter_raw())
        done_after = time.monotonic() - started
    assert r.status_code == 200 and b"tok0" in events
    assert done_after >= 1.0
    assert head_after < 0.8, f"the head waited for the first event: {head_after:.2f} s"
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and b"tok0" not in writes[0]
