"""Property tests of the shipped policies (default, strict) through `Guard.check_input` and
`check_output`: any text gives a verdict (the guard raises nothing), every finding's span lies
in the text, and what a policy redacts is gone from the redacted text, wherever it sits.

The hostile shapes of `test_hostile_input` complete; here 1 MB of each finishes within a
generous bound that only an exponential or quadratic pattern would miss.

Examples are derandomized and no example database is kept, so a run is the same everywhere.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.guard.engine import Guard
from monitor.guard.loader import load_policy
from monitor.guard.policy import Policy
from monitor.guard.verdict import Action, Verdict

DEFAULT = Guard(load_policy("policies/default.yaml"))
STRICT = Guard(load_policy("policies/strict.yaml"))
GUARDS = (DEFAULT, STRICT)


def _uncapped(policy: Policy) -> Policy:
    """The policy without its length caps, so that huge texts reach every other check."""
    stages = {
        name: stage.model_copy(update={"checks": [c for c in stage.checks if c.type != "length"]})
        for name, stage in (("input", policy.input), ("output", policy.output))
    }
    return policy.model_copy(update=stages)


UNCAPPED = tuple(Guard(_uncapped(guard.policy)) for guard in GUARDS)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# every code point, surrogates included (a str may hold them even if JSON cannot)
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)
PIECES = [
    *"0123456789 -.+()/@:<>&#;_=\"'abcdefxAZ\u200b\n\t\\%",
    *("on", "<a ", "<img ", "script", "style", "javascript", "&#106;", "\u0301", "\u00df"),
]
SHAPED = st.lists(st.sampled_from(PIECES), max_size=120).map("".join)


def _valid(verdict: Verdict, longest: int) -> None:
    assert isinstance(verdict.action, Action)
    for finding in verdict.findings:
        if finding.span is not None:
            start, end = finding.span
            # a later check reads the text as earlier ones redacted it: a little longer at most
            assert 0 <= start <= end <= longest + 10 * len(verdict.findings)


def check_everywhere(text: str, guards: tuple[Guard, ...] = GUARDS) -> None:
    for guard in guards:
        _valid(guard.check_input([{"role": "user", "content": text}]), len(text))
        _valid(guard.check_output(text), len(text))


@FUZZ
@given(ANY_TEXT)
def test_any_unicode(text: str) -> None:
    check_everywhere(text)


@FUZZ
@given(SHAPED)
def test_shapes_the_rules_look_for(text: str) -> None:
    check_everywhere(text)


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(st.text(min_size=1, max_size=12), st.integers(min_value=100_000, max_value=400_000))
def test_huge_strings(unit: str, size: int) -> None:
    check_everywhere((unit * (size // len(unit) + 1))[:size], UNCAPPED)


# Items each policy redacts (input of default: every kind; output of default: secrets, cards,
# IBANs and SSNs), and a redacted text must not contain them, whatever surrounds them.
EVERY_KIND = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "(415) 555-0132",
    "020 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "078-05-1120",
    "192.168.10.20",
    "sk-proj-A1b2C3d4E5f6G7h8J9k0L1m2N3p4Q5r6",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2" * 9,
]
OUTPUT_KINDS = [
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "078-05-1120",
    "sk-proj-A1b2C3d4E5f6G7h8J9k0L1m2N3p4Q5r6",
]
FILLER = st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | SHAPED


@FUZZ
@given(FILLER, st.sampled_from(EVERY_KIND), FILLER)
def test_redacted_input_never_holds_the_item(before: str, item: str, after: str) -> None:
    text = f"{before}\n{item}\n{after}"
    verdict = DEFAULT.check_input([{"role": "user", "content": text}])
    if verdict.action is Action.BLOCK:
        return
    assert verdict.action is Action.REDACT and verdict.redacted_messages is not None
    assert item not in verdict.redacted_messages[0]["content"]


@FUZZ
@given(FILLER, st.sampled_from(OUTPUT_KINDS), FILLER)
def test_redacted_output_never_holds_the_item(before: str, item: str, after: str) -> None:
    text = f"{before}\n{item}\n{after}"
    for guard in GUARDS:
        verdict = guard.check_output(text)
        if verdict.action is Action.BLOCK:
            continue
        assert verdict.action is Action.REDACT and verdict.redacted_text is not None
        assert item not in verdict.redacted_text


MB = 1_000_000
UNITS = {
    "letters": "a",
    "at signs": "@",
    "dots": ".",
    "digits": "1",
    "spaces": " ",
    "angles": "<",
    "nested quotes": "\"'",
    "digit groups": "01 ",
    "area codes": "(0",
    "open tags": "<a ",
    "open values": '<a x="',
    "handlers": "<a onclick=",
    "bare handlers": " onxyz=",
    "style attributes": "<a style=",
    "style sheets": "<style>/*",
    "equals": "=",
    "references": "&#106;",
    "entity colons": "&#58",
    "backslashes": "\\",
    "quote after tag": "<b>'",
    "comments": "<!--",
    "control chars": "\x01",
    "combining": "e\u0301",
    "sharp s": "\u00df",
}


@pytest.mark.parametrize("unit", list(UNITS.values()), ids=list(UNITS))
def test_a_megabyte_of_one_shape_is_linear(unit: str) -> None:
    text = (unit * (MB // len(unit) + 1))[:MB]
    started = time.perf_counter()
    check_everywhere(text, UNCAPPED)
    # linear code takes well under a second here; a quadratic pattern takes minutes
    assert time.perf_counter() - started < 20
