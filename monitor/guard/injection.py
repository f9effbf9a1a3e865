"""Prompt-injection and jailbreak phrasing, scored rather than matched.

Each pattern has a weight, the probability-like confidence that text matching it is an
attack: "ignore all previous instructions" is nearly certain, "jailbreak" alone is not (people
jailbreak phones). A text's score is the noisy-or of the weights of the distinct patterns it
matches, `1 - prod(1 - w)`, so weak signals add up without ever reaching 1. The policy's
threshold decides what score acts.

Patterns run on the folded text (NFKC, casefold, invisible characters removed; see
`monitor.guard.normalize`), so full-width or zero-width-split spellings score the same. Each
pattern also names needles, literal words one of which must occur, checked with `in` before
the regex runs: most texts contain none and cost a few substring searches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from monitor.guard.normalize import fold
from monitor.guard.redaction import Hit


@dataclass(frozen=True, slots=True)
class InjectionPattern:
    id: str
    weight: float
    needles: tuple[str, ...]
    regex: re.Pattern[str]


def _p(id_: str, weight: float, needles: tuple[str, ...], pattern: str) -> InjectionPattern:
    return InjectionPattern(id_, weight, needles, re.compile(pattern))


_IGNORE = ("ignore", "disregard", "forget", "skip", "override", "bypass")
PATTERNS: Final = (
    _p(
        "ignore_previous", 0.9, _IGNORE,
        r"\b(?:ignore|disregard|forget|skip|override|bypass)\s+"
        r"(?:(?:all|any|the|your|my|of|these|those|everything)\s+){0,3}"
        r"(?:previous|prior|above|earlier|preceding|former|initial|original|system)\s+"
        r"(?:instructions?|prompts?|rules|directions?|guidelines|commands?)",
    ),
    _p(
        "ignore_rules", 0.6, _IGNORE,
        r"\b(?:ignore|disregard|forget|bypass|override)\s+(?:all\s+|any\s+)?(?:of\s+)?"
        r"(?:your|the)\s+(?:instructions|rules|guidelines|restrictions|filters|safety|"
        r"programming|training|policies|content\s+policy)",
    ),
    _p(
        "reveal_prompt", 0.85,
        ("reveal", "show", "print", "display", "repeat", "output", "tell", "give", "share",
         "leak", "dump", "write"),
        r"\b(?:reveal|show|print|display|repeat|output|tell\s+me|give\s+me|share|leak|dump|"
        r"write\s+out)\s+(?:me\s+)?(?:your|the)\s+(?:\w+\s+){0,2}?"
        r"(?:system\s+prompt|system\s+message|(?:initial|hidden|original|secret)\s+"
        r"(?:prompt|instructions)|instructions\s+above|prompt\s+above)",
    ),
    _p(
        "ask_prompt", 0.6, ("what",),
        r"\bwhat\s+(?:is|are|was|were)\s+your\s+(?:system\s+prompt|(?:initial|original|hidden|"
        r"secret)\s+(?:prompt|instructions))",
    ),
    _p("do_anything_now", 0.9, ("anything",), r"\bdo\s+anything\s+now\b"),
    _p(
        "dan_persona", 0.7, ("dan",),
        r"\b(?:you\s+are|you're|act\s+as|become|pretend\s+to\s+be)\s+(?:now\s+)?(?:a\s+)?dan\b",
    ),
    _p(
        "mode_enabled", 0.8, ("mode",),
        r"\b(?:developer|god|jailbreak|jailbroken|dan|unrestricted|unfiltered)\s+mode\s+"
        r"(?:enabled|activated|output)\b",
    ),
    _p(
        "mode_persona", 0.75, ("mode",),
        r"\b(?:you\s+(?:are|will\s+be|will\s+act|act)|act\s+as\s+\w+)\s+(?:now\s+)?(?:in|with)\s+"
        r"(?:developer|god|jailbreak|dan|unrestricted)\s+mode\b",
    ),
    _p("jailbreak_word", 0.5, ("jailbr",), r"\bjailbr(?:eak|oken|eaking)\b"),
    _p(
        "unrestricted_persona", 0.7,
        ("you", "act", "pretend", "role"),
        r"\b(?:you\s+are|you're|act\s+as|pretend\s+(?:to\s+be|you\s+are)|role-?\s?play\s+as)\s+"
        r"(?:now\s+)?(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|"
        r"unethical|rogue)\b",
    ),
    _p(
        "no_limits", 0.6, ("no",),
        r"\byou\s+(?:have|has|now\s+have)\s+no\s+(?:rules|restrictions|limits|limitations|"
        r"guidelines|filters|ethical|moral)",
    ),
    _p(
        "without_restrictions", 0.35,
        ("without", "no ", "free"),
        r"\b(?:without|no|free\s+(?:of|from))\s+(?:any\s+)?(?:restrictions|filters|filtering|"
        r"censorship|limitations|ethical\s+guidelines|safety\s+guidelines|content\s+policy)",
    ),
    _p(
        "new_instructions", 0.5, ("instruction",),
        r"\b(?:new|updated|real|actual|true)\s+(?:system\s+)?instructions?\s*:",
    ),
    _p("from_now_on", 0.3, ("now on",), r"\bfrom\s+now\s+on,?\s+you\s+(?:will|are|must|shall)\b"),
    _p(
        "override", 0.7, ("override",),
        r"\b(?:system|admin|administrator|root|developer)\s+(?:prompt\s+)?override\b",
    ),
    _p(
        "turn_markers", 0.7, ("<", "[inst", "###"),
        r"<\|?(?:im_start|im_end|system|endoftext)\|?>|<start_of_turn>|<end_of_turn>|"
        r"\[/?inst\]|<<sys>>|(?m:^[ \t]*#{2,}[ \t]*(?:system|instructions?)[ \t]*:)",
    ),
    _p(
        "named_jailbreak", 0.8,
        ("evil confidant", "opposite mode", "machiavellian", "stay in character"),
        r"\b(?:evil\s+confidant|opposite\s+mode|always\s+intelligent\s+and\s+machiavellian|"
        r"stay\s+in\s+character)\b",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class InjectionScore:
    """The noisy-or score of a text and the first match of each pattern it matched, strongest
    first (the first one is what a finding names)."""

    score: float
    hits: tuple[Hit, ...]


def score_injection(text: str) -> InjectionScore:
    """Score `text`; 0.0 with no hits when nothing matched."""
    folded = fold(text)
    hits: list[Hit] = []
    miss = 1.0
    for pattern in PATTERNS:
        if not any(needle in folded.text for needle in pattern.needles):
            continue
        match = pattern.regex.search(folded.text)
        if match is None:
            continue
        start, end = folded.span(match.start(), match.end())
        hits.append(Hit(f"injection.{pattern.id}", "injection", start, end, "", pattern.weight))
        miss *= 1.0 - pattern.weight
    hits.sort(key=lambda h: -(h.score or 0.0))
    return InjectionScore(round(1.0 - miss, 4), tuple(hits))
