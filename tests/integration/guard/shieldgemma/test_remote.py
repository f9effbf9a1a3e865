"""The remote classifier against a real HTTP server that scripts its completions answers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest

from monitor.guard.checks import Harm
from monitor.guard.classifier import ClassifierError, TextItem
from monitor.guard.shieldgemma.prompts import render_prompt
from monitor.guard.shieldgemma.remote import RemoteShieldGemma
from tests.support.asgi import read_body, serve_lifespan
from tests.support.servers import ThreadedServer, free_port

ITEMS = [
    TextItem("How do I pick a lock?", Harm.DANGEROUS_CONTENT),
    TextItem("hello", Harm.HARASSMENT, response="hi there"),
]

Reply = Callable[[dict[str, Any]], Awaitable[tuple[int, bytes]]]


def legacy(top: dict[str, float]) -> Reply:
    """An OpenAI legacy completions answer (vLLM, llama-cpp-python) with these top logprobs."""

    async def reply(request: dict[str, Any]) -> tuple[int, bytes]:
        first = next(iter(top), "x")
        body = {
            "object": "text_completion",
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "text": first,
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [first],
                        "token_logprobs": [top.get(first, -1.0)],
                        "top_logprobs": [top],
                        "text_offset": [0],
                    },
                }
            ],
        }
        return 200, orjson.dumps(body)

    return reply


class ScriptedCompletions:
    """POST /v1/completions answered by `reply`; records requests and the most in flight."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.reply: Reply = legacy({"Yes": math.log(0.25), "No": math.log(0.75)})
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        request = orjson.loads(await read_body(receive))
        self.requests.append(request)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            status, body = await self.reply(request)
        finally:
            self.in_flight -= 1
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[ScriptedCompletions, ThreadedServer]]:
    app = ScriptedCompletions()
    server = ThreadedServer(app).start()
    yield app, server
    server.stop(timeout=5)


@pytest.fixture
def scripted(_server: tuple[ScriptedCompletions, ThreadedServer]) -> ScriptedCompletions:
    app = _server[0]
    app.reset()
    return app


@pytest.fixture
async def remote(
    _server: tuple[ScriptedCompletions, ThreadedServer], scripted: ScriptedCompletions
) -> Any:
    classifier = RemoteShieldGemma(_server[1].url, "shieldgemma-2b", api_key="k-123")
    yield classifier
    await classifier.aclose()


async def test_asks_for_one_token_with_logprobs_and_renormalises(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    scripted.reply = legacy({"Yes": math.log(0.3), "No": math.log(0.6), "I": math.log(0.05)})
    scores = await remote.classify(ITEMS, timeout_s=5)
    assert scores == pytest.approx([1 / 3, 1 / 3])
    sent = sorted(scripted.requests, key=lambda r: r["prompt"])
    assert sorted(r["prompt"] for r in sent) == sorted(render_prompt(i) for i in ITEMS)
    for request in sent:
        assert not request["prompt"].startswith("<bos>")  # the server adds BOS itself
        assert {k: request[k] for k in ("model", "max_tokens", "temperature", "logprobs")} == {
            "model": "shieldgemma-2b",
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 10,
        }
    assert all(h["authorization"] == "Bearer k-123" for h in scripted.headers)


async def test_a_cached_question_is_not_asked_again(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    first = await remote.classify(ITEMS, timeout_s=5)
    again = await remote.classify([*ITEMS, ITEMS[0]], timeout_s=5)
    assert again == [*first, first[0]]
    assert len(scripted.requests) == 2


async def test_only_yes_listed_bounds_no_by_the_smallest(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    scripted.reply = legacy({"Yes": math.log(0.9), " Sure": math.log(0.04)})
    [score] = await remote.classify(ITEMS[:1], timeout_s=5)
    assert score == pytest.approx(0.9 / 0.94)


async def test_only_no_listed_bounds_yes_by_the_smallest(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    scripted.reply = legacy({"\u2581No": math.log(0.97), "Yes,": math.log(0.01)})
    [score] = await remote.classify(ITEMS[:1], timeout_s=5)
    assert score == pytest.approx(0.01 / 0.98)


async def test_neither_answer_listed_is_an_error(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    scripted.reply = legacy({"Sure": -0.1, "I": -3.0})
    with pytest.raises(ClassifierError, match="neither Yes nor No"):
        await remote.classify(ITEMS[:1], timeout_s=5)


async def test_the_chat_like_logprobs_shape_is_read_too(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    async def llama_server(request: dict[str, Any]) -> tuple[int, bytes]:
        top = [{"id": 1, "token": "No", "logprob": math.log(0.8), "bytes": [78, 111]}]
        top.append({"id": 2, "token": " Yes", "logprob": math.log(0.2), "bytes": []})
        content = [{"id": 1, "token": "No", "logprob": math.log(0.8), "top_logprobs": top}]
        choice = {"text": "No", "index": 0, "logprobs": {"content": content}}
        return 200, orjson.dumps({"choices": [choice]})

    scripted.reply = llama_server
    [score] = await remote.classify(ITEMS[:1], timeout_s=5)
    assert score == pytest.approx(0.2)


async def test_a_server_error_is_a_classifier_error(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    async def broken(request: dict[str, Any]) -> tuple[int, bytes]:
        return 500, b'{"error": "model crashed"}'

    scripted.reply = broken
    with pytest.raises(ClassifierError, match=r"answered 500.*model crashed"):
        await remote.classify(ITEMS[:1], timeout_s=5)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b'{"choices": []}',
        b'{"choices": [{"text": "Yes", "logprobs": null}]}',
        b'{"choices": [{"logprobs": {"top_logprobs": [{"Yes": "high"}]}}]}',
        b'{"choices": [{"logprobs": {"top_logprobs": [{}]}}]}',
    ],
    ids=["not-json", "no-choices", "no-logprobs", "not-a-number", "empty-top"],
)
async def test_garbage_is_a_classifier_error(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions, body: bytes
) -> None:
    async def garbage(request: dict[str, Any]) -> tuple[int, bytes]:
        return 200, body

    scripted.reply = garbage
    with pytest.raises(ClassifierError):
        await remote.classify(ITEMS[:1], timeout_s=5)


async def test_a_slow_server_times_out_and_the_next_call_works(
    remote: RemoteShieldGemma, scripted: ScriptedCompletions
) -> None:
    answer = legacy({"Yes": math.log(0.5), "No": math.log(0.5)})

    async def slow(request: dict[str, Any]) -> tuple[int, bytes]:
        await asyncio.sleep(1.0)
        return await answer(request)

    scripted.reply = slow
    with pytest.raises(TimeoutError, match=r"within 0\.2s"):
        await remote.classify(ITEMS, timeout_s=0.2)
    scripted.reply = answer
    assert await remote.classify(ITEMS[:1], timeout_s=5) == [0.5]


async def test_concurrency_is_limited(
    _server: tuple[ScriptedCompletions, ThreadedServer], scripted: ScriptedCompletions
) -> None:
    answer = legacy({"Yes": -1.0, "No": -1.0})

    async def slowish(request: dict[str, Any]) -> tuple[int, bytes]:
        await asyncio.sleep(0.1)
        return await answer(request)

    scripted.reply = slowish
    classifier = RemoteShieldGemma(_server[1].url + "/v1", "m", max_concurrency=2)
    items = [TextItem(f"question {n}", Harm.HARASSMENT) for n in range(6)]
    try:
        assert await classifier.classify(items, timeout_s=10) == [0.5] * 6
    finally:
        await classifier.aclose()
    assert scripted.most_in_flight == 2
    assert "authorization" not in scripted.headers[0]


async def test_no_server_is_a_classifier_error() -> None:
    classifier = RemoteShieldGemma(f"http://127.0.0.1:{free_port()}", "m")
    try:
        with pytest.raises(ClassifierError, match="cannot connect"):
            await classifier.classify(ITEMS[:1], timeout_s=5)
    finally:
        await classifier.aclose()


def test_only_plain_http_endpoints() -> None:
    with pytest.raises(ValueError, match="http://"):
        RemoteShieldGemma("https://guard.example", "m")
