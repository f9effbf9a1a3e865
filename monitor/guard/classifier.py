"""What the guard asks of a model classifier: P(violation) for (text, harm) questions.

The rules engine (`monitor.guard.engine`) is synchronous and pure; model classifiers are not:
they run a forward pass (in a thread, for the in-process transformers model) or call a server
(the remote one), so they are async, can fail and can time out. The guard on the request path
turns their scores into findings with the check's thresholds, and a failure or timeout into
the check's `on_error` action; a classifier only scores.

One `TextItem` is one ShieldGemma question: one text, one harm policy. On the input stage the
text is the user's prompt; on the output stage it is the model's response to `prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.guard.checks import Harm


class ClassifierError(RuntimeError):
    """The classifier could not score (model failed to load, server error, no Yes/No logprob).

    Timeouts raise `TimeoutError` instead, so the guard can tell them apart in its findings."""


@dataclass(frozen=True, slots=True)
class TextItem:
    """One question: does `prompt` (input) or `response` to `prompt` (output) violate `harm`?"""

    prompt: str
    harm: Harm
    response: str | None = None


class TextClassifier(Protocol):
    """Scores text against harm policies. Shared by every request; safe to call concurrently."""

    @property
    def name(self) -> str:
        """How verdicts name it, e.g. `shieldgemma:google/shieldgemma-2b`."""
        ...

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        """P(violation) in [0, 1] for each item, in order. Raises `ClassifierError`, or
        `TimeoutError` when no answer came within `timeout_s` seconds."""
        ...

    async def aclose(self) -> None:
        """Release the model or connections; the classifier is not used afterwards."""
        ...
