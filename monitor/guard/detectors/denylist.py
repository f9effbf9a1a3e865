"""Deny lists: words and phrases that must not appear, matched the way a reader would.

The seed matched substrings, so a deny word "kill" refused "How do I kill a Python process?"
and "skill". Here both the terms and the text are folded (NFKC, casefold, invisible
characters removed: `monitor.guard.detectors.normalize`) and terms match whole words by default:
"bomb" matches "BOMB", full-width "\\uff42\\uff4f\\uff4d\\uff42" and "b\\u200bomb" but not "bombastic". A phrase matches
across any run of whitespace, and `*` in a term stands for exactly one word. `prefix` and
`substring` modes exist for lists that want them.

A bare verb like "kill" still matches "kill a Python process" once an operator lists it: that
is what they asked for. `allow` phrases are the way out: a match inside an occurrence of an
allow phrase ("kill * process", "kill * * process") does not count.

The terms compile into one regex shaped as a trie (`(?:b(?:omb|ullet))`), so a list of
thousands costs one pass over the text with at most one branch tried per character.
"""

from __future__ import annotations

import re
from typing import Any

from monitor.guard.detectors.normalize import fold, fold_term
from monitor.guard.detectors.redaction import Hit

REPLACEMENT = "[REDACTED]"
_END = ""  # trie key marking the end of a term


class DenyList:
    """A compiled deny list: `find(text)` returns a hit per occurrence of any term."""

    def __init__(
        self,
        terms: list[str],
        *,
        category: str = "denylist",
        match: str = "word",
        allow: list[str] | None = None,
    ) -> None:
        self.category = category
        self._regex = _compile(terms, match)
        self._allow = _compile(allow, "word") if allow else None
        # a short list runs its regex only when the text holds a needle: the longest word of
        # some term (a term cannot match without it)
        self._needles: tuple[str, ...] | None = None
        if len(terms) <= 64:
            words = [max(fold_term(t).replace("*", " ").split(), key=len) for t in terms]
            self._needles = tuple({w for w in words if w})

    def find(self, text: str) -> list[Hit]:
        folded = fold(text)
        if self._needles is not None and not any(n in folded.text for n in self._needles):
            return []
        hits = []
        allowed = [m.span() for m in self._allow.finditer(folded.text)] if self._allow else []
        next_allowed = 0  # both lists are in text order: walk them together
        for m in self._regex.finditer(folded.text):
            while next_allowed < len(allowed) and allowed[next_allowed][1] <= m.start():
                next_allowed += 1
            if next_allowed < len(allowed):
                a, b = allowed[next_allowed]
                if a <= m.start() and m.end() <= b:
                    continue
            start, end = folded.span(m.start(), m.end())
            hits.append(
                Hit(
                    f"denylist.{self.category}",
                    self.category,
                    start,
                    end,
                    REPLACEMENT,
                    detail=f"deny-listed term {m.group()!r}",
                )
            )
        return hits


def _compile(terms: list[str], match: str) -> re.Pattern[str]:
    folded = sorted({fold_term(t) for t in terms if fold_term(t)})
    if not folded:
        raise ValueError("a deny list needs at least one non-blank term")
    after = r"(?!\w)" if match == "word" else ""
    return re.compile(_trie_regex(folded, word_start=match in ("word", "prefix")) + after)


def _trie_regex(terms: list[str], *, word_start: bool) -> str:
    trie: dict[str, Any] = {}
    for term in terms:
        node = trie
        for char in term:
            node = node.setdefault(char, {})
        node[_END] = {}
    return _node_regex(trie, word_start)


def _node_regex(node: dict[str, Any], word_start: bool = False) -> str:
    branches = []
    optional = False
    for char in sorted(node):
        if char == _END:
            optional = True
            continue
        atom = {" ": r"\s+", "*": r"\w+"}.get(char) or re.escape(char)
        if word_start:  # the word boundary after the first character, not before it: a
            # pattern that starts with a literal lets the regex engine skip ahead to it
            atom = r"(?<!\w)\w+" if char == "*" else atom + r"(?<!\w.)"
        branches.append(atom + _node_regex(node[char]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if optional:  # a term ends here and longer ones go on: prefer the longer (greedy)
        body = f"(?:{body})?" if len(branches) == 1 else body + "?"
    return body
