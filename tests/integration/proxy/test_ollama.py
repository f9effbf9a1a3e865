"""Ollama clients through the proxy: natively to an Ollama backend, translated to an OpenAI one."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hi"}]}


def ndjson(body: bytes) -> list[dict]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


@pytest.fixture
def ollama_proxy(make_proxy) -> RunningProxy:
    return make_proxy(backend_protocol="ollama")


def test_native_stream_passes_through(
    ollama_proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    resp = httpx.post(f"{ollama_proxy.url}/api/chat", json=CHAT)  # Ollama streams by default
    assert resp.status_code == 200
    lines = ndjson(resp.content)
    assert [line["message"]["content"] for line in lines[:-1]] == ["tok0 ", "tok1 ", "tok2 "]
    assert lines[-1]["done"] is True
    assert fake_backend.last.path == "/api/chat" and fake_backend.last.body == CHAT
    record = ollama_proxy.record(resp.headers["x-request-id"])
    assert record.protocol == "ollama" and record.stream is True
    assert (record.prompt_tokens, record.completion_tokens) == (7, 3)
    assert record.ttft_ms is not None


def test_native_generate_whole(ollama_proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.post(
        f"{ollama_proxy.url}/api/generate",
        json={"model": "gemma3", "prompt": "Hi", "stream": False},
    )
    assert resp.json()["response"] == "tok0 tok1 tok2 "
    record = ollama_proxy.record(resp.headers["x-request-id"])
    assert record.route == "/api/generate" and record.completion_tokens == 3


def test_openai_clients_use_ollamas_v1(
    ollama_proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    resp = httpx.post(
        f"{ollama_proxy.url}/v1/chat/completions",
        json={"model": "gemma3", "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 200
    assert fake_backend.last.path == "/v1/chat/completions"


def test_tags_native(ollama_proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.get(f"{ollama_proxy.url}/api/tags")
    assert resp.json()["models"][0]["name"] == "gemma3:270m"
    assert fake_backend.last.path == "/api/tags"


def test_translated_stream(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.post(
        f"{proxy.url}/api/chat",
        json={**CHAT, "options": {"temperature": 0, "num_predict": 5, "top_k": 1, "num_ctx": 4096}},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(resp.content)
    assert "".join(line["message"]["content"] for line in lines) == "tok0 tok1 tok2 "
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["eval_count"] == 3 and last["prompt_eval_count"] == 7
    sent = fake_backend.last
    assert sent.path == "/v1/chat/completions"
    assert (
        sent.body["max_tokens"] == 5 and sent.body["temperature"] == 0 and sent.body["top_k"] == 1
    )
    assert "num_ctx" not in sent.body
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    record = proxy.record(resp.headers["x-request-id"])
    assert (
        record.protocol == "ollama"
        and record.completion_tokens == 3
        and not record.tokens_estimated
    )


def test_translated_whole_with_images_and_tools(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    fake_backend.script.tool_call = True
    request = {
        "model": "gemma3",
        "stream": False,
        "messages": [{"role": "user", "content": "what's this?", "images": ["iVBORw0KGgo="]}],
        "tools": [
            {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
        ],
        "format": "json",
    }
    resp = httpx.post(f"{proxy.url}/api/chat", json=request)
    assert resp.status_code == 200
    body = resp.json()
    assert body["done"] is True and body["message"]["content"] == "tok0 tok1 tok2 "
    assert body["message"]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Paris"}}}
    ]
    sent = fake_backend.last.body
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "what's this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    assert sent["tools"] == request["tools"]
    assert sent["response_format"] == {"type": "json_object"}


def test_translated_stream_with_tool_calls(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    fake_backend.script.tool_call = True
    resp = httpx.post(f"{proxy.url}/api/chat", json=CHAT)
    last = ndjson(resp.content)[-1]
    assert last["message"]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Paris"}}}
    ]


def test_translated_generate(proxy: RunningProxy, fake_backend: FakeBackend) -> None:
    resp = httpx.post(
        f"{proxy.url}/api/generate",
        json={"model": "g", "prompt": "Hi", "system": "brief", "stream": False},
    )
    assert resp.json()["response"] == "tok0 tok1 tok2 "
    assert fake_backend.last.body["messages"] == [
        {"role": "system", "content": "brief"},
        {"role": "user", "content": "Hi"},
    ]
    raw = httpx.post(
        f"{proxy.url}/api/generate", json={"model": "g", "prompt": "<start>", "raw": True}
    )
    assert "".join(line["response"] for line in ndjson(raw.content)) == "tok0 tok1 tok2 "
    assert fake_backend.last.path == "/v1/completions"


def test_tags_translated_from_models(proxy: RunningProxy) -> None:
    resp = httpx.get(f"{proxy.url}/api/tags")
    assert resp.json()["models"][0]["name"] == "gemma-3-270m"
