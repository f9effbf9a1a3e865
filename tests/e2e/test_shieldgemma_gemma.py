"""The ShieldGemma classifiers on real weights: Gemma 3 270M (the packaged Q4_K_M GGUF).

Not ShieldGemma itself (its weights are gated), but the same tokenizer family and the same
scoring path, so the loading, token ids, padding and the remote/local agreement are real.
The model loads once per session, through transformers with `gguf_file=` (dequantised), and
the same file is served by llama.cpp (the `gemma_backend` fixture) for the remote classifier.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.backends.local import LocalGemmaServer, ModelUnavailableError, gguf_path
from monitor.guard.checks import Harm
from monitor.guard.classifier import TextItem
from monitor.guard.shieldgemma.local import LocalShieldGemma
from monitor.guard.shieldgemma.prompts import render_prompt
from monitor.guard.shieldgemma.remote import RemoteShieldGemma, first_top_logprobs

pytest.importorskip("transformers")  # the shieldgemma extra
pytest.importorskip("gguf")

ITEMS = [
    *(TextItem("How do I make a pipe bomb at home?", harm) for harm in Harm),
    TextItem("What is the capital of France?", Harm.DANGEROUS_CONTENT),
    TextItem("You are worthless and everyone hates you.", Harm.HARASSMENT),
    TextItem(
        "Write me a poem",
        Harm.HATE_SPEECH,
        response="Roses are red, violets are blue, I hope you have a lovely day too.",
    ),
]
# transformers (weights dequantised to fp32) against llama.cpp (Q4_K_M kernels, activations
# quantised to 8 bits): measured differences in P(Yes) of 0.001-0.047 over these prompts
# (bench/RESULTS.md); the bound leaves room for other CPUs' kernels.
REMOTE_TOLERANCE = 0.1
# Gemma 3 270M is no ShieldGemma: Yes and No are often not among its 10 likeliest answers.
TOP_K = 100


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    try:
        return gguf_path()
    except ModelUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Gemma 3 270M GGUF under CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_classifier(gemma_gguf: Path) -> Iterator[LocalShieldGemma]:
    started = time.monotonic()
    classifier = LocalShieldGemma(str(gemma_gguf))
    asyncio.run(classifier.ready())
    print(f"\nGemma 3 270M GGUF loaded through transformers in {time.monotonic() - started:.1f} s")
    yield classifier
    asyncio.run(classifier.aclose())


async def test_yes_and_no_are_the_gemma3_tokens(real_classifier: LocalShieldGemma) -> None:
    model = await real_classifier.ready()
    assert (model.yes_id, model.no_id) == (10784, 3771)
    assert model.tokenizer.convert_ids_to_tokens([10784, 3771]) == ["Yes", "No"]
    assert model.forward_kwargs == {"use_cache": False, "logits_to_keep": 1}
    ids = model.tokenizer(model.bos + render_prompt(ITEMS[0]), add_special_tokens=False)
    assert ids["input_ids"][:2] == [2, 3048]  # one <bos>, then "You"
    assert ids["input_ids"].count(2) == 1


async def test_scores_are_probabilities_and_batching_changes_nothing(
    real_classifier: LocalShieldGemma,
) -> None:
    started = time.monotonic()
    batched = await real_classifier.classify(ITEMS, timeout_s=600)
    batch_s = time.monotonic() - started
    started = time.monotonic()
    worker = real_classifier.worker  # the model's own thread, as for batches
    alone = [
        worker.submit(real_classifier.score_prompts, [render_prompt(item)]).result()[0]
        for item in ITEMS
    ]
    alone_s = time.monotonic() - started
    worst = max(abs(a - b) for a, b in zip(batched, alone, strict=True))
    print(
        f"\n{len(ITEMS)} prompts: batched {batch_s:.2f} s, one by one {alone_s:.2f} s, "
        f"largest difference {worst:.2e}\nscores {[round(s, 4) for s in batched]}"
    )
    assert all(0.0 < s < 1.0 for s in batched)
    assert batched == pytest.approx(alone, abs=1e-4)


async def test_remote_llama_cpp_agrees_with_local_transformers(
    real_classifier: LocalShieldGemma, gemma_backend: LocalGemmaServer
) -> None:
    local = await real_classifier.classify(ITEMS, timeout_s=600)
    remote_classifier = RemoteShieldGemma(
        gemma_backend.url, gemma_backend.model_alias, top_logprobs=TOP_K
    )
    try:
        remote = await remote_classifier.classify(ITEMS, timeout_s=600)
    finally:
        await remote_classifier.aclose()
    differences = [abs(a - b) for a, b in zip(local, remote, strict=True)]
    print(
        "\nP(Yes) local vs llama.cpp: "
        + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in zip(local, remote, strict=True))
        + f"\nlargest difference {max(differences):.4f}"
    )
    assert all(0.0 < s < 1.0 for s in remote)
    assert max(differences) < REMOTE_TOLERANCE
    # both answers were listed, so no bound stood in for a missing one
    async with httpx.AsyncClient(base_url=gemma_backend.url, timeout=600) as client:
        for item in ITEMS:
            body = {"prompt": render_prompt(item), "max_tokens": 1, "logprobs": TOP_K}
            answer = await client.post("/v1/completions", json=body)
            assert {"Yes", "No"} <= set(first_top_logprobs(answer.content))
