"""ShieldGemma in-process: transformers on this machine's CPU or GPU.

Scoring mode, as the model card says: one forward pass, no generation; P(violation) is the
softmax over the Yes and No logits at the last prompt position. Prompts of concurrent
requests and of several harms are left-padded into shared batches (`MicroBatcher`) that run
one at a time in a single worker thread, off the event loop. The model starts loading in
that thread as soon as the classifier is built; `ready()` waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from monitor.guard.classifier import ClassifierError, TextItem
from monitor.guard.shieldgemma.batcher import MicroBatcher
from monitor.guard.shieldgemma.loading import LoadedModel, load, require_extra
from monitor.guard.shieldgemma.prompts import prompt_key, render_prompt
from monitor.guard.shieldgemma.score_cache import ScoreCache


class LocalShieldGemma:
    """A `TextClassifier` running ShieldGemma with transformers in a worker thread.

    `model`: hub id, local folder, or a `.gguf` file. `batch_size`: at most this many prompts
    per forward pass; `max_wait_s`: how long a batch waits to fill; `cache_size`: scores kept
    by prompt hash.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        max_wait_s: float = 0.005,
        cache_size: int = 4096,
        tokenizer_cache: Path | None = None,
    ) -> None:
        require_extra()
        self.model = model
        self.device = device
        self.cache = ScoreCache(cache_size)
        self.model_passes = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shieldgemma")
        self._loading: Future[LoadedModel] = self._executor.submit(
            load, model, device, tokenizer_cache
        )
        self.batcher = MicroBatcher(
            self.score_prompts,
            self._executor,
            batch_size=batch_size,
            max_wait_s=max_wait_s,
            on_scored=self.cache.put,
        )

    @property
    def name(self) -> str:
        return f"shieldgemma:{self.model}"

    @property
    def worker(self) -> ThreadPoolExecutor:
        """The single thread that loads the model and runs every forward pass. Model code run
        elsewhere (a benchmark's) should go through it too: torch's CPU thread pool is per
        calling thread, and two pools on the same cores slow each other down."""
        return self._executor

    @property
    def forward_passes(self) -> int:
        """Forward passes of the model so far (cache hits run none; a batch whose prompts
        differ much in length runs one per length group)."""
        return self.model_passes

    async def ready(self) -> LoadedModel:
        """Wait for the model to load; raises `ClassifierError` if it cannot."""
        return await asyncio.wrap_future(self._loading)

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        keyed = [(prompt_key(prompt), prompt) for prompt in map(render_prompt, items)]
        return await self.cache.through(
            keyed, lambda todo: self.batcher.score(list(todo.items()), timeout_s)
        )

    def score_prompts(self, prompts: list[str]) -> list[float]:
        """P(Yes) for rendered prompts. Blocking: runs in the worker thread (the batcher calls
        it there). Prompts of similar lengths share a left-padded forward pass (`length_groups`),
        so one long prompt does not make every row of a batch as long as itself."""
        loaded = self._loading.result()  # loading ran first on this thread; re-raises its error
        texts = [loaded.bos + prompt for prompt in prompts]
        encoded: list[list[int]] = loaded.tokenizer(texts, add_special_tokens=False)["input_ids"]
        scores = [0.0] * len(prompts)
        for group in length_groups([len(ids) for ids in encoded]):
            found = self._forward(loaded, [encoded[i] for i in group])
            for index, score in zip(group, found, strict=True):
                scores[index] = score
        return scores

    def _forward(self, loaded: LoadedModel, encoded: list[list[int]]) -> list[float]:
        torch: Any = loaded.torch
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), loaded.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        # Positions count real tokens only, so a padded row is computed as if it were alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            output = loaded.model(
                input_ids=input_ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                position_ids=positions.to(loaded.device),
                **loaded.forward_kwargs,
            )
            pair = output.logits[:, -1, [loaded.yes_id, loaded.no_id]].float()
            probabilities = pair.softmax(-1)[:, 0]
        self.model_passes += 1
        if not bool(torch.isfinite(probabilities).all()):
            raise ClassifierError("the model produced non-finite logits")
        return [float(p) for p in probabilities.tolist()]

    async def aclose(self) -> None:
        await self.batcher.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.cache.clear()


def length_groups(
    lengths: list[int], max_ratio: float = 1.5, max_tokens: int = 16384
) -> list[list[int]]:
    """Indexes of `lengths` grouped for padded passes: in a group the longest row is at most
    `max_ratio` times the shortest (so padding is at most a third of it), and rows x longest
    stays within `max_tokens` (a longer prompt goes alone)."""
    groups: list[list[int]] = []
    shortest = longest = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        if (
            groups
            and length <= max_ratio * shortest
            and (len(groups[-1]) + 1) * max(longest, length) <= max_tokens
        ):
            groups[-1].append(index)
            longest = max(longest, length)
        else:
            groups.append([index])
            shortest = longest = length
    return groups
