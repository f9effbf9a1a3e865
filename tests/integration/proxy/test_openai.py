"""OpenAI-compatible clients through the proxy, in front of a scripted real HTTP backend."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Hello there"}]}


def sse_events(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e.strip()]


def test_chat_is_forwarded_and_recorded(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "
    assert body["usage"]["completion_tokens"] == 3
    request_id = resp.headers["x-request-id"]
    assert len(request_id) == 32
    assert uuid.UUID(request_id).version == 7  # time first (`new_request_id`)

    assert fake_backend.last.path == "/v1/chat/completions"
    assert fake_backend.last.body == CHAT

    record = proxy.record(request_id)
    assert record.outcome == "ok"
    assert record.http_status == 200
    assert record.protocol == "openai"
    assert record.route == "/v1/chat/completions"
    assert record.model == "gemma-3-270m"
    assert record.stream is False
    assert (record.prompt_tokens, record.completion_tokens) == (7, 3)
    assert record.tokens_estimated is False
    assert record.input_messages == 1 and record.input_chars == len("Hello there")
    assert record.latency_ms is not None and record.latency_ms > 0
    assert record.tokens_per_s is not None and record.tokens_per_s > 0
    assert record.prompt_hash is not None and len(record.prompt_hash) == 64
    # privacy by default: no content stored
    assert record.prompt_text is None and record.response_text is None


def test_content_is_stored_only_when_configured(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(content_storage="full")
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    record = proxy.record(resp.headers["x-request-id"])
    assert record.prompt_text == "Hello there"
    assert record.response_text == "tok0 tok1 tok2 "


def test_extra_fields_tools_and_images_pass_untouched(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    request = {
        "model": "gemma-3-4b",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "auto",
        "top_k": 40,
        "vendor_extension": {"nested": [1, 2, {"x": None}]},
    }
    raw = orjson.dumps(request)
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200
    assert fake_backend.last.body == request


def test_tool_call_responses_come_back_whole(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.tool_call = True
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    call = resp.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}


def test_completions_route(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.post(
        f"{proxy.url}/v1/completions", json={"model": "m", "prompt": "Once upon", "max_tokens": 3}
    )
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["text"] == "tok0 tok1 tok2 "
    record = proxy.record(resp.headers["x-request-id"])
    assert record.route == "/v1/completions" and record.completion_tokens == 3


def test_stream_is_relayed_as_it_arrives_and_timed(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.chunks = 4
    fake_backend.script.think_s = 0.2
    fake_backend.script.chunk_s = 0.15
    arrivals: list[tuple[float, bytes]] = []
    start = time.perf_counter()
    with httpx.stream(
        "POST", f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        request_id = resp.headers["x-request-id"]
        for chunk in resp.iter_raw():
            arrivals.append((time.perf_counter() - start, chunk))
    body = b"".join(c for _, c in arrivals)
    events = sse_events(body)
    # content chunks, the finish chunk and [DONE]; the usage chunk the proxy asked for is hidden
    assert len(events) == 6
    assert events[-1] == b"data: [DONE]"
    assert all(b'"usage"' not in e for e in events)
    # the first token reached the client long before the stream ended: not buffered
    first_token_at = next(t for t, c in arrivals if b"tok0" in c)
    assert arrivals[-1][0] - first_token_at > 0.3
    # the backend was asked for usage so the record has exact token counts
    assert fake_backend.last.body["stream_options"] == {"include_usage": True}

    record = proxy.record(request_id)
    assert record.stream is True and record.outcome == "ok"
    assert record.completion_tokens == 4 and record.prompt_tokens == 7
    assert record.tokens_estimated is False
    assert record.ttft_ms is not None and 190 <= record.ttft_ms < record.latency_ms
    assert record.itl_ms is not None and record.itl_ms >= 100
    assert record.tokens_per_s is not None and 0 < record.tokens_per_s < 20


def test_stream_usage_is_relayed_when_the_client_asked(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=request)
    events = sse_events(resp.content)
    assert b'"usage"' in events[-2]
    assert fake_backend.last.body == request


def test_stream_without_usage_counts_tokens(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    fake_backend.script.mode = "no_usage"
    fake_backend.script.chunks = 5
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True})
    record = proxy.record(resp.headers["x-request-id"])
    assert record.completion_tokens == 5 and record.tokens_estimated is True
    assert record.prompt_tokens is None


def test_models_listing(proxy: RunningProxy) -> None:
    resp = httpx.get(f"{proxy.url}/v1/models")
    assert resp.status_code == 200
    assert resp.json()["data"][0]["id"] == "gemma-3-270m"
    assert "x-request-id" in resp.headers


def test_authorization_is_not_forwarded_by_default(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=CHAT,
        headers={
            "authorization": "Bearer sk-client-secret",
            "x-custom": "not forwarded",
            "connection": "keep-alive",
            "te": "trailers",
        },
    )
    headers = fake_backend.last.headers
    assert "authorization" not in headers
    assert "x-custom" not in headers  # only allowlisted client headers go upstream
    assert "te" not in headers


def test_principal_is_a_hash_of_the_key(proxy: RunningProxy) -> None:
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-client-secret"},
    )
    record = proxy.record(resp.headers["x-request-id"])
    assert record.principal is not None and len(record.principal) == 16
    assert "sk-client" not in record.principal


def test_authorization_forwarded_or_replaced_when_configured(
    make_proxy, fake_backend: FakeBackend
) -> None:
    forwarding = make_proxy(forward_client_authorization=True)
    httpx.post(
        f"{forwarding.url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-client"},
    )
    assert fake_backend.last.headers["authorization"] == "Bearer sk-client"
    keyed = make_proxy(backend_api_key="sk-backend")
    httpx.post(
        f"{keyed.url}/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-client"}
    )
    assert fake_backend.last.headers["authorization"] == "Bearer sk-backend"


def test_records_reach_postgres(make_proxy, fake_backend: FakeBackend) -> None:
    from tests.support.databases import postgres_schema, render

    with postgres_schema() as url:
        proxy = make_proxy(database_url=render(url))
        ids = []
        for stream in (False, True):
            resp = httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": stream})
            ids.append(resp.headers["x-request-id"])
        resp = httpx.post(f"{proxy.url}/api/chat", json={"messages": []})
        ids.append(resp.headers["x-request-id"])
        records = [proxy.record(i) for i in ids]
        assert [r.outcome for r in records] == ["ok", "ok", "invalid"]
        assert records[1].ttft_ms is not None and records[1].ts.tzinfo is not None
        proxy.stop()
