"""Hostile input: random Unicode, megabyte strings, nested content and regex-hostile shapes.

No check may raise, and every pathological shape must complete: the patterns are anchored,
bounded or possessive, so each of these runs in linear time (they finish in milliseconds;
a catastrophic pattern would hang here instead). No wall-clock thresholds: the assertion is
that the run completes and returns a verdict.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.guard.engine import Guard
from monitor.guard.loader import load_policy, parse_policy
from monitor.guard.verdict import Action, Verdict

EVERYTHING = parse_policy(
    """
input:
  checks:
    - {type: validation, action: flag}
    - {type: sanitize, action: redact}
    - {type: pii, action: redact}
    - {type: injection, threshold: 0.5, action: flag}
    - {type: denylist, terms: [bomb, blow up, "make * bomb"], allow: ["bomb calorimeter"], action: redact}
output:
  checks:
    - {type: sanitize, action: redact}
    - {type: pii, action: redact}
    - {type: injection, action: flag}
    - {type: denylist, terms: [bomb], match: substring, action: redact}
""",
    default_name="everything",
)
GUARDS = [Guard(EVERYTHING), Guard(load_policy("policies/strict.yaml"))]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_all(text: str) -> list[Verdict]:
    verdicts = []
    for guard in GUARDS:
        verdicts.append(guard.check_input([{"role": "user", "content": text}]))
        verdicts.append(guard.check_output(text))
    for verdict in verdicts:
        assert isinstance(verdict.action, Action)
        for finding in verdict.findings:
            if finding.span is not None:
                start, end = finding.span
                assert 0 <= start <= end
    return verdicts


@SETTINGS
@given(st.text())
def test_random_unicode(text: str) -> None:
    check_all(text)


@SETTINGS
@given(
    st.text(
        alphabet=st.sampled_from("0123456789 -.+()@:<>/&#;_=\"'abcdefxAZ\u200b\n\t"), max_size=400
    )
)
def test_pii_and_markup_alphabet(text: str) -> None:
    for verdict in check_all(text):
        redacted = verdict.redacted_text
        if redacted is not None:
            assert len(redacted) <= len(text) * 10  # replacements are short tags


@SETTINGS
@given(
    st.text(alphabet=st.characters(categories=["Cf", "Mn", "Lu", "Ll", "Nd", "Zs"]), max_size=300)
)
def test_folding_alphabet(text: str) -> None:
    check_all(text)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 3]), "text": JSONISH})
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "bot", None]),
     "content": JSONISH | st.text(max_size=200) | st.lists(PART | JSONISH, max_size=4)}
)  # fmt: skip


@SETTINGS
@given(st.lists(MESSAGE, max_size=8) | JSONISH)
def test_nested_json_like_messages(messages: Any) -> None:
    for guard in GUARDS:
        verdict = guard.check_input(messages)
        assert isinstance(verdict.action, Action)
        if verdict.redacted_messages is not None:
            assert len(verdict.redacted_messages) == len(messages)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(min_size=1, max_size=20), st.integers(min_value=200_000, max_value=1_000_000))
def test_huge_strings(unit: str, size: int) -> None:
    check_all((unit * (size // len(unit) + 1))[:size])


N = 100_000
PATHOLOGICAL = {
    "digits": "1" * N,
    "digit groups": "1 " * (N // 2),
    "dashed digits": "1-" * (N // 2),
    "dotted digits": "1." * (N // 2),
    "phone prefix": "+1 " * (N // 3),
    "parens": "(555) " * (N // 6),
    "ssn shape": "123-45-" * (N // 7),
    "letters": "a" * N,
    "at signs": "a@" * (N // 2),
    "local part then at": "a." * (N // 2) + "@",
    "domain labels": "a@" + "b." * (N // 2),
    "colons": ":" * N,
    "hex colons": "f:" * (N // 2),
    "script openings": "<script" * (N // 7),
    "script closings": "</script" * (N // 8),
    "iframe openings": "<iframe" * (N // 7),
    "angles": "<" * N,
    "schemes": "javascript" * (N // 10) + ":",
    "tabs then colon": "\t" * N + ":",
    "entity colons": "&#58" * (N // 4),
    "key blocks": "-----BEGIN PRIVATE KEY-----" * (N // 27),
    "openai prefixes": "sk-" * (N // 3),
    "jwt prefixes": "eyJ" * (N // 3),
    "jwt parts": "eyJaaaaa." * (N // 9),
    "assignments": "password=" * (N // 9),
    "bearer": "bearer " * (N // 7),
    "iban shapes": "DE89 " * (N // 5),
    "iban letters": "AB12" * (N // 4),
    "ignore words": "ignore " * (N // 7),
    "you words": "you " * (N // 4),
    "hashes": "##" * (N // 2),
    "deny phrase starts": "blow " * (N // 5),
    "make words": "make a " * (N // 7),
    "zero width": "\u200b" * N,
    "full width": "\uff42" * N,
    "combining": "e\u0301" * (N // 2),
    "marks only": "\u0301" * N,
    "question marks": "?" * N,
}


@pytest.mark.parametrize("text", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_shapes_complete(text: str) -> None:
    check_all(text)
