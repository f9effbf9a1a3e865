"""The `shieldgemma2` check: a request's images scored by an image classifier, as findings.

`check_images(check, images, classifier, fetch)` is the whole check. It reads the images the
request carries (`monitor.guard.images.parts`), fetches URL images only when the policy says
`fetch_urls: true` (with the `fetch` the proxy hands in: this package speaks no HTTP), scores
every readable image against the check's policies in one classifier call, and returns:

- one finding per (image, policy): rule `shieldgemma2.<policy>`, category the policy, the
  score, and the check's action when the score reaches its threshold (`allow` below: near
  misses are what thresholds are tuned with);
- one finding per image that could not be checked, category `classifier` like the text
  checks' failures, with the reason in `detail`: `unreadable` (bad base64, not an image, too
  large), `fetch_failed`, `too_many_images`, `error` and `timeout` take `on_error` (`block`,
  or `flag` for `allow`: the record shows the image went through unjudged); `not_fetched`, a
  URL left alone because `fetch_urls` is off, takes `unfetched_urls`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.guard.checks import ShieldGemma2Check
from monitor.guard.classifier import ClassifierError
from monitor.guard.images.parts import ImageRef
from monitor.guard.verdict import Action, Finding

CATEGORY = "classifier"  # as `monitor.guard.model_guard` files the text checks' failures


class ImageFetchError(Exception):
    """An image URL could not be fetched: refused, failed, not 200, too large, timed out."""


Fetch = Callable[[str, int, float], Awaitable[bytes]]
"""`fetch(url, max_bytes, timeout_s)`: the image's bytes, or `ImageFetchError`."""


@dataclass(frozen=True, slots=True)
class ImageScores:
    """One image's P(violation) per policy, or why it was not scored (`error`: not an image)."""

    scores: Mapping[str, float]
    error: str | None = None


class ImageClassifier(Protocol):
    """Scores images against image policies. Shared by every request; safe to call concurrently."""

    @property
    def name(self) -> str:
        """How verdicts name it, e.g. `shieldgemma2:google/shieldgemma-2-4b-it`."""
        ...

    async def classify(
        self, images: Sequence[bytes], policies: Sequence[str], timeout_s: float
    ) -> list[ImageScores]:
        """One `ImageScores` per image, in order. Raises `ClassifierError`, or `TimeoutError`
        when no answer came within `timeout_s` seconds."""
        ...

    async def aclose(self) -> None:
        """Release the model; the classifier is not used afterwards."""
        ...


async def check_images(
    check: ShieldGemma2Check,
    images: Sequence[ImageRef],
    classifier: ImageClassifier,
    fetch: Fetch | None = None,
) -> list[Finding]:
    """The findings of one `shieldgemma2` check over a request's images (none: no findings)."""
    on_error = Action.BLOCK if check.on_error == "block" else Action.FLAG
    findings: list[Finding] = []

    def unchecked(rule: str, image: ImageRef | None, detail: str, action: Action) -> None:
        path = image.path if image is not None else None
        findings.append(Finding(f"shieldgemma2.{rule}", CATEGORY, action, check.key, path,
                                detail=detail))  # fmt: skip

    wanted = [i for i in images if check.roles is None or i.role in check.roles]
    if len(wanted) > check.max_images:
        extra = len(wanted) - check.max_images
        detail = f"{extra} image(s) from here on not checked: at most {check.max_images} are"
        unchecked("too_many_images", wanted[check.max_images], detail, on_error)
        wanted = wanted[: check.max_images]

    readable: list[tuple[ImageRef, bytes]] = []
    to_fetch: list[ImageRef] = []
    for image in wanted:
        if image.error is not None:
            unchecked("unreadable", image, image.error, on_error)
        elif image.data is not None and len(image.data) > check.max_image_bytes:
            detail = f"the image is larger than {check.max_image_bytes} bytes"
            unchecked("unreadable", image, detail, on_error)
        elif image.data is not None:
            readable.append((image, image.data))
        elif image.url is not None and check.fetch_urls and fetch is not None:
            to_fetch.append(image)
        else:
            action = Action.BLOCK if check.unfetched_urls == "block" else Action.FLAG
            detail = "an image URL, not fetched (fetch_urls is off): not checked"
            unchecked("not_fetched", image, detail, action)

    if to_fetch:
        assert fetch is not None
        fetched = await asyncio.gather(*(_fetch(fetch, i, check) for i in to_fetch))
        for image, (data, error) in zip(to_fetch, fetched, strict=True):
            if data is not None:
                readable.append((image, data))
            else:
                unchecked("fetch_failed", image, error or "fetch failed", on_error)

    if not readable:
        return findings
    policies = check.thresholds()
    try:
        results = await classifier.classify(
            [data for _, data in readable], [p.value for p in policies], check.timeout_s
        )
    except TimeoutError:
        detail = f"{classifier.name} gave no answer within {check.timeout_s:g}s"
        for image, _ in readable:
            unchecked("timeout", image, detail, on_error)
        return findings
    except ClassifierError as exc:
        for image, _ in readable:
            unchecked("error", image, f"{classifier.name}: {exc}", on_error)
        return findings

    for (image, _), result in zip(readable, results, strict=True):
        if result.error is not None:
            unchecked("unreadable", image, result.error, on_error)
            continue
        for policy, threshold in policies.items():
            score = result.scores[policy.value]
            action = Action(check.action) if score >= threshold else Action.ALLOW
            findings.append(
                Finding(f"shieldgemma2.{policy.value}", policy.value, action, check.key,
                        image.path, score=score)
            )  # fmt: skip
    return findings


async def _fetch(
    fetch: Fetch, image: ImageRef, check: ShieldGemma2Check
) -> tuple[bytes | None, str | None]:
    assert image.url is not None
    try:
        data = await fetch(image.url, check.max_image_bytes, check.fetch_timeout_s)
    except ImageFetchError as exc:
        return None, str(exc)
    if len(data) > check.max_image_bytes:
        return None, f"the image is larger than {check.max_image_bytes} bytes"
    return data, None
