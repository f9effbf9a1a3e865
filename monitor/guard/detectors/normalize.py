"""Unicode normalisation for matching, with a way back to the original offsets.

Deny lists and injection patterns match a folded form of the text: NFKC (full-width
`\\uff42\\uff4f\\uff4d\\uff42` becomes `bomb`, ligatures split), casefold (`BOMB`, `Straße`),
and every invisible format character (category Cf: zero-width space and joiners, soft hyphen,
bidi controls, BOM) removed, so `b\\u200bomb` is `bomb` too. Findings must point into the
original text, so the folded text carries a map from its offsets to the original's.

Three paths, cheapest first, because this runs on every text of every request:
ASCII folds with `str.lower()`; text that is already NFKC and has no format character (most
accented, CJK or emoji text) folds with `casefold()`, keeping offsets as they are unless a
character casefolds to two (`ß`), when the map is built from the original only on the first
`span`. Only the rest is folded one character cluster (a base character and its combining
marks) at a time, recording where each folded character came from.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# Every character of category Cf (Unicode 14-15), as ranges; a unit test checks it against
# the running Python's unicodedata.
FORMAT_CHARS: Final = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)


@dataclass(slots=True)
class Folded:
    """The folded form of a text, and where each of its characters came from.

    The offsets map is built on the first `span` call only: most texts match nothing, and
    for them it would be wasted work.
    """

    text: str
    original: str
    identity: bool  # folded offsets are the original's
    _origin: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that the folded span `[start, end)` came from."""
        if self.identity:
            return start, end
        if self._origin is None:
            self._origin = _fold_clusters(self.original, with_origin=True)[1]
        origin, length = self._origin, len(self.original)
        if start >= len(origin):
            return length, length
        first = origin[start]
        if end <= start:
            return first, first
        # up to the next visible character: the last cluster's marks and any invisible
        # characters removed after it belong to the match
        following = origin[end] if end < len(origin) else length
        return first, max(origin[end - 1] + 1, following)


def fold(text: str) -> Folded:
    """NFKC, casefold, and invisible format characters removed, with the offsets map."""
    if text.isascii():
        return Folded(text.lower(), text, True)
    return _fold_unicode(text)


@lru_cache(maxsize=4)
def _fold_unicode(text: str) -> Folded:
    """The non-ASCII paths, remembered for the last few texts: the injection scorer and each
    deny list fold the same text one after the other, and here that costs microseconds."""
    if unicodedata.is_normalized("NFKC", text) and not _has_format_chars(text):
        # each cluster of a normalised text is normalised too: casefolding the whole is
        # folding it cluster by cluster; only the offsets differ when some character
        # casefolds to two (`ß`), and those are worked out only if a match needs them
        folded = text.casefold()
        return Folded(folded, text, len(folded) == len(text))
    return Folded(_fold_clusters(text, with_origin=False)[0], text, False)


def _has_format_chars(text: str) -> bool:
    """Whether `text` holds a Cf character. `isprintable` (C speed) is False for those and
    for whitespace other than the space, so newlines and tabs are made spaces before asking
    it (two `replace`s cost less than splitting into words); only text with other
    unprintable characters pays for the regex."""
    if text.isprintable() or text.replace("\n", " ").replace("\t", " ").isprintable():
        return False
    if "".join(text.split()).isprintable():  # other whitespace: \r, \f, U+2028 ...
        return False
    return FORMAT_CHARS.search(text) is not None


def _fold_clusters(text: str, *, with_origin: bool) -> tuple[str, list[int]]:
    """Fold what is ASCII a chunk at a time and the rest one cluster at a time; with
    `with_origin`, also say where each folded character came from."""
    raw = text.encode("ascii", "replace")  # one byte per character: '?' marks non-ASCII
    out: list[str] = []
    origin: list[int] = []
    length = len(text)
    i = 0
    while i < length:
        j = raw.find(b"?", i)
        while j >= 0 and text[j] == "?":  # a real question mark
            j = raw.find(b"?", j + 1)
        if j < 0:
            j = length
        k = j - 1 if i < j < length and unicodedata.combining(text[j]) else j
        if k > i:  # an ASCII chunk (less its last character when a mark follows it)
            out.append(text[i:k].lower())
            if with_origin:
                origin.extend(range(i, k))
        if k >= length:
            break
        end = k + 1
        while end < length and unicodedata.combining(text[end]):
            end += 1
        folded = FORMAT_CHARS.sub("", unicodedata.normalize("NFKC", text[k:end]).casefold())
        out.append(folded)
        if with_origin:
            origin.extend([k] * len(folded))
        i = end
    return "".join(out), origin


def fold_term(term: str) -> str:
    """How a deny-list term or pattern literal is folded: the same way as the text."""
    return " ".join(fold(term).text.split())


def word_starts(text: str, needle: str) -> list[int]:
    """Where `needle` occurs in `text` at the start of a word (not after a letter or digit).

    `str.find` runs at memchr speed, far faster than a regex whose first step is a character
    class or a look-behind; rules find their anchors this way and `match` only there.
    """
    found = []
    position = text.find(needle)
    while position >= 0:
        if position == 0 or not (text[position - 1].isalnum() or text[position - 1] == "_"):
            found.append(position)
        position = text.find(needle, position + 1)
    return found
