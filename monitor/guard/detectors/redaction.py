"""What a detector reports (`Hit`: a rule matched a span of a text) and how hits are taken
out of the text (`redact`). Detectors never decide actions: the engine turns hits into
findings with the action the policy gives their check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hit:
    """One match of one rule: `text[start:end]` is to be replaced by `replacement`."""

    rule: str
    category: str
    start: int
    end: int
    replacement: str = ""
    score: float | None = None
    detail: str | None = None


def redact(text: str, hits: Sequence[Hit]) -> str:
    """`text` with every hit's span replaced by its replacement.

    Overlapping hits are merged into one span that takes the replacement of the hit that
    starts first (the longer one when two start together), so nothing of either survives.
    """
    if not hits:
        return text
    ordered = sorted(hits, key=lambda h: (h.start, -h.end))
    pieces: list[str] = []
    position = 0
    current_end = -1
    for hit in ordered:
        if hit.start < current_end:  # overlaps the span being replaced: widen it
            current_end = max(current_end, hit.end)
            continue
        if current_end >= 0:
            position = current_end
        pieces.append(text[position : hit.start])
        pieces.append(hit.replacement)
        current_end = hit.end
    pieces.append(text[max(position, current_end) :])
    return "".join(pieces)
