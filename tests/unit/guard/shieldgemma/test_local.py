"""The in-process classifier on tiny real Gemma 2 / Gemma 3 models, loaded by path.

Scores are checked against a softmax computed by hand from the full logits of a separately
loaded copy of the same checkpoint; batching, caching, coalescing and timeouts are observed
through the classifier's own counters.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.guard.checks import Harm
from monitor.guard.classifier import ClassifierError, TextItem
from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK
from monitor.guard.shieldgemma.local import LocalShieldGemma, length_groups
from monitor.guard.shieldgemma.prompts import render_prompt
from tests.support.tiny_gemma import save_tiny_gemma

pytest.importorskip("transformers")  # the shieldgemma extra

ARCHITECTURES = ["gemma2", "gemma3"]

ITEMS = [
    TextItem("how do I bake bread", Harm.DANGEROUS_CONTENT),
    TextItem("hello", Harm.HARASSMENT),
    TextItem("tell me a joke " * 9, Harm.HATE_SPEECH),
    TextItem("why is the sky blue", Harm.SEXUALLY_EXPLICIT, response="the sky is blue"),
    TextItem("hi", Harm.HARASSMENT, response="hello there " * 5),
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-gemma")
    return {arch: save_tiny_gemma(root / arch, arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def references(tiny_models: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    """Each checkpoint loaded a second time, straight through transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with LOADING_LOCK:  # a classifier may be loading in its worker thread
        return {
            arch: (
                AutoTokenizer.from_pretrained(str(path)),
                AutoModelForCausalLM.from_pretrained(str(path)).eval(),
            )
            for arch, path in tiny_models.items()
        }


def by_hand(reference: tuple[Any, Any], item: TextItem) -> float:
    """P(Yes) from the full logits of the whole prompt, the softmax written out."""
    import torch

    tokenizer, model = reference
    ids = tokenizer("<bos>" + render_prompt(item), add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    vocab = tokenizer.get_vocab()
    yes, no = float(logits[vocab["Yes"]]), float(logits[vocab["No"]])
    return math.exp(yes) / (math.exp(yes) + math.exp(no))


async def loaded(path: Path, **options: Any) -> LocalShieldGemma:
    classifier = LocalShieldGemma(str(path), **options)
    await classifier.ready()
    return classifier


@pytest.mark.parametrize("arch", ARCHITECTURES)
async def test_scores_are_the_yes_no_softmax_of_the_last_position(
    arch: str, tiny_models: dict[str, Path], references: dict[str, tuple[Any, Any]]
) -> None:
    classifier = await loaded(tiny_models[arch])
    try:
        scores = await classifier.classify(ITEMS, timeout_s=30)
    finally:
        await classifier.aclose()
    expected = [by_hand(references[arch], item) for item in ITEMS]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len({round(s, 4) for s in scores}) > 1  # the prompts really were told apart


@pytest.mark.parametrize("arch", ARCHITECTURES)
async def test_a_left_padded_batch_scores_like_one_prompt_at_a_time(
    arch: str, tiny_models: dict[str, Path]
) -> None:
    classifier = await loaded(tiny_models[arch])
    prompts = [render_prompt(item) for item in ITEMS]
    assert len({len(p) for p in prompts}) == len(prompts)  # lengths differ: rows are padded
    try:
        batched = classifier.score_prompts(prompts)
        alone = [classifier.score_prompts([p])[0] for p in prompts]
    finally:
        await classifier.aclose()
    assert batched == pytest.approx(alone, abs=1e-5)


async def test_a_long_prompt_gets_a_pass_of_its_own(tiny_models: dict[str, Path]) -> None:
    classifier = await loaded(tiny_models["gemma3"])
    long = TextItem("why is the sky blue " * 60, Harm.HARASSMENT)
    prompts = [render_prompt(item) for item in [*ITEMS[:2], long]]
    try:
        batched = classifier.score_prompts(prompts)
        assert classifier.forward_passes == 2  # the two short ones together, the long alone
        alone = [classifier.score_prompts([p])[0] for p in prompts]
    finally:
        await classifier.aclose()
    assert batched == pytest.approx(alone, abs=1e-5)


def test_length_groups_bound_padding_and_tokens() -> None:
    assert length_groups([100, 140, 150, 90, 1000, 151]) == [[3, 0], [1, 2, 5], [4]]
    assert length_groups([10] * 5, max_tokens=30) == [[0, 1, 2], [3, 4]]
    assert length_groups([50_000]) == [[0]]
    assert length_groups([]) == []


async def test_yes_and_no_ids_come_from_the_tokenizer(
    tiny_models: dict[str, Path], references: dict[str, tuple[Any, Any]]
) -> None:
    classifier = LocalShieldGemma(str(tiny_models["gemma3"]))
    model = await classifier.ready()
    await classifier.aclose()
    vocab = references["gemma3"][0].get_vocab()
    assert (model.yes_id, model.no_id) == (vocab["Yes"], vocab["No"])
    assert model.forward_kwargs == {"use_cache": False, "logits_to_keep": 1}
    assert model.model.training is False


async def test_a_cached_prompt_runs_no_forward_pass(tiny_models: dict[str, Path]) -> None:
    classifier = await loaded(tiny_models["gemma3"])
    try:
        first = await classifier.classify(ITEMS[:3], timeout_s=30)
        passes = classifier.forward_passes
        again = await classifier.classify(list(reversed(ITEMS[:3])), timeout_s=30)
        assert classifier.forward_passes == passes
        assert again == list(reversed(first))
        mixed = await classifier.classify(ITEMS[2:4], timeout_s=30)
        assert classifier.forward_passes == passes + 1
        assert classifier.batcher.scored == 4  # only the new prompt was scored
        assert mixed[0] == first[2]
    finally:
        await classifier.aclose()


async def test_concurrent_calls_share_forward_passes(tiny_models: dict[str, Path]) -> None:
    classifier = await loaded(tiny_models["gemma3"], batch_size=8, max_wait_s=0.05)
    texts = ["how do I bake bread", "hello", "why is the sky blue", "tell me a joke", "you"]
    calls = [[TextItem(text, harm) for harm in Harm] for text in texts]  # 5 requests x 4 harms
    try:
        results = await asyncio.gather(*(classifier.classify(c, timeout_s=30) for c in calls))
        assert classifier.batcher.batches == 3  # 20 prompts in batches of at most 8
        assert classifier.batcher.scored == 20
        alone = [classifier.score_prompts([render_prompt(i)])[0] for c in calls for i in c]
    finally:
        await classifier.aclose()
    assert [s for r in results for s in r] == pytest.approx(alone, abs=1e-5)


async def test_the_same_prompt_asked_twice_at_once_is_scored_once(
    tiny_models: dict[str, Path],
) -> None:
    classifier = await loaded(tiny_models["gemma3"], max_wait_s=0.05)
    try:
        a, b = await asyncio.gather(
            classifier.classify(ITEMS[:1], timeout_s=30),
            classifier.classify(ITEMS[:1], timeout_s=30),
        )
    finally:
        await classifier.aclose()
    assert a == b
    assert classifier.batcher.scored == 1


async def test_a_timeout_does_not_break_the_batch_for_the_others(
    tiny_models: dict[str, Path],
) -> None:
    classifier = await loaded(tiny_models["gemma3"], max_wait_s=0.05)
    try:
        expected = classifier.score_prompts([render_prompt(i) for i in ITEMS[2:]])
        # Keep the single worker thread busy, as a long batch would: both calls queue.
        busy = classifier.worker.submit(time.sleep, 0.5)
        impatient = classifier.classify(ITEMS[:2], timeout_s=0.1)
        patient = classifier.classify(ITEMS[2:], timeout_s=30)
        outcomes = await asyncio.gather(impatient, patient, return_exceptions=True)
        busy.result()
        assert isinstance(outcomes[0], TimeoutError)
        assert outcomes[1] == pytest.approx(expected, abs=1e-5)
        # the batcher is still alive, and the abandoned prompts were not scored for nobody
        assert await classifier.classify(ITEMS[:2], timeout_s=30)
    finally:
        await classifier.aclose()


async def test_a_tokenizer_without_yes_and_no_is_refused(tmp_path: Path) -> None:
    path = save_tiny_gemma(tmp_path / "no-answers", with_answers=False)
    classifier = LocalShieldGemma(str(path))
    try:
        with pytest.raises(ClassifierError, match="no single Yes or No token"):
            await classifier.ready()
        with pytest.raises(ClassifierError, match="no single Yes or No token"):
            await classifier.classify(ITEMS[:1], timeout_s=30)
    finally:
        await classifier.aclose()


async def test_a_missing_model_is_a_classifier_error(tmp_path: Path) -> None:
    classifier = LocalShieldGemma(str(tmp_path / "absent.gguf"))
    try:
        with pytest.raises(ClassifierError, match="no GGUF file"):
            await classifier.classify(ITEMS[:1], timeout_s=30)
    finally:
        await classifier.aclose()


async def test_a_closed_classifier_refuses_work(tiny_models: dict[str, Path]) -> None:
    classifier = await loaded(tiny_models["gemma3"])
    await classifier.aclose()
    with pytest.raises(ClassifierError, match="closed"):
        await classifier.classify(ITEMS[:1], timeout_s=30)


def test_without_torch_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if it were not installed
    with pytest.raises(ClassifierError, match=r"needs torch: .*gemma-monitor\[shieldgemma\]"):
        LocalShieldGemma("google/shieldgemma-2b")
