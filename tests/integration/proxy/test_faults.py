"""Bad input, broken backends and vanishing clients: clear errors in the client's protocol, a
record for every request, never a 500."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.servers import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
JSON = {"content-type": "application/json"}
ADMIN = "admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def openai_error(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"messages": "hi"}', "'messages' must be an array"),
        (b'{"messages": []}', "must not be empty"),
        (b'{"model": "m"}', "'messages' is required"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "content"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "'stream' must be a boolean",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}',
            "'max_tokens' must be an integer",
        ),
    ],
)
def test_bad_openai_input_is_a_400_in_openai_shape(
    proxy: RunningProxy, fake_backend: FakeBackend, body: bytes, fragment: str
) -> None:
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    error = openai_error(resp)
    assert error["code"] == "VALIDATION_ERROR" and error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert fake_backend.received == []  # nothing reached the backend
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code, record.http_status) == (
        "invalid",
        "VALIDATION_ERROR",
        400,
    )


def test_bad_ollama_input_is_a_400_in_ollama_shape(proxy: RunningProxy) -> None:
    resp = httpx.post(
        f"{proxy.url}/api/chat",
        content=b'{"messages": [{"role": "user", "content": "x"}]}',
        headers=JSON,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "'model' is required"
    assert body["code"] == "VALIDATION_ERROR" and body["request_id"] == resp.headers["x-request-id"]


def test_huge_body_is_a_413(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(max_body_bytes=64 * 1024)
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (200 * 1024) + b'"}]}'
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", content=big, headers=JSON)
    assert resp.status_code == 413
    assert openai_error(resp)["code"] == "VALIDATION_ERROR"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b"x" * 4096

    resp = httpx.post(f"{proxy.url}/v1/chat/completions", content=chunks(), headers=JSON)
    assert resp.status_code == 413
    assert fake_backend.received == []


def test_a_body_of_too_many_json_objects_is_refused_before_it_is_parsed(
    make_proxy, fake_backend: FakeBackend
) -> None:
    proxy = make_proxy(max_json_containers=1000)
    tiny = [{"type": "text", "text": "a"}] * 1200
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": tiny}]})
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", content=body, headers=JSON)
    assert resp.status_code == 400
    error = openai_error(resp)
    assert error["code"] == "VALIDATION_ERROR"
    assert "1204 '{' and '[' characters" in error["message"]
    assert "max_json_containers" in error["message"]
    assert proxy.record(resp.headers["x-request-id"]).http_status == 400  # still recorded
    # braces in strings count too; under the cap a body passes
    text = "{[" * 400
    ok = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
    )
    assert ok.status_code == 200
    over = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text * 2}]},
    )
    assert over.status_code == 400
    assert len(fake_backend.received) == 1


def test_dead_backend_is_a_502(make_proxy) -> None:
    proxy = make_proxy(backend_url=f"http://127.0.0.1:{free_port()}")
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 502
    error = openai_error(resp)
    assert error["code"] == "GENERATION_ERROR" and "unreachable" in error["message"]
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code, record.http_status) == (
        "backend_error",
        "GENERATION_ERROR",
        502,
    )
    ollama = httpx.post(f"{proxy.url}/api/chat", json={**CHAT, "stream": False})
    assert ollama.status_code == 502 and ollama.json()["code"] == "GENERATION_ERROR"


def test_silent_backend_is_a_504(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(read_timeout_s=0.5)
    fake_backend.script.mode = "hang"
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=10)
    assert resp.status_code == 504
    assert openai_error(resp)["code"] == "GENERATION_ERROR"
    assert proxy.record(resp.headers["x-request-id"]).outcome == "backend_error"


def test_backend_5xx_is_a_502_and_4xx_keeps_its_status(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.status = 500
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 502
    assert "scripted failure" in openai_error(resp)["message"]
    fake_backend.script.status = 404
    fake_backend.script.error_body = b'{"error": "model \\"m\\" not found"}'
    resp = httpx.post(f"{proxy.url}/api/chat", json={**CHAT, "stream": False})
    assert resp.status_code == 404
    assert 'model "m" not found' in resp.json()["error"]


def test_backend_garbage_is_a_502(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    fake_backend.script.mode = "garbage"
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 502
    assert "not JSON" in openai_error(resp)["message"]


@pytest.mark.parametrize(
    ("mode", "status", "fragment"),
    [
        ("drop_mid_body", 502, "backend connection broke mid-response"),
        ("stall_mid_body", 504, "backend stalled mid-response"),
    ],
)
def test_a_whole_answer_cut_or_stalled_mid_body_is_a_clear_error(
    make_proxy, fake_backend: FakeBackend, mode: str, status: int, fragment: str
) -> None:
    proxy = make_proxy(read_timeout_s=0.5)
    fake_backend.script.mode = mode
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=10)
    assert resp.status_code == status
    error = openai_error(resp)
    assert error["code"] == "GENERATION_ERROR" and fragment in error["message"]
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code, record.http_status) == (
        "backend_error",
        "GENERATION_ERROR",
        status,
    )


def test_backend_dropping_mid_stream_ends_the_stream_with_an_error(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.mode = "drop_mid_stream"
    fake_backend.script.drop_after = 2
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200  # the headers were already sent
    events = [e for e in resp.content.split(b"\n\n") if e.strip()]
    assert b"tok0" in events[0] and b"tok1" in events[1]
    assert b'"GENERATION_ERROR"' in events[-1]
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code) == ("backend_error", "GENERATION_ERROR")


def test_client_abort_mid_stream_is_recorded_and_closes_upstream(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.chunks = 50
    fake_backend.script.chunk_s = 0.05
    with httpx.stream(
        "POST", f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}
    ) as resp:
        request_id = resp.headers["x-request-id"]
        for chunk in resp.iter_raw():
            if b"tok1" in chunk:
                break
    # leaving the block closes the connection mid-stream
    record = proxy.record(request_id)
    assert record.outcome == "client_abort" and record.stream is True
    deadline = time.monotonic() + 5
    while fake_backend.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_backend.disconnects == 1 and fake_backend.completed_streams == 0


@pytest.mark.parametrize("stock_protocol", [False, True], ids=["own-protocol", "stock-uvicorn"])
def test_client_abort_while_waiting_for_the_first_token(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend, stock_protocol: bool
) -> None:
    """The client leaves at 0.3 s, the backend would answer at 2 s: the request ends when the
    client leaves, noticed by the protocol's hook (as `serve` runs) or by a task waiting on
    `receive()` (any other ASGI server)."""
    proxy = make_proxy(stock_protocol=stock_protocol)
    fake_backend.script.think_s = 2.0
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=httpx.Timeout(5, read=0.3)
        )
    records = proxy.records(1)
    assert records[0].outcome == "client_abort"
    assert records[0].latency_ms is not None and records[0].latency_ms < 1500


def test_slowloris_client_does_not_block_others(proxy: RunningProxy) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200


def test_health_ready_and_metrics(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(admin_token=ADMIN)
    assert httpx.get(f"{proxy.url}/health").json() == {"status": "ok"}
    # anyone sees the status; the details behind the admin token
    assert httpx.get(f"{proxy.url}/ready").json() == {"status": "ready"}
    ready = httpx.get(f"{proxy.url}/ready", headers=AUTH)
    assert (
        ready.status_code == 200
        and ready.json()["backend"] == "ok"
        and ready.json()["database"] == "ok"
    )
    httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True})
    httpx.post(f"{proxy.url}/v1/chat/completions", content=b"{", headers=JSON)
    proxy.records(3)
    text = httpx.get(f"{proxy.url}/metrics").text
    assert 'gemma_monitor_requests_total{outcome="ok",route="/v1/chat/completions"} 2.0' in text
    assert (
        'gemma_monitor_requests_total{outcome="invalid",route="/v1/chat/completions"} 1.0' in text
    )
    assert (
        'gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="chat"} 2.0' in text
    )
    assert 'gen_ai_client_token_usage_sum{gen_ai_token_type="output"} 6.0' in text
    assert "gen_ai_server_time_per_output_token_seconds_bucket" in text
    assert "gemma_monitor_recorder_queue_depth" in text
    assert "gemma_monitor_recorder_spool_bytes" in text


def test_ready_is_503_when_the_backend_is_down(make_proxy) -> None:
    proxy = make_proxy(backend_url=f"http://127.0.0.1:{free_port()}", admin_token=ADMIN)
    assert httpx.get(f"{proxy.url}/ready").json() == {"status": "not ready"}
    ready = httpx.get(f"{proxy.url}/ready", headers=AUTH)
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok" and "unreachable" in ready.json()["backend"]


def test_shutdown_drains_streams_and_flushes_records(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy()
    fake_backend.script.chunks = 10
    fake_backend.script.chunk_s = 0.1
    result: dict[str, bytes] = {}

    def client() -> None:
        with httpx.stream(
            "POST", f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
        ) as resp:
            result["id"] = resp.headers["x-request-id"].encode()
            result["body"] = b"".join(resp.iter_raw())

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.3)  # the stream is under way
    proxy.stop()  # what SIGTERM does: stop accepting, drain, run the lifespan shutdown
    thread.join(10)
    assert result["body"].endswith(b"data: [DONE]\n\n")
    assert b"tok9" in result["body"]
    # the recorder flushed on shutdown: the record is in the database once the app is gone
    record = proxy.record(result["id"].decode(), timeout=1)
    assert record.outcome == "ok" and record.completion_tokens == 10


@pytest.mark.parametrize(
    ("route", "body"), [("/v1/chat/completions", {**CHAT, "stream": True}), ("/api/chat", CHAT)]
)
def test_stream_ends_for_the_client_at_its_terminal_event(
    make_proxy, fake_backend: FakeBackend, route: str, body: dict
) -> None:
    """A backend that lingers after `[DONE]` (llama.cpp does) must not hold the client, and a
    client that hangs up at `[DONE]` (the OpenAI SDK does) has not aborted anything."""
    proxy = make_proxy(backend_protocol="ollama" if route.startswith("/api") else "openai")
    fake_backend.script.linger_s = 1.5
    start = time.perf_counter()
    resp = httpx.post(f"{proxy.url}{route}", json=body)
    assert time.perf_counter() - start < 1.0
    assert resp.status_code == 200
    record = proxy.record(resp.headers["x-request-id"])
    assert record.outcome == "ok" and record.completion_tokens == 3
    assert fake_backend.completed_streams == 1  # the proxy read the backend's end too
