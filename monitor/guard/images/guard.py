"""A policy's image checks (`shieldgemma2`) beside the rest of its input stage.

`ImageGuard(policy)` builds one image classifier per model (checks naming the same model and
device share it) and `check_input(rest, images)` runs the image checks while `rest` (the rules
and the text model checks: an awaitable input `Verdict`) runs, then merges: one `Verdict` with
every finding, the strongest action, `classifier` naming what ran and `latency_us` the wall
time of the whole stage. When `rest` blocks, the image checks are cancelled and the rules'
verdict stands alone: a blocked request costs no image classification it does not need (a
forward pass already running finishes, and its scores are cached).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from monitor.guard.checks import ShieldGemma2Check
from monitor.guard.images.check import Fetch, ImageClassifier, check_images
from monitor.guard.images.parts import ImageRef
from monitor.guard.policy import Policy
from monitor.guard.verdict import Action, Finding, Verdict, strongest

ImageClassifierFactory = Callable[[ShieldGemma2Check], ImageClassifier]


def default_image_classifier(check: ShieldGemma2Check) -> ImageClassifier:
    """ShieldGemma 2 in process (imported only when a policy has an image check). Raises
    `ClassifierError` without the `shieldgemma` extra."""
    from monitor.guard.images.shieldgemma2 import ShieldGemma2Classifier

    return ShieldGemma2Classifier(check.model, device=check.device, max_batch=check.batch_size)


class ImageGuard:
    """One policy's `shieldgemma2` checks and their classifiers. Build once per policy."""

    def __init__(
        self,
        policy: Policy,
        classifiers: ImageClassifierFactory | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        factory = classifiers or default_image_classifier
        self.fetch = fetch
        shared: dict[tuple[str, str, int], ImageClassifier] = {}
        self.checks: list[tuple[ShieldGemma2Check, ImageClassifier]] = []
        for check in policy.input.checks:
            if isinstance(check, ShieldGemma2Check):
                key = (check.model, check.device, check.batch_size)
                if key not in shared:
                    shared[key] = factory(check)
                self.checks.append((check, shared[key]))
        self.classifiers = list(shared.values())
        self.max_image_bytes = max((c.max_image_bytes for c, _ in self.checks), default=0)
        self._keys = frozenset(check.key for check, _ in self.checks)

    @property
    def enabled(self) -> bool:
        return bool(self.checks)

    async def check_input(self, rest: Awaitable[Verdict], images: Sequence[ImageRef]) -> Verdict:
        """`rest` and the image checks over `images`, concurrently, as one verdict."""
        started = time.perf_counter_ns()
        if not self.checks or not images:
            return (await rest).without_skipped(self._keys)
        task = asyncio.get_running_loop().create_task(self._run(images))
        try:
            verdict = await rest
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        if verdict.blocked:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return verdict.without_skipped(self._keys)
        found, names = await task
        findings = verdict.findings + tuple(found)
        action = strongest(f.action for f in findings)
        return Verdict(
            verdict.stage,
            verdict.policy,
            action,
            findings,
            redacted_messages=verdict.redacted_messages if action is Action.REDACT else None,
            latency_us=(time.perf_counter_ns() - started) // 1000,
            classifier="+".join(dict.fromkeys([verdict.classifier, *names])),
            skipped=verdict.without_skipped(self._keys).skipped,
            findings_omitted=verdict.findings_omitted,
        )

    async def ready(self) -> None:
        """Wait until every classifier can answer (its model has loaded); raises
        `ClassifierError` if one never will."""
        for classifier in self.classifiers:
            wait = getattr(classifier, "ready", None)
            if wait is not None:
                await wait()

    async def aclose(self) -> None:
        classifiers, self.classifiers = self.classifiers, []
        await asyncio.gather(*(c.aclose() for c in classifiers))

    async def _run(self, images: Sequence[ImageRef]) -> tuple[list[Finding], list[str]]:
        results = await asyncio.gather(
            *(
                check_images(check, images, classifier, self.fetch)
                for check, classifier in self.checks
            )
        )
        return [f for findings in results for f in findings], [c.name for _, c in self.checks]
