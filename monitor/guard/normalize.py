"""Unicode normalisation for matching, with a way back to the original offsets.

Deny lists and injection patterns match a folded form of the text: NFKC (full-width
`\\uff42\\uff4f\\uff4d\\uff42` becomes `bomb`, ligatures split), casefold (`BOMB`, `Straße`), and every invisible
format character (category Cf: zero-width space and joiners, soft hyphen, bidi controls,
BOM) removed, so `b\\u200bomb` is `bomb` too. Findings must point into the original text,
so the folded text carries a map from its offsets to the original's.

ASCII text, by far the common case, folds with `str.lower()` and needs no map; anything
else is folded one character cluster (a base character and its combining marks) at a time,
so that every folded character knows where it came from.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Folded:
    """The folded form of a text, and where each of its characters came from."""

    text: str
    origin: list[int] | None  # origin[i] = index in the original of folded char i; None: same
    original_length: int

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that the folded span `[start, end)` came from."""
        if self.origin is None:
            return start, end
        if start >= len(self.origin):
            return self.original_length, self.original_length
        first = self.origin[start]
        if end <= start:
            return first, first
        # up to the next visible character: the last cluster's marks and any invisible
        # characters removed after it belong to the match
        following = self.origin[end] if end < len(self.origin) else self.original_length
        return first, max(self.origin[end - 1] + 1, following)


def fold(text: str) -> Folded:
    """NFKC, casefold, and invisible format characters removed, with the offsets map."""
    if text.isascii():
        return Folded(text.lower(), None, len(text))
    out: list[str] = []
    origin: list[int] = []
    length = len(text)
    i = 0
    while i < length:
        start = i
        i += 1
        while i < length and unicodedata.combining(text[i]):
            i += 1
        cluster = text[start:i]
        if len(cluster) == 1 and unicodedata.category(cluster) == "Cf":
            continue
        folded = unicodedata.normalize("NFKC", cluster).casefold()
        folded = "".join(c for c in folded if unicodedata.category(c) != "Cf")
        out.append(folded)
        origin.extend([start] * len(folded))
    return Folded("".join(out), origin, length)


def fold_term(term: str) -> str:
    """How a deny-list term or pattern literal is folded: the same way as the text."""
    return " ".join(fold(term).text.split())
