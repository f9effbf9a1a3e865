"""A bounded least-recently-used map from a prompt's content hash to its score.

The same prompt gets the same score from the same model, and a guard sees the same text
again and again (a system prompt, a retried request, the output stage re-checking a stream's
text at its end), so classifiers keep their recent answers. Used from the event loop only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence


class ScoreCache:
    """At most `size` scores; the least recently read or written goes first. `size` 0: off."""

    def __init__(self, size: int = 4096) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._scores: OrderedDict[str, float] = OrderedDict()

    def get(self, key: str) -> float | None:
        score = self._scores.get(key)
        if score is None:
            self.misses += 1
            return None
        self._scores.move_to_end(key)
        self.hits += 1
        return score

    def put(self, key: str, score: float) -> None:
        if self.size == 0:
            return
        self._scores[key] = score
        self._scores.move_to_end(key)
        while len(self._scores) > self.size:
            self._scores.popitem(last=False)

    async def through(
        self,
        keyed: Sequence[tuple[str, str]],
        score: Callable[[dict[str, str]], Awaitable[list[float]]],
    ) -> list[float]:
        """Scores of (key, prompt) pairs in order: cached ones from here, the others from one
        `score({key: prompt})` call (each distinct prompt once), kept here afterwards."""
        known = {key: found for key, _ in keyed if (found := self.get(key)) is not None}
        todo = {key: prompt for key, prompt in keyed if key not in known}
        if todo:
            for key, found in zip(todo, await score(todo), strict=True):
                self.put(key, found)
                known[key] = found
        return [known[key] for key, _ in keyed]

    def __len__(self) -> int:
        return len(self._scores)

    def clear(self) -> None:
        self._scores.clear()
