"""ShieldGemma on a server: vLLM, llama.cpp or Ollama behind an OpenAI-compatible API.

Each question is one `POST {endpoint}/v1/completions` with the rendered prompt (the server
adds BOS), `max_tokens: 1`, `temperature: 0` and `logprobs: K`; P(Yes) comes from the top-K
log-probabilities of the first generated position, renormalised over Yes and No
(`p_yes_from_top_logprobs`). Completions rather than chat: a chat template would wrap the
prompt again. Both shapes servers use for completion logprobs are read: the legacy one
(`logprobs.top_logprobs[0]` maps token to logprob; vLLM, llama-cpp-python) and the chat-like
one (`logprobs.content[0].top_logprobs` lists `{token, logprob}`; llama.cpp's llama-server).

Requests go through the project's own HTTP client (`monitor.upstream.client`), at most
`max_concurrency` at a time. Errors: `ClassifierError` for a refused connection, an HTTP
error status, a body that is not the expected JSON, or logprobs without Yes and No;
`TimeoutError` when the whole call took longer than its `timeout_s`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from monitor.guard.classifier import ClassifierError, TextItem
from monitor.guard.shieldgemma.prompts import p_yes_from_top_logprobs, prompt_key, render_prompt
from monitor.guard.shieldgemma.score_cache import ScoreCache
from monitor.upstream.client import UpstreamError, UpstreamPool

_MAX_BODY = 1 << 20


class RemoteShieldGemma:
    """A `TextClassifier` asking a completions server. `endpoint` is the server's root URL
    (a trailing `/v1` is accepted too); `model` the name the server knows the model by."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None = None,
        top_logprobs: int = 10,
        max_concurrency: int = 4,
        cache_size: int = 4096,
        connect_timeout_s: float = 2.0,
    ) -> None:
        base = endpoint.rstrip("/")
        self.endpoint = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.top_logprobs = top_logprobs
        self.max_concurrency = max_concurrency
        self.connect_timeout_s = connect_timeout_s
        self.cache = ScoreCache(cache_size)
        self._headers = [("content-type", "application/json"), ("accept", "application/json")]
        if api_key:
            self._headers.append(("authorization", f"Bearer {api_key}"))
        self._pool: UpstreamPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        if urlsplit(self.endpoint).scheme != "http":
            raise ValueError(f"ShieldGemma endpoint must be an http:// URL, not {endpoint!r}")

    @property
    def name(self) -> str:
        return f"shieldgemma:{self.model}"

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        keyed = [(prompt_key(prompt), prompt) for prompt in map(render_prompt, items)]
        return await self.cache.through(keyed, lambda todo: self._ask_all(todo, timeout_s))

    async def _ask_all(self, todo: dict[str, str], timeout_s: float) -> list[float]:
        pool = self._current_pool()
        tasks = [asyncio.ensure_future(self._ask(pool, prompt)) for prompt in todo.values()]
        try:
            async with asyncio.timeout(timeout_s):
                return list(await asyncio.gather(*tasks))
        except TimeoutError:
            raise TimeoutError(
                f"ShieldGemma server at {self.endpoint} gave no answer within {timeout_s:g}s"
            ) from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _ask(self, pool: UpstreamPool, prompt: str) -> float:
        body = orjson.dumps(
            {
                "model": self.model,
                "prompt": prompt,
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": self.top_logprobs,
            }
        )
        try:
            response = await pool.request("POST", "/v1/completions", self._headers, body)
        except UpstreamError as exc:
            raise ClassifierError(f"ShieldGemma server at {self.endpoint}: {exc}") from exc
        try:
            raw = await response.read(_MAX_BODY + 1)
        except UpstreamError as exc:
            raise ClassifierError(f"ShieldGemma server at {self.endpoint}: {exc}") from exc
        finally:
            if response.complete:
                response.release()
            else:
                response.close()
        if response.status >= 400:
            snippet = raw[:200].decode("utf-8", "replace")
            raise ClassifierError(
                f"ShieldGemma server at {self.endpoint} answered {response.status}: {snippet}"
            )
        if len(raw) > _MAX_BODY:
            raise ClassifierError(f"ShieldGemma server at {self.endpoint}: answer too large")
        return p_yes_from_top_logprobs(first_top_logprobs(raw))

    def _current_pool(self) -> UpstreamPool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._pool = UpstreamPool(
                self.endpoint,
                connect_timeout=self.connect_timeout_s,
                read_timeout=300.0,  # the caller's timeout_s is what bounds a call
                max_connections=self.max_concurrency,
            )
            self._pool_loop = loop
        return self._pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._pool_loop is asyncio.get_running_loop():
            await pool.close()
        self.cache.clear()


def first_top_logprobs(raw: bytes) -> dict[str, float]:
    """The top-K {token: logprob} of the first generated token in a completions answer;
    `ClassifierError` if the body is not one."""
    try:
        data: Any = orjson.loads(raw)
        logprobs = data["choices"][0]["logprobs"]
        if isinstance(logprobs.get("top_logprobs"), list):  # legacy completions shape
            first = logprobs["top_logprobs"][0]
            pairs = list(first.items())
        else:  # chat-like shape
            first = logprobs["content"][0]["top_logprobs"]
            pairs = [(entry["token"], entry["logprob"]) for entry in first]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ClassifierError(
            f"not a completions answer with logprobs ({type(exc).__name__}: {exc}): "
            f"{raw[:200].decode('utf-8', 'replace')}"
        ) from exc
    top: dict[str, float] = {}
    for token, logprob in pairs:
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            raise ClassifierError(f"malformed logprob entry {token!r}: {logprob!r}")
        if not math.isnan(logprob):
            top[token] = float(logprob)
    if not top:
        raise ClassifierError("the server returned no top logprobs (was logprobs ignored?)")
    return top
