"""Prompt-injection and jailbreak phrasing, scored rather than matched.

Each pattern has a weight, the probability-like confidence that text matching it is an
attack: "ignore all previous instructions" is nearly certain, "jailbreak" alone is not (people
jailbreak phones). A text's score is the noisy-or of the weights of the distinct patterns it
matches, `1 - prod(1 - w)`, so weak signals add up without ever reaching 1. The policy's
threshold decides what score acts.

Patterns run on the folded text (NFKC, casefold, invisible characters removed; see
`monitor.guard.detectors.normalize`), so full-width or zero-width-split spellings score the same. Each
pattern names the words a match starts with; one regex finds all of them in a single pass,
and each pattern is tried (`match`, not `search`) only where one of its words starts: a
prompt costs one scan plus a few anchored attempts, which keeps 2 KB in microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from monitor.guard.detectors.normalize import fold, word_starts
from monitor.guard.detectors.redaction import Hit


@dataclass(frozen=True, slots=True)
class InjectionPattern:
    """One phrasing: where it can start, the regex matched there, and its weight."""

    id: str
    weight: float
    starts: tuple[str, ...]  # a match begins with one of these (folded) words
    regex: re.Pattern[str]
    words: bool = True  # the start must begin a word


def _all(text: str, needle: str) -> list[int]:
    found = []
    position = text.find(needle)
    while position >= 0:
        found.append(position)
        position = text.find(needle, position + 1)
    return found


def _p(
    id_: str, weight: float, starts: tuple[str, ...], pattern: str, *, words: bool = True
) -> InjectionPattern:
    return InjectionPattern(id_, weight, starts, re.compile(pattern), words)


_IGNORE = ("ignore", "disregard", "forget", "skip", "override", "bypass")
PATTERNS: Final = (
    _p(
        "ignore_previous", 0.9, _IGNORE,
        r"(?:ignore|disregard|forget|skip|override|bypass)\s+"
        r"(?:(?:all|any|the|your|my|of|these|those|everything)\s+){0,3}"
        r"(?:previous|prior|above|earlier|preceding|former|initial|original|system)\s+"
        r"(?:instructions?|prompts?|rules|directions?|guidelines|commands?)",
    ),
    _p(
        "ignore_rules", 0.6, _IGNORE,
        r"(?:ignore|disregard|forget|bypass|override)\s+(?:all\s+|any\s+)?(?:of\s+)?"
        r"(?:your|the)\s+(?:instructions|rules|guidelines|restrictions|filters|safety|"
        r"programming|training|policies|content\s+policy)",
    ),
    _p(
        "reveal_prompt", 0.85,
        ("reveal", "show", "print", "display", "repeat", "output", "tell", "give", "share",
         "leak", "dump", "write"),
        r"(?:reveal|show|print|display|repeat|output|tell\s+me|give\s+me|share|leak|dump|"
        r"write\s+out)\s+(?:me\s+)?(?:your|the)\s+(?:\w+\s+){0,2}?"
        r"(?:system\s+prompt|system\s+message|(?:initial|hidden|original|secret)\s+"
        r"(?:prompt|instructions)|instructions\s+above|prompt\s+above)",
    ),
    _p(
        "ask_prompt", 0.6, ("what",),
        r"what\s+(?:is|are|was|were)\s+your\s+(?:system\s+prompt|(?:initial|original|hidden|"
        r"secret)\s+(?:prompt|instructions))",
    ),
    _p("do_anything_now", 0.9, ("do",), r"do\s+anything\s+now\b"),
    _p(
        "dan_persona", 0.7, ("you", "act", "become", "pretend"),
        r"(?:you\s+are|you're|act\s+as|become|pretend\s+to\s+be)\s+(?:now\s+)?(?:a\s+)?dan\b",
    ),
    _p(
        "mode_enabled", 0.8,
        ("developer", "god", "jailbreak", "jailbroken", "dan", "unrestricted", "unfiltered"),
        r"(?:developer|god|jailbreak|jailbroken|dan|unrestricted|unfiltered)\s+mode\s+"
        r"(?:enabled|activated|output)\b",
    ),
    _p(
        "mode_persona", 0.75, ("you", "act"),
        r"(?:you\s+(?:are|will\s+be|will\s+act|act)|act\s+as\s+\w+)\s+(?:now\s+)?(?:in|with)\s+"
        r"(?:developer|god|jailbreak|dan|unrestricted)\s+mode\b",
    ),
    _p(
        "jailbreak_word", 0.5, ("jailbreak", "jailbroken", "jailbreaking"), r"jailbr(?:eak|oken|eaking)\b"),
    _p(
        "unrestricted_persona", 0.7,
        ("you", "act", "pretend", "role", "answer", "respond", "reply"),
        r"(?:you\s+are|you're|(?:act|answer|respond|reply)\s+as|pretend\s+(?:to\s+be|you\s+are)|"
        r"role-?\s?play\s+as)\s+"
        r"(?:now\s+)?(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|"
        r"unethical|rogue)\b",
    ),
    _p(
        "no_limits", 0.6, ("you",),
        r"you\s+(?:have|has|now\s+have)\s+no\s+(?:rules|restrictions|limits|limitations|"
        r"guidelines|filters|ethical|moral)",
    ),
    _p(
        "without_restrictions", 0.35,
        ("without", "no", "free"),
        r"(?:without|no|free\s+(?:of|from))\s+(?:any\s+)?(?:restrictions|filters|filtering|"
        r"censorship|limitations|ethical\s+guidelines|safety\s+guidelines|content\s+policy)",
    ),
    _p(
        "new_instructions", 0.5, ("new", "updated", "real", "actual", "true"),
        r"(?:new|updated|real|actual|true)\s+(?:system\s+)?instructions?\s*:",
    ),
    _p("from_now_on", 0.3, ("from",), r"from\s+now\s+on,?\s+you\s+(?:will|are|must|shall)\b"),
    _p(
        "override", 0.7, ("system", "admin", "root", "developer"),
        r"(?:system|admin|administrator|root|developer)\s+(?:prompt\s+)?override\b",
    ),
    _p(
        "turn_markers", 0.7, ("<", "[inst]", "[/inst]", "##"),
        r"<\|?(?:im_start|im_end|system|endoftext)\|?>|<start_of_turn>|<end_of_turn>|"
        r"\[/?inst\]|<<sys>>|##[ \t]*(?:system|instructions?)[ \t]*:",
        words=False,
    ),
    _p(
        "named_jailbreak", 0.8,
        ("evil", "opposite", "always", "stay"),
        r"(?:evil\s+confidant|opposite\s+mode|always\s+intelligent\s+and\s+machiavellian|"
        r"stay\s+in\s+character)\b",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class InjectionScore:
    """The noisy-or score of a text and the first match of each pattern it matched, strongest
    first (the first one is what a finding names)."""

    score: float
    hits: tuple[Hit, ...]


_NOTHING: Final = InjectionScore(0.0, ())


# Which patterns each start word can begin, so that a text's words lead straight to the few
# patterns worth trying: word starts keyed by their bytes (the text's words are bytes), the
# others (`<`, `[inst]`, `##`) looked for with `in`.
def _index(words: bool) -> dict[str, tuple[int, ...]]:
    index: dict[str, list[int]] = {}
    for number, pattern in enumerate(PATTERNS):
        for start in pattern.starts:
            if start.isalnum() == words:
                index.setdefault(start, []).append(number)
    return {start: tuple(numbers) for start, numbers in index.items()}


_BY_WORD: Final = {word.encode(): numbers for word, numbers in _index(True).items()}
_BY_MARKER: Final = tuple(_index(False).items())
_START_KEYS: Final = frozenset(_BY_WORD)
_WORD_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_NON_WORD_TO_SPACE: Final = bytes(c if c in _WORD_CHARS else 32 for c in range(256))


def score_injection(text: str) -> InjectionScore:
    """Score `text`; 0.0 with no hits when nothing matched.

    The words of the text are collected once (a byte translate and a split, both C speed);
    they name the patterns worth trying (most texts: none or a few), and each of those is
    tried (`match`) only where one of its start words occurs, earliest first.
    """
    folded = fold(text)
    low = folded.text
    words = _START_KEYS.intersection(
        low.encode("ascii", "replace").translate(_NON_WORD_TO_SPACE).split()
    )
    starts: dict[int, list[str]] = {}  # pattern number -> its start words in the text
    for word in words:
        for number in _BY_WORD[word]:
            starts.setdefault(number, []).append(word.decode())
    for marker, numbers in _BY_MARKER:
        if marker in low:
            for number in numbers:
                starts.setdefault(number, []).append(marker)
    if not starts:  # most texts: no pattern can start anywhere
        return _NOTHING
    found: dict[int, re.Match[str]] = {}
    positions: dict[str, list[int]] = {}
    for number, present in starts.items():
        pattern = PATTERNS[number]
        best: re.Match[str] | None = None
        for start in present:
            if start not in positions:
                positions[start] = word_starts(low, start) if pattern.words else _all(low, start)
            for position in positions[start]:
                if best is not None and position >= best.start():
                    break
                match = pattern.regex.match(low, position)
                if match is not None:
                    best = match
                    break
        if best is not None:
            found[number] = best
    hits: list[Hit] = []
    miss = 1.0
    for number, pattern in enumerate(PATTERNS):
        match = found.get(number)
        if match is None:
            continue
        start_at, end = folded.span(match.start(), match.end())
        hits.append(Hit(f"injection.{pattern.id}", "injection", start_at, end, "", pattern.weight))
        miss *= 1.0 - pattern.weight
    hits.sort(key=lambda h: -(h.score or 0.0))
    return InjectionScore(round(1.0 - miss, 4), tuple(hits))
