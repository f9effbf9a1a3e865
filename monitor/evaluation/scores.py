"""Classification metrics for guard evaluation: a confusion matrix with the rates read off it,
and average precision (the area under the precision-recall curve) for scored guards.

"Positive" means unsafe throughout: recall is the catch rate, and the over-block rate is the
false-positive rate (safe items blocked). A rate whose denominator is zero is None, not 0,
so that "nothing to measure" never reads as a perfect or a failed score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby


@dataclass(slots=True)
class Confusion:
    true_positives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    false_negatives: int = 0

    def add(self, unsafe: bool, blocked: bool) -> None:
        if unsafe and blocked:
            self.true_positives += 1
        elif unsafe:
            self.false_negatives += 1
        elif blocked:
            self.false_positives += 1
        else:
            self.true_negatives += 1

    @property
    def total(self) -> int:
        return self.positives + self.negatives

    @property
    def positives(self) -> int:
        return self.true_positives + self.false_negatives

    @property
    def negatives(self) -> int:
        return self.false_positives + self.true_negatives

    @property
    def precision(self) -> float | None:
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def recall(self) -> float | None:
        return _ratio(self.true_positives, self.positives)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None if p is None or r is None else 0.0
        return 2 * p * r / (p + r)

    @property
    def over_block(self) -> float | None:
        return _ratio(self.false_positives, self.negatives)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.total,
            "unsafe": self.positives,
            "safe": self.negatives,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "true_negatives": self.true_negatives,
            "false_negatives": self.false_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "over_block_rate": self.over_block,
        }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def average_precision(scored: Iterable[tuple[float, bool]]) -> float | None:
    """Area under the precision-recall curve, as the step sum sum_k (R_k - R_{k-1}) P_k over
    the distinct score thresholds, highest first (items with equal scores enter together).
    None when there is no unsafe item."""
    ordered = sorted(scored, key=lambda pair: -pair[0])
    positives = sum(1 for _, unsafe in ordered if unsafe)
    if positives == 0:
        return None
    seen = hits = 0
    area = 0.0
    previous_recall = 0.0
    for _, group in groupby(ordered, key=lambda pair: pair[0]):
        members = list(group)
        seen += len(members)
        hits += sum(1 for _, unsafe in members if unsafe)
        recall = hits / positives
        area += (recall - previous_recall) * (hits / seen)
        previous_recall = recall
    return area
