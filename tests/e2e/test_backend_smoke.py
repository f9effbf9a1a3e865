"""The local Gemma backend serves: chat through the OpenAI SDK, whole and streamed.

These talk to the model server directly, without the proxy, so a failure here means the
backend (build, weights, chat format), not the monitor, is broken.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from monitor.backends.local import LocalGemmaServer

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hello in one word."}]


@pytest.fixture
def client(gemma_backend: LocalGemmaServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gemma_backend.base_url, api_key="unused", timeout=60) as sdk:
        yield sdk


def test_lists_the_model(client: openai.OpenAI, gemma_backend: LocalGemmaServer) -> None:
    assert [m.id for m in client.models.list()] == [gemma_backend.model_alias]


def test_chat_completion(client: openai.OpenAI, gemma_backend: LocalGemmaServer) -> None:
    reply = client.chat.completions.create(
        model=gemma_backend.model_alias, messages=MESSAGES, max_tokens=8, temperature=0
    )

    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 0


def test_chat_completion_stream(client: openai.OpenAI, gemma_backend: LocalGemmaServer) -> None:
    stream = client.chat.completions.create(
        model=gemma_backend.model_alias,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
    )

    pieces: list[str] = []
    finish_reasons: list[str] = []
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
    assert "".join(pieces).strip()
    assert len(pieces) > 1  # really streamed, not one block
    assert finish_reasons in (["stop"], ["length"])


def test_completion_with_logprobs(client: openai.OpenAI, gemma_backend: LocalGemmaServer) -> None:
    reply = client.completions.create(
        model=gemma_backend.model_alias,
        prompt="The capital of France is",
        max_tokens=4,
        temperature=0,
        logprobs=2,
    )

    choice = reply.choices[0]
    assert choice.text
    assert choice.logprobs is not None
    assert choice.logprobs.token_logprobs
    assert all(lp is None or lp <= 0 for lp in choice.logprobs.token_logprobs)
