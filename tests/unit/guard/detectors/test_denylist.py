"""Deny lists match words after Unicode folding, never bare substrings."""

from __future__ import annotations

import pytest

from monitor.guard.detectors.denylist import DenyList
from monitor.guard.engine import Guard
from monitor.guard.loader import load_policy, parse_policy


def matched(deny: DenyList, text: str) -> list[str]:
    return [text[h.start : h.end] for h in deny.find(text)]


BOMB = DenyList(["bomb"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("how to make a bomb", ["bomb"]),
        ("BOMB!", ["BOMB"]),
        ("b\u200bomb", ["b\u200bomb"]),  # zero-width space inside
        ("b\u00adomb", ["b\u00adomb"]),  # soft hyphen
        ("\uff42\uff4f\uff4d\uff42", ["\uff42\uff4f\uff4d\uff42"]),  # full-width
        ("\U0001d41b\U0001d428\U0001d426\U0001d41b", ["\U0001d41b\U0001d428\U0001d426\U0001d41b"]),
        ("a b\u200bomb\u200b here", ["b\u200bomb\u200b"]),
    ],
)
def test_matches_folded_words(text: str, expected: list[str]) -> None:
    assert matched(BOMB, text) == expected


@pytest.mark.parametrize(
    "text", ["bombastic", "a bombardment", "abomb", "photobomb", "b o m b", "bom b"]
)
def test_does_not_match_inside_words(text: str) -> None:
    assert matched(BOMB, text) == []


def test_kill_a_python_process_passes_the_default_policy() -> None:
    guard = Guard(load_policy("policies/default.yaml"))
    verdict = guard.check_input([{"role": "user", "content": "How do I kill a Python process?"}])
    assert verdict.action.value == "allow"


def test_a_bare_verb_matches_when_configured_so_and_allow_phrases_let_uses_through() -> None:
    bare = DenyList(["kill"])
    assert matched(bare, "How do I kill a Python process?") == ["kill"]  # the operator's choice
    assert matched(bare, "skills and killer whales") == []
    with_allow = DenyList(["kill"], allow=["kill * process", "kill * * process"])
    assert matched(with_allow, "How do I kill a Python process?") == []
    assert matched(with_allow, "kill the process, then kill him") == ["kill"]


def test_strict_policy_keeps_technical_uses() -> None:
    guard = Guard(load_policy("policies/strict.yaml"))
    for text in ("How do I kill a Python process?", "How do I kill the process on port 80?"):
        assert not guard.check_input([{"role": "user", "content": text}]).blocked
    assert guard.check_input([{"role": "user", "content": "how to kill my neighbour"}]).blocked


@pytest.mark.parametrize(
    ("match", "text", "expected"),
    [
        ("word", "bombs away", []),
        ("prefix", "bombs away", ["bomb"]),
        ("prefix", "abomb", []),
        ("substring", "abombs", ["bomb"]),
    ],
)
def test_match_modes(match: str, text: str, expected: list[str]) -> None:
    assert matched(DenyList(["bomb"], match=match), text) == expected


def test_phrases_and_wildcards() -> None:
    deny = DenyList(["blow up", "make * bomb", "Straße"])
    assert matched(deny, "blow   up the\nbridge") == ["blow   up"]
    assert matched(deny, "make a bomb") == ["make a bomb"]
    assert matched(deny, "make bomb") == []
    assert matched(deny, "STRASSE") == ["STRASSE"]


def test_many_terms_compile_to_one_trie() -> None:
    terms = [f"term{i}" for i in range(5000)] + ["bomb"]
    deny = DenyList(terms)
    assert matched(deny, "a term4999 and a bomb, not term50000") == ["term4999", "bomb"]


def test_redaction_through_a_policy() -> None:
    policy = parse_policy(
        "input:\n  checks:\n    - type: denylist\n      terms: [bomb]\n      action: redact\n"
    )
    verdict = Guard(policy).check_input(
        [{"role": "user", "content": "a \uff42\uff4f\uff4d\uff42 here"}]
    )
    assert verdict.redacted_messages == [{"role": "user", "content": "a [REDACTED] here"}]
