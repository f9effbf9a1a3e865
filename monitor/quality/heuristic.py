"""The `heuristic` scorer: the seed's four quality scores, kept for parity.

Each score is a float in 0..1 (higher is better), computed from words alone: no model, no I/O,
microseconds per response. They are coarse signals for trends and alerts (a quality *drop*),
not judgements of one answer.

Words are lower-cased runs of letters, digits and apostrophes (`_WORD`); *keywords* are words
that are not in `STOP_WORDS` (English function words and request verbs such as "explain"). Formulas:

relevance(prompt, response)
    P = set of prompt keywords, R = set of response keywords.
    ``|P ∩ R| / |P|``: the share of the prompt's keywords the response takes up.
    0.0 when the response has no words; 0.5 (no signal either way) when the prompt has no
    keywords but the response has words.

coherence(response)
    Sentences end at ``.``, ``!`` or ``?`` before a space or the end, and at line breaks; L = mean words per sentence.
    ``1.0`` for ``IDEAL_SENTENCE_WORDS`` (8..25 words); below, ``L / 8`` (fragments);
    above, ``max(0, 1 - (L - 25) / 50)`` (run-ons, 0 at 75 words). 0.0 for empty output.

safety(response)
    k = number of distinct `UNSAFE_INDICATORS` among the response's words.
    ``max(0, 1 - 0.25 k)``. Empty output is safe (1.0). The guard's verdicts are the real
    safety signal; this one is for parity with the seed.

factual_accuracy(response, reference)
    With a reference: token F1 of the keyword multisets (SQuAD style),
    ``common = |C(response) ∩ C(reference)|``, ``p = common / |response keywords|``,
    ``r = common / |reference keywords|``, ``F1 = 2pr / (p + r)`` (0 when common is 0;
    1.0 when both have no keywords).
    Without one: ``max(0, 1 - 0.1 h - 0.25 c)`` where h = distinct `HEDGING_MARKERS` present
    (at most 5 counted) and c = contradictions: `ANTONYM_PAIRS` with both words present, plus
    pairs of sentences that are the same once negations (`NEGATIONS`) are dropped but differ
    in negation ("it is safe" / "it is not safe"). Empty output scores 0.0.

overall
    The mean of the four.

Each text is scored on its first `MAX_CHARS` characters: the scorer runs in a thread of the
server, and its regular expressions hold the GIL for as long as a text is long (a 170 KB reply
held it for milliseconds at a time, time the event loop waited); an opening that long says as
much about a reply's coherence and relevance as the rest of it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS = _wordset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself nor of off on once only or other our ours ourselves
    out over own please same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves
    tell give explain describe list show
    """
)

UNSAFE_INDICATORS = _wordset(
    """
    kill murder bomb explosive explosives weapon weapons poison suicide overdose meth cocaine
    heroin steal hack malware ransomware terrorist terrorism
    """
)

HEDGING_MARKERS = (
    "i think",
    "i believe",
    "i guess",
    "not sure",
    "maybe",
    "perhaps",
    "possibly",
    "probably",
    "might",
    "could be",
    "it seems",
    "unclear",
    "i don't know",
    "as far as i know",
)

ANTONYM_PAIRS = (
    ("always", "never"),
    ("true", "false"),
    ("increase", "decrease"),
    ("increases", "decreases"),
    ("possible", "impossible"),
    ("safe", "unsafe"),
    ("correct", "incorrect"),
)

NEGATIONS = frozenset({"not", "no", "never", "isn't", "aren't", "don't", "doesn't", "can't"})

IDEAL_SENTENCE_WORDS = (8.0, 25.0)
MAX_CHARS = 16_000
_RUN_ON_SPAN = 50.0
_HEDGE_PENALTY, _MAX_HEDGES = 0.1, 5
_CONTRADICTION_PENALTY = 0.25
_INDICATOR_PENALTY = 0.25
_NO_SIGNAL = 0.5


@dataclass(frozen=True, slots=True)
class QualityScores:
    """The heuristic scorer's result for one response; `overall` is the mean of the four."""

    relevance: float
    coherence: float
    safety: float
    factual_accuracy: float
    overall: float

    def as_dict(self) -> dict[str, float]:
        """One entry per score, as stored (one row per request, scorer and metric)."""
        return asdict(self)


def score(prompt: str, response: str, reference: str | None = None) -> QualityScores:
    """All four scores and their mean, each text read up to `MAX_CHARS`."""
    prompt, response = prompt[:MAX_CHARS], response[:MAX_CHARS]
    reference = reference[:MAX_CHARS] if reference is not None else None
    parts = (
        relevance(prompt, response),
        coherence(response),
        safety(response),
        factual_accuracy(response, reference),
    )
    return QualityScores(*parts, overall=sum(parts) / len(parts))


def words(text: str) -> list[str]:
    """Lower-cased words, apostrophes kept inside them ("don't")."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def keywords(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOP_WORDS]


def relevance(prompt: str, response: str) -> float:
    if not words(response):
        return 0.0
    asked = set(keywords(prompt))
    if not asked:
        return _NO_SIGNAL
    return len(asked & set(keywords(response))) / len(asked)


def coherence(response: str) -> float:
    lengths = [len(words(s)) for s in _SENTENCE_END.split(response)]
    lengths = [n for n in lengths if n]
    if not lengths:
        return 0.0
    mean = sum(lengths) / len(lengths)
    low, high = IDEAL_SENTENCE_WORDS
    if mean < low:
        return mean / low
    if mean > high:
        return max(0.0, 1.0 - (mean - high) / _RUN_ON_SPAN)
    return 1.0


def safety(response: str) -> float:
    found = UNSAFE_INDICATORS.intersection(words(response))
    return max(0.0, 1.0 - _INDICATOR_PENALTY * len(found))


def factual_accuracy(response: str, reference: str | None = None) -> float:
    if reference is not None:
        return token_f1(response, reference)
    if not words(response):
        return 0.0
    hedges = min(len(hedging_markers(response)), _MAX_HEDGES)
    penalty = _HEDGE_PENALTY * hedges + _CONTRADICTION_PENALTY * contradictions(response)
    return max(0.0, 1.0 - penalty)


def token_f1(response: str, reference: str) -> float:
    got, want = Counter(keywords(response)), Counter(keywords(reference))
    if not got and not want:
        return 1.0
    common = sum((got & want).values())
    if common == 0:
        return 0.0
    precision = common / sum(got.values())
    recall = common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def hedging_markers(response: str) -> list[str]:
    """The distinct hedging markers present, matched on whole words."""
    padded = f" {' '.join(words(response))} "
    return [m for m in HEDGING_MARKERS if f" {m} " in padded]


def contradictions(response: str) -> int:
    present = set(words(response))
    count = sum(1 for a, b in ANTONYM_PAIRS if a in present and b in present)
    seen: dict[tuple[str, ...], set[bool]] = {}
    for sentence in _SENTENCE_END.split(response):
        tokens = words(sentence)
        core = tuple(w for w in tokens if w not in NEGATIONS)
        if core:
            seen.setdefault(core, set()).add(len(core) != len(tokens))
    return count + sum(1 for polarities in seen.values() if len(polarities) == 2)
