"""Clients that hold the server's resources: a body sent byte by byte gets 408 and its
connection closed; past `max_client_connections`, new requests get 503 from the real
`gemma-monitor serve`."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.servers import start_serve

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}'


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, within_s: float) -> bytes:
    sock.settimeout(within_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def send_byte_by_byte(url: str, path: str, body: bytes) -> tuple[bytes, float]:
    """POST `body` one byte every 50 ms; the answer (read until the server closes) and how
    long it took to come."""
    with connect(url) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
            b"\r\ncontent-length: %d\r\n\r\n" % (path.encode(), len(body))
        )
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        for byte in body:  # the whole body would take seconds
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # the server closed the connection
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                time.sleep(0.05)
                continue
            break
        answer += read_until_closed(sock, 5)
        return answer, time.monotonic() - started


def test_a_body_sent_byte_by_byte_gets_408_and_the_connection_closed(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    proxy = make_proxy(request_body_timeout_s=0.5)
    answer, elapsed = send_byte_by_byte(proxy.url, "/v1/chat/completions", CHAT)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert b"did not arrive within 0.5s" in answer
    assert 0.4 < elapsed < 2.0, elapsed
    assert fake_backend.received == []
    # a request that sends its body at once is not affected
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=CHAT,
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200


def test_the_other_routes_bodies_have_the_same_time_limit(
    make_proxy: Callable[..., RunningProxy],
) -> None:
    proxy = make_proxy(request_body_timeout_s=0.5)
    feedback = b'{"request_id": "0123456789abcdef0123456789abcdef", "rating": 4}'
    answer, elapsed = send_byte_by_byte(proxy.url, "/v1/feedback", feedback)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower() and b"x-request-id" in answer.lower()
    assert b'"code":"VALIDATION_ERROR"' in answer
    assert 0.4 < elapsed < 2.0, elapsed


def test_past_max_client_connections_new_requests_get_503(
    tmp_path: Path, fake_backend_url: str
) -> None:
    proc, base = start_serve(tmp_path, fake_backend_url, max_client_connections="3")
    try:
        idle = [connect(base) for _ in range(3)]  # connected, never a request (slowloris)
        try:
            time.sleep(0.2)
            refused = httpx.get(f"{base}/health")
            assert refused.status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{base}/health").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
