"""The proxy in front of a real Gemma 3 270M (llama.cpp), driven by the real `openai` and
`ollama` Python clients, streaming and not, with every request measured and stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import ollama
import openai
import pytest

from monitor.backends.local import LocalGemmaServer
from tests.support.proxy import RunningProxy

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def gemma_proxy(
    make_proxy: Callable[..., RunningProxy], gemma_backend: LocalGemmaServer
) -> RunningProxy:
    return make_proxy(backend_url=gemma_backend.url, read_timeout_s=120.0)


@pytest.fixture
def sdk(gemma_proxy: RunningProxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{gemma_proxy.url}/v1", api_key="sk-e2e-client", timeout=120
    ) as client:
        yield client


def test_openai_chat(
    sdk: openai.OpenAI, gemma_proxy: RunningProxy, gemma_backend: LocalGemmaServer
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=gemma_backend.model_alias, messages=MESSAGES, max_tokens=8, temperature=0
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8

    record = gemma_proxy.record(raw.headers["x-request-id"])
    assert record.outcome == "ok" and record.model == gemma_backend.model_alias
    assert record.completion_tokens == reply.usage.completion_tokens
    assert record.prompt_tokens == reply.usage.prompt_tokens
    assert record.tokens_estimated is False
    assert (
        record.latency_ms is not None
        and record.tokens_per_s is not None
        and record.tokens_per_s > 0
    )
    assert record.principal is not None and len(record.principal) == 16


def test_openai_chat_stream(
    sdk: openai.OpenAI, gemma_proxy: RunningProxy, gemma_backend: LocalGemmaServer
) -> None:
    with sdk.chat.completions.with_streaming_response.create(
        model=gemma_backend.model_alias,
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        stream=True,
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert all(c.usage is None for c in chunks)  # the usage chunk the proxy asked for is hidden

    record = gemma_proxy.record(request_id)
    assert record.stream is True and record.outcome == "ok"
    assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.latency_ms
    # llama-cpp-python ignores stream_options.include_usage: tokens are counted as the content
    # events the client received (one token each there), and marked as counted
    content_events = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert record.completion_tokens == content_events > 0
    assert record.tokens_estimated is True
    if record.completion_tokens > 2:
        assert record.itl_ms is not None and record.itl_ms > 0


def test_openai_completions(
    sdk: openai.OpenAI, gemma_proxy: RunningProxy, gemma_backend: LocalGemmaServer
) -> None:
    reply = sdk.completions.create(
        model=gemma_backend.model_alias, prompt="The sky is", max_tokens=6, temperature=0
    )
    assert reply.choices[0].text
    records = gemma_proxy.records(1)
    assert records[0].route == "/v1/completions" and records[0].outcome == "ok"


def test_ollama_client_translated(
    gemma_proxy: RunningProxy, gemma_backend: LocalGemmaServer
) -> None:
    client = ollama.Client(host=gemma_proxy.url, timeout=120)
    reply = client.chat(
        model=gemma_backend.model_alias,
        messages=MESSAGES,
        options={"num_predict": 8, "temperature": 0},
    )
    assert reply.message.role == "assistant" and reply.message.content
    assert reply.done is True and 0 < (reply.eval_count or 0) <= 8

    pieces = [
        part.message.content
        for part in client.chat(
            model=gemma_backend.model_alias,
            messages=MESSAGES,
            options={"num_predict": 8, "temperature": 0},
            stream=True,
        )
    ]
    assert "".join(pieces).strip()

    generated = client.generate(
        model=gemma_backend.model_alias, prompt="Hello", options={"num_predict": 5}
    )
    assert generated.response and generated.done

    models = client.list()
    assert [m.model for m in models.models] == [gemma_backend.model_alias]

    records = gemma_proxy.records(3)
    assert {r.protocol for r in records} == {"ollama"}
    assert all(r.outcome == "ok" for r in records)
    streamed = next(r for r in records if r.stream and r.route == "/api/chat")
    assert streamed.ttft_ms is not None and streamed.completion_tokens


def test_errors_reach_the_sdks_in_their_shapes(
    sdk: openai.OpenAI, gemma_proxy: RunningProxy
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gemma", messages=[])
    assert caught.value.code == "VALIDATION_ERROR"
    client = ollama.Client(host=gemma_proxy.url)
    with pytest.raises(ollama.ResponseError) as failed:
        client.chat(model="gemma", messages=[{"role": "wizard", "content": "x"}])
    assert failed.value.status_code == 400 and "role" in failed.value.error


def test_client_abort_with_a_real_model(
    gemma_proxy: RunningProxy, gemma_backend: LocalGemmaServer
) -> None:
    body = {
        "model": gemma_backend.model_alias,
        "messages": MESSAGES,
        "max_tokens": 200,
        "stream": True,
    }
    with httpx.stream(
        "POST", f"{gemma_proxy.url}/v1/chat/completions", json=body, timeout=60
    ) as resp:
        request_id = resp.headers["x-request-id"]
        for chunk in resp.iter_raw():
            if b"content" in chunk:
                break
    assert gemma_proxy.record(request_id).outcome == "client_abort"
    # the backend is free again: a new request completes
    after = httpx.post(
        f"{gemma_proxy.url}/v1/chat/completions",
        json={**body, "stream": False, "max_tokens": 4},
        timeout=60,
    )
    assert after.status_code == 200
