"""A stand-in for the ShieldGemma model in wiring tests: deterministic scores from keywords.

`KeywordClassifier` implements `TextClassifier` the way the real classifiers do (async,
shared by every request, closed once); only the model is replaced, so the guard, the proxy
and the store around it are the real ones. It judges the response when there is one, the
prompt otherwise, and remembers every call so tests can see what the guard asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.guard.checks import Harm, ShieldGemmaCheck
from monitor.guard.classifier import ClassifierError, TextItem

# keyword -> P(Yes) per harm; every other (text, harm) scores BASELINE
KEYWORDS: dict[str, dict[Harm, float]] = {
    "bomb": {Harm.DANGEROUS_CONTENT: 0.97},
    "borderline": {Harm.DANGEROUS_CONTENT: 0.42},
    "idiot": {Harm.HARASSMENT: 0.65},
}
BASELINE = 0.01


class KeywordClassifier:
    """Scores from `KEYWORDS`; `mode` `error` raises `ClassifierError`, `hang` never answers."""

    def __init__(
        self,
        name: str,
        mode: str = "ok",
        keywords: Mapping[str, Mapping[Harm, float]] = KEYWORDS,
    ) -> None:
        self._name = name
        self.mode = mode
        self.keywords = keywords
        self.calls: list[list[TextItem]] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        if self.closed:
            raise ClassifierError(f"{self.name}: used after aclose()")
        self.calls.append(list(items))
        if self.mode == "error":
            raise ClassifierError("scripted failure: server answered 503")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        return [self._score(item) for item in items]

    def _score(self, item: TextItem) -> float:
        text = (item.response if item.response is not None else item.prompt).lower()
        found = [s.get(item.harm, BASELINE) for word, s in self.keywords.items() if word in text]
        return max(found, default=BASELINE)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class KeywordFactory:
    """A `ClassifierFactory`: one `KeywordClassifier` per check it is asked for, named after
    the check's model, all kept in `built` (in order)."""

    mode: str = "ok"
    built: list[KeywordClassifier] = field(default_factory=list)

    def __call__(self, check: ShieldGemmaCheck) -> KeywordClassifier:
        classifier = KeywordClassifier(f"keywords:{check.model}", self.mode)
        self.built.append(classifier)
        return classifier

    @property
    def calls(self) -> list[list[TextItem]]:
        return [call for classifier in self.built for call in classifier.calls]
