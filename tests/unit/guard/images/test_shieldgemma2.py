"""ShieldGemma 2 image classifier on a tiny real model: loading by path, P(violation) column,
row order, batching, cache, errors. Only the weights are made up (random, tiny)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from monitor.guard.classifier import ClassifierError
from monitor.guard.images.shieldgemma2 import ShieldGemma2Classifier
from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

POLICIES = ["dangerous", "sexual", "violence"]


def png(color: tuple[int, int, int], size: tuple[int, int] = (24, 16), fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 3):  # some structure, so that images differ beyond their mean
        image.putpixel((x, x % size[1]), (255 - color[0], color[1], 255 - color[2]))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


RED = png((220, 20, 20))
BLUE = png((10, 30, 230), size=(40, 30), fmt="JPEG")
GREEN = png((20, 200, 40), size=(16, 16))


@pytest.fixture
async def classifier(tiny_shieldgemma2: Path) -> Any:
    model = ShieldGemma2Classifier(str(tiny_shieldgemma2), max_batch=12)
    await model.ready()
    yield model
    await model.aclose()


def hand_probabilities(folder: Path, image: bytes, policies: list[str]) -> list[float]:
    """P(Yes) computed by hand: the language model's logits at the last position, softmax over
    the tokenizer's own Yes and No ids (not the ids the classification head was given)."""
    import transformers

    with LOADING_LOCK:  # a classifier may be loading in its worker thread
        processor = transformers.AutoProcessor.from_pretrained(str(folder))
        net = transformers.ShieldGemma2ForImageClassification.from_pretrained(str(folder))
    net.eval()
    yes, no = processor.tokenizer.convert_tokens_to_ids(["Yes", "No"])
    pil = Image.open(io.BytesIO(image)).convert("RGB")
    inputs = processor(images=[pil], policies=policies, return_tensors="pt")
    with torch.inference_mode():
        logits = net.model(**inputs).logits[:, -1, :]
    pair = torch.stack([logits[:, yes], logits[:, no]], dim=-1)
    return torch.softmax(pair.double(), dim=-1)[:, 0].tolist()


async def test_probabilities_are_well_formed_and_column_zero_is_p_yes(
    classifier: ShieldGemma2Classifier, tiny_shieldgemma2: Path
) -> None:
    [result] = await classifier.classify([RED], POLICIES, timeout_s=60)
    assert result.error is None
    assert list(result.scores) == POLICIES
    assert all(0.0 < p < 1.0 for p in result.scores.values())
    expected = hand_probabilities(tiny_shieldgemma2, RED, POLICIES)
    assert [result.scores[p] for p in POLICIES] == pytest.approx(expected, abs=1e-5)
    # and not column 1 (P(No)), which the transformers docstring names
    assert [result.scores[p] for p in POLICIES] != pytest.approx([1 - p for p in expected])


async def test_rows_map_to_image_and_policy_and_batched_equals_one_by_one(
    tiny_shieldgemma2: Path,
) -> None:
    batched = ShieldGemma2Classifier(str(tiny_shieldgemma2), max_batch=12)
    single = ShieldGemma2Classifier(str(tiny_shieldgemma2), max_batch=1)
    try:
        together = await batched.classify([RED, BLUE, GREEN], POLICIES, timeout_s=60)
        assert batched.forward_passes == 1  # 3 images x 3 policies in one pass
        alone = {}
        for name, image in (("red", RED), ("blue", BLUE), ("green", GREEN)):
            for policy in POLICIES:
                [result] = await single.classify([image], [policy], timeout_s=60)
                alone[name, policy] = result.scores[policy]
        assert single.forward_passes == 9
    finally:
        await batched.aclose()
        await single.aclose()
    for name, result in zip(("red", "blue", "green"), together, strict=True):
        for policy in POLICIES:
            assert result.scores[policy] == pytest.approx(alone[name, policy], abs=1e-5)
    # the comparison means something: the nine scores are not all alike
    assert len({round(s, 4) for s in alone.values()}) > 3


async def test_batches_split_at_max_batch_rows(tiny_shieldgemma2: Path) -> None:
    model = ShieldGemma2Classifier(str(tiny_shieldgemma2), max_batch=6)  # two images a pass
    try:
        results = await model.classify([RED, BLUE, GREEN], POLICIES, timeout_s=60)
    finally:
        await model.aclose()
    assert model.forward_passes == 2
    assert [r.error for r in results] == [None, None, None]


async def test_a_subset_of_policies_in_the_given_order(
    classifier: ShieldGemma2Classifier,
) -> None:
    [both] = await classifier.classify([GREEN], ["violence", "dangerous"], timeout_s=60)
    [every] = await classifier.classify([GREEN], POLICIES, timeout_s=60)
    assert list(both.scores) == ["violence", "dangerous"]
    assert both.scores["violence"] == pytest.approx(every.scores["violence"], abs=1e-5)


async def test_cache_by_image_bytes_and_policy(classifier: ShieldGemma2Classifier) -> None:
    first = await classifier.classify([RED, BLUE], POLICIES, timeout_s=60)
    passes = classifier.forward_passes
    again = await classifier.classify([BLUE, RED, RED], POLICIES, timeout_s=60)
    assert classifier.forward_passes == passes  # all cached
    assert again[0].scores == first[1].scores and again[1].scores == first[0].scores
    await classifier.classify([RED, GREEN], POLICIES, timeout_s=60)
    assert classifier.forward_passes == passes + 1  # only GREEN went through the model
    await classifier.classify([png((220, 20, 21))], ["sexual"], timeout_s=60)  # other bytes
    assert classifier.forward_passes == passes + 2


async def test_bytes_that_are_not_an_image_are_an_error_for_that_image_only(
    classifier: ShieldGemma2Classifier,
) -> None:
    results = await classifier.classify(
        [b"GIF89a not really", RED, RED[: len(RED) // 2]], POLICIES, timeout_s=60
    )
    assert results[0].error is not None and "not an image" in results[0].error
    assert results[1].error is None and set(results[1].scores) == set(POLICIES)
    assert results[2].error is not None  # a truncated PNG


async def test_an_image_with_too_many_pixels_is_not_decoded(tiny_shieldgemma2: Path) -> None:
    model = ShieldGemma2Classifier(str(tiny_shieldgemma2), max_pixels=100)
    try:
        [result] = await model.classify([RED], POLICIES, timeout_s=60)
    finally:
        await model.aclose()
    assert result.error is not None and "24x16 pixels" in result.error


async def test_a_policy_the_processor_does_not_have(classifier: ShieldGemma2Classifier) -> None:
    with pytest.raises(ClassifierError, match="no policy hate"):
        await classifier.classify([RED], ["hate"], timeout_s=60)


async def test_timeout_while_the_worker_is_busy(classifier: ShieldGemma2Classifier) -> None:
    """A call that cannot start within its timeout raises TimeoutError; the worker thread is
    held by a job of the test's own (an Event), so no timing is assumed."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    blocker = classifier._executor.submit(
        lambda: asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
    )
    try:
        with pytest.raises(TimeoutError):
            await classifier.classify([GREEN], POLICIES, timeout_s=0.05)
    finally:
        release.set()
        await asyncio.wrap_future(blocker)
    passes = classifier.forward_passes
    [result] = await classifier.classify([GREEN], POLICIES, timeout_s=60)
    assert result.error is None  # the timed-out call was dropped; the classifier still works
    assert classifier.forward_passes == passes + 1


async def test_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    model = ShieldGemma2Classifier(str(tmp_path / "missing"))
    try:
        with pytest.raises(ClassifierError, match="cannot load"):
            await model.ready()
        with pytest.raises(ClassifierError, match="cannot load"):
            await model.classify([RED], POLICIES, timeout_s=60)
    finally:
        await model.aclose()


async def test_concurrent_calls_share_one_worker(classifier: ShieldGemma2Classifier) -> None:
    images = [png((i * 40, 100, 200 - i * 30)) for i in range(4)]
    results = await asyncio.gather(
        *(classifier.classify([image], POLICIES, timeout_s=60) for image in images)
    )
    assert all(r[0].error is None for r in results)


async def test_classifiers_loading_at_the_same_time(tiny_shieldgemma2: Path) -> None:
    """transformers cannot load two models in two threads at once; loads take turns."""
    models = [ShieldGemma2Classifier(str(tiny_shieldgemma2)) for _ in range(3)]
    try:
        await asyncio.gather(*(m.ready() for m in models))
    finally:
        for model in models:
            await model.aclose()


async def test_text_and_image_models_loading_at_the_same_time(
    tiny_shieldgemma2: Path, tmp_path: Path
) -> None:
    """A policy with text and image checks builds both classifiers at once: the text loader
    takes the same lock as the image one."""
    from monitor.guard.shieldgemma.local import LocalShieldGemma
    from tests.support.tiny_gemma import save_tiny_gemma

    text_model = save_tiny_gemma(tmp_path / "text")
    for _ in range(2):
        loading = [
            LocalShieldGemma(str(text_model)),
            ShieldGemma2Classifier(str(tiny_shieldgemma2)),
            LocalShieldGemma(str(text_model)),
        ]
        try:
            await asyncio.gather(*(m.ready() for m in loading))
        finally:
            for model in loading:
                await model.aclose()
