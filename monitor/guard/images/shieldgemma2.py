"""ShieldGemma 2 in process: `ShieldGemma2ForImageClassification` and its processor on images.

- Loaded from a hub id or a local folder in the worker thread, starting when the classifier
  is built; `ready()` waits for it. torch, transformers and Pillow are imported only there,
  and building the classifier without them is a `ClassifierError` naming the `shieldgemma`
  extra, so the rest of the service never needs them.
- One worker thread runs everything heavy (decoding, the processor, the forward pass): the
  event loop never waits on torch, and concurrent requests queue instead of oversubscribing the
  cores. `classify` waits at most `timeout_s`; a call still queued when its caller gives up is
  dropped, and a forward pass already running finishes and fills the cache.
- Batched: a call's images that are not cached, times the policies, go through in forward
  passes of at most `max_batch` rows. The processor orders rows image-major (img1·policy1 …
  img1·policyN, img2·policy1 …), and P(violation) is `probabilities[:, 0]`, P(Yes). (The
  transformers docstring says `[:, 1]`; that column is P(No).)
- Cached: P(violation) per (sha256 of the image's bytes, policy), least recently used out.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from monitor.guard.classifier import ClassifierError
from monitor.guard.images.check import ImageScores
from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK

EXTRA_HINT = (
    "the ShieldGemma 2 image classifier needs torch, transformers and Pillow: "
    "install the `shieldgemma` extra (pip install 'gemma-monitor[shieldgemma]')"
)
_HASH_INLINE_BYTES = 256 * 1024  # above this, hash in a thread (hashlib releases the GIL)
_RETRY_LOAD_AFTER_S = 30.0


@dataclass(slots=True)
class _Loaded:
    torch: Any
    image_module: Any  # PIL.Image
    model: Any
    processor: Any
    policies: frozenset[str]


class ShieldGemma2Classifier:
    """ShieldGemma 2 image classification, shared by every request (one per model)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        max_batch: int = 12,
        max_pixels: int = 40_000_000,
        cache_size: int = 4096,
    ) -> None:
        """`device`: `cpu`, `cuda`, `cuda:1` ... `dtype`: a torch dtype name (None: bfloat16
        on a GPU, float32 on the CPU). `max_batch`: rows (image, policy) per forward pass.
        `max_pixels`: larger images are not decoded. Raises `ClassifierError` without the
        `shieldgemma` extra."""
        missing = [
            m for m in ("torch", "transformers", "PIL") if importlib.util.find_spec(m) is None
        ]
        if missing:
            raise ClassifierError(f"{EXTRA_HINT} (missing: {', '.join(missing)})")
        self.model_id = model
        self.device = device
        self.dtype = dtype
        self.max_batch = max(1, max_batch)
        self.max_pixels = max_pixels
        self.cache_size = cache_size
        self.forward_passes = 0  # how many batches ran: what batching and the cache save
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shieldgemma2")
        self._cache: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._loaded: _Loaded | None = None  # the worker thread's alone
        self._load_failed: tuple[float, str] | None = None
        self._loading: Future[_Loaded] = self._executor.submit(self._ensure_loaded)

    @property
    def name(self) -> str:
        return f"shieldgemma2:{self.model_id}"

    async def ready(self) -> None:
        """Wait until the model has loaded; raises `ClassifierError` if it could not."""
        await asyncio.wrap_future(self._loading)

    async def classify(
        self, images: Sequence[bytes], policies: Sequence[str], timeout_s: float
    ) -> list[ImageScores]:
        """P(violation) per policy for each image, in order; an image Pillow cannot read gets
        its `error` instead. Raises `ClassifierError`, or `TimeoutError` after `timeout_s`."""
        if not images:
            return []
        policies = list(dict.fromkeys(policies))
        async with asyncio.timeout(timeout_s):
            if sum(len(i) for i in images) > _HASH_INLINE_BYTES:
                keys = await asyncio.to_thread(_hashes, images)
            else:
                keys = _hashes(images)
            results: dict[str, ImageScores] = {}
            missing: dict[str, bytes] = {}
            with self._cache_lock:
                for key, data in zip(keys, images, strict=True):
                    cached = self._cached(key, policies)
                    if cached is not None:
                        results[key] = ImageScores(cached)
                    else:
                        missing[key] = data
            if missing:
                job: Future[dict[str, ImageScores]]
                job = self._executor.submit(self._score, missing, policies)
                scored = await asyncio.wrap_future(job)
                results.update(scored)
        return [results[key] for key in keys]

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # the cache (callers hold the lock)
    def _cached(self, key: str, policies: Sequence[str]) -> dict[str, float] | None:
        found = {}
        for policy in policies:
            score = self._cache.get((key, policy))
            if score is None:
                return None
            self._cache.move_to_end((key, policy))
            found[policy] = score
        return found

    def _remember(self, key: str, scores: dict[str, float]) -> None:
        for policy, score in scores.items():
            self._cache[(key, policy)] = score
            self._cache.move_to_end((key, policy))
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # the worker thread
    def _score(self, images: dict[str, bytes], policies: list[str]) -> dict[str, ImageScores]:
        loaded = self._ensure_loaded()
        unknown = [p for p in policies if p not in loaded.policies]
        if unknown:
            raise ClassifierError(
                f"{self.model_id} has no policy {', '.join(unknown)} "
                f"(its processor has {', '.join(sorted(loaded.policies))})"
            )
        results: dict[str, ImageScores] = {}
        decoded: list[tuple[str, Any]] = []
        for key, data in images.items():
            image = self._decode(loaded, data)
            if isinstance(image, str):
                results[key] = ImageScores({}, error=image)
            else:
                decoded.append((key, image))
        per_pass = max(1, self.max_batch // len(policies))
        for start in range(0, len(decoded), per_pass):
            chunk = decoded[start : start + per_pass]
            rows = self._forward(loaded, [image for _, image in chunk], policies)
            with self._cache_lock:
                for (key, _), row in zip(chunk, rows, strict=True):
                    scores = dict(zip(policies, row, strict=True))
                    self._remember(key, scores)
                    results[key] = ImageScores(scores)
        return results

    def _forward(
        self, loaded: _Loaded, images: list[Any], policies: list[str]
    ) -> list[list[float]]:
        """P(Yes) for each (image, policy), as one row of len(policies) per image."""
        torch = loaded.torch
        try:
            inputs = loaded.processor(images=images, policies=policies, return_tensors="pt")
            inputs = inputs.to(loaded.model.device, dtype=loaded.model.dtype)
            with torch.inference_mode():
                output = loaded.model(**inputs)
            probabilities = output.probabilities.float().cpu()
        except Exception as exc:  # any failure inside the model is the classifier failing
            raise ClassifierError(f"forward pass failed: {exc.__class__.__name__}: {exc}") from exc
        self.forward_passes += 1
        expected = (len(images) * len(policies), 2)
        if tuple(probabilities.shape) != expected:
            raise ClassifierError(
                f"the model answered {tuple(probabilities.shape)} probabilities for "
                f"{len(images)} image(s) x {len(policies)} policies; expected {expected}"
            )
        violation = probabilities[:, 0].tolist()  # column 0: P(Yes), the image violates
        width = len(policies)
        return [violation[i * width : (i + 1) * width] for i in range(len(images))]

    def _decode(self, loaded: _Loaded, data: bytes) -> Any:
        """An RGB Pillow image, or why the bytes are not one (a str)."""
        pil = loaded.image_module
        try:
            with pil.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    return f"the image has {width}x{height} pixels; at most {self.max_pixels} are checked"
                return image.convert("RGB")
        # Hostile bytes make Pillow's decoders raise nearly anything (OSError, SyntaxError,
        # ValueError, struct.error, DecompressionBombError ...): all mean "not an image".
        except Exception as exc:
            return f"not an image Pillow can read ({exc.__class__.__name__})"

    def _ensure_loaded(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        if self._load_failed is not None:
            failed_at, message = self._load_failed
            if time.monotonic() - failed_at < _RETRY_LOAD_AFTER_S:
                raise ClassifierError(message)
        try:
            import torch
            import transformers
            from PIL import Image
        except ImportError as exc:
            raise ClassifierError(f"{EXTRA_HINT}: {exc}") from exc
        try:
            dtype = getattr(torch, self.dtype) if self.dtype else (
                torch.float32 if self.device == "cpu" else torch.bfloat16
            )  # fmt: skip
            hf: Any = transformers  # untyped calls, kept in one place
            with LOADING_LOCK:
                processor = hf.AutoProcessor.from_pretrained(self.model_id)
                model = hf.ShieldGemma2ForImageClassification.from_pretrained(
                    self.model_id, **{_dtype_argument(hf.__version__): dtype}
                )
                model.to(self.device).eval()
        except Exception as exc:  # a missing folder, no network, bad weights: all the same here
            message = f"cannot load {self.model_id}: {exc.__class__.__name__}: {exc}"
            self._load_failed = (time.monotonic(), message)
            raise ClassifierError(message) from exc
        policies = frozenset(getattr(processor, "policy_definitions", None) or ())
        if not policies:
            raise ClassifierError(f"{self.model_id}: the processor is not ShieldGemma 2's")
        self._loaded = _Loaded(torch, Image, model, processor, policies)
        return self._loaded


def _hashes(images: Sequence[bytes]) -> list[str]:
    return [hashlib.sha256(data).hexdigest() for data in images]


def _dtype_argument(version: str) -> str:
    """`dtype` from transformers 4.56; `torch_dtype` before."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return "dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
