"""Request headers have a deadline (`request_header_timeout_s`), on a real `gemma-monitor serve`:
a client trickling its headers gets a 408 and loses its connection, a connection that sends
nothing is closed, and neither can hold the connection slots, while a stream that outlives the
deadline and the next request on its keep-alive connection are untouched."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.servers import start_serve

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
TIMEOUT_S = 1.0


@pytest.fixture
def serve(tmp_path: Path, fake_backend_url: str) -> Iterator[str]:
    process, url = start_serve(
        tmp_path,
        fake_backend_url,
        request_header_timeout_s=str(TIMEOUT_S),
        max_client_connections="4",
    )
    try:
        yield url
    finally:
        process.terminate()
        process.wait(20)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)
    return sock


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_headers_sent_byte_by_byte_get_a_408_and_the_connection_closes(serve: str) -> None:
    with _connect(serve) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        # one header byte every 0.2 s: each arrives well within any per-read timeout
        for byte in b"X-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            if time.monotonic() - started > 12:
                break
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        sock.settimeout(5)
        try:
            answer += _read_to_eof(sock)
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "VALIDATION_ERROR" and "headers" in error["message"]
    assert error["request_id"] and f"x-request-id: {error['request_id']}".encode() in head
    assert waited < 10  # the deadline (1 s) ended it, long before the trickle would have


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(serve: str) -> None:
    with _connect(serve) as sock:
        assert _read_to_eof(sock) == b""


def test_trickling_clients_cannot_hold_every_connection_slot(serve: str) -> None:
    # max_client_connections is 4: four silent connections hold every slot until the deadline
    socks = [_connect(serve) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(TIMEOUT_S + 1.5)
        answer = httpx.post(f"{serve}/v1/chat/completions", json=CHAT, timeout=10)
        assert answer.status_code == 200
        for sock in socks:
            assert _read_to_eof(sock).startswith(b"HTTP/1.1 408")
    finally:
        for sock in socks:
            sock.close()


def test_a_stream_longer_than_the_deadline_and_the_next_request_are_untouched(
    serve: str, fake_backend: FakeBackend
) -> None:
    fake_backend.script.chunks = 8
    fake_backend.script.chunk_s = 0.3  # 2.4 s of stream, past the 1 s header deadline
    body = {**CHAT, "stream": True}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{serve}/v1/chat/completions", json=body) as resp:
            streamed = b"".join(resp.iter_raw())
        assert streamed.endswith(b"data: [DONE]\n\n")
        time.sleep(TIMEOUT_S + 0.5)  # idle, but within uvicorn's keep-alive (5 s)
        fake_backend.script.chunk_s = 0.0
        again = client.post(f"{serve}/v1/chat/completions", json=CHAT)
        assert again.status_code == 200


def test_the_next_request_on_a_keep_alive_connection_has_a_deadline_of_its_own(
    serve: str,
) -> None:
    """The first request's headers came whole; the second's trickle after its first bytes:
    its deadline runs from those bytes, and it gets a 408."""
    request = json.dumps(CHAT).encode()
    with _connect(serve) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(request), request)
        )
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(0.3)  # the whole answer is in; the connection stays open (keep-alive)
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(TIMEOUT_S + 8)
        answer = b""
        try:
            while b"HTTP/1.1 408" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
    assert b"HTTP/1.1 408" in answer, answer[-300:]
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 5
