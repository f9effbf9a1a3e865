"""Builds the text classifier a `shieldgemma` check asks for, one per model.

Checks naming the same model, endpoint and device share one classifier: one loaded copy of
the weights, one batcher, one cache, across stages and across policy reloads. In-process
when the check has no `endpoint`, remote otherwise.

`build` hands out a reference to the shared classifier; closing a reference releases it,
and the classifier itself closes with its last reference. So a guard may close what it was
given (an old policy's guard does at a reload) without pulling the model from under a newer
guard, and a reload to a policy naming the same model does not load it again.
`TextClassifiers.aclose()` closes everything at shutdown.

The composition root keeps a `TextClassifiers`; `build_text_classifier` and
`aclose_text_classifiers` do the same on a process-wide set, for callers with no root to keep
one in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from monitor.guard.checks import ShieldGemmaCheck
from monitor.guard.classifier import ClassifierError, TextClassifier, TextItem

Key = tuple[str, str | None, str]


class SharedClassifier:
    """One reference to a shared classifier; a `TextClassifier` itself."""

    def __init__(self, owner: TextClassifiers, key: Key, classifier: TextClassifier) -> None:
        self._owner = owner
        self._key = key
        self.classifier = classifier
        self._closed = False

    @property
    def name(self) -> str:
        return self.classifier.name

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        if self._closed:
            raise ClassifierError(f"{self.name}: used after aclose()")
        return await self.classifier.classify(items, timeout_s)

    async def ready(self) -> None:
        """Wait until the classifier can answer (the in-process model has loaded); raises
        `ClassifierError` if it never will. A remote classifier is ready at once."""
        wait = getattr(self.classifier, "ready", None)
        if wait is not None:
            await wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._owner._release(self._key)


class TextClassifiers:
    """The classifiers built so far, by (model, endpoint, device), with their reference counts."""

    def __init__(self) -> None:
        self._built: dict[Key, TextClassifier] = {}
        self._references: dict[Key, int] = {}

    def build(self, check: ShieldGemmaCheck) -> SharedClassifier:
        """A reference to the classifier for `check`, built on first use. Raises
        `ClassifierError` when the in-process one lacks torch/transformers or the API key
        variable is unset, `ValueError` for a bad endpoint."""
        endpoint = check.endpoint.rstrip("/") if check.endpoint else None
        key: Key = (check.model, endpoint, "remote" if endpoint else check.device)
        classifier = self._built.get(key)
        if classifier is None:
            classifier = _new_classifier(check, endpoint)
            self._built[key] = classifier
        self._references[key] = self._references.get(key, 0) + 1
        return SharedClassifier(self, key, classifier)

    def __len__(self) -> int:
        return len(self._built)

    async def _release(self, key: Key) -> None:
        count = self._references.get(key, 0) - 1
        if count > 0:
            self._references[key] = count
            return
        self._references.pop(key, None)
        classifier = self._built.pop(key, None)
        if classifier is not None:
            await classifier.aclose()

    async def aclose(self) -> None:
        """Close every classifier, referenced or not; the set is empty afterwards."""
        built, self._built = self._built, {}
        self._references.clear()
        errors: list[BaseException] = []
        for classifier in built.values():
            try:
                await classifier.aclose()
            except Exception as exc:  # close the others anyway, then report
                errors.append(exc)
        if errors:
            raise ClassifierError(f"closing {len(errors)} classifier(s) failed: {errors[0]}")


def _new_classifier(check: ShieldGemmaCheck, endpoint: str | None) -> TextClassifier:
    if endpoint is not None:
        from monitor.guard.shieldgemma.remote import RemoteShieldGemma

        api_key = None
        if check.api_key_env:
            api_key = os.environ.get(check.api_key_env)
            if not api_key:
                raise ClassifierError(
                    f"the ShieldGemma server's API key variable {check.api_key_env} is unset"
                )
        return RemoteShieldGemma(
            endpoint, check.model, api_key=api_key, top_logprobs=check.top_logprobs
        )
    from monitor.guard.shieldgemma.local import LocalShieldGemma

    return LocalShieldGemma(check.model, device=check.device, batch_size=check.batch_size)


_default: TextClassifiers | None = None


def build_text_classifier(check: ShieldGemmaCheck) -> SharedClassifier:
    """A reference to the shared classifier for `check` from the process-wide set."""
    global _default
    if _default is None:
        _default = TextClassifiers()
    return _default.build(check)


async def aclose_text_classifiers() -> None:
    """Close every classifier `build_text_classifier` built."""
    global _default
    classifiers, _default = _default, None
    if classifiers is not None:
        await classifiers.aclose()
