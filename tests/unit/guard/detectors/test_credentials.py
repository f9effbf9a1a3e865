"""Secrets: vendor key formats, tokens, assignments and private key blocks become [SECRET]."""

from __future__ import annotations

import pytest

from monitor.guard.detectors.credentials import find_secrets
from monitor.guard.detectors.redaction import redact


def redacted(text: str) -> str:
    return redact(text, find_secrets(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234 ok", "key [SECRET] ok"),
        ("sk-abcdefghijklmnopqrstuvwxyz012345", "[SECRET]"),
        ("AKIAIOSFODNN7EXAMPLE", "[SECRET]"),
        ("token ghp_" + "a1" * 18 + ".", "token [SECRET]."),
        ("github_pat_" + "A" * 30, "[SECRET]"),
        ("xoxb-123456789012-abcdefghij", "[SECRET]"),
        ("AIza" + "b" * 35, "[SECRET]"),
        ("sk_live_abcdefghijklmnop1234", "[SECRET]"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123", "Authorization: Bearer [SECRET]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijklmnop",
            "jwt [SECRET]",
        ),
        ("password: hunter22", "password: [SECRET]"),
        ('API_KEY = "abcd1234efgh"', 'API_KEY = "[SECRET]"'),
        ("access_token=xyz98765", "access_token=[SECRET]"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAK\n-----END RSA PRIVATE KEY----- after",
            "[SECRET] after",
        ),
        ("-----BEGIN PRIVATE KEY-----\nMIIE half a key", "[SECRET]"),  # unterminated: to the end
    ],
)
def test_secrets(text: str, expected: str) -> None:
    assert redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ask-me-anything is a format",
        "mask-abcdefghijklmnopqrstuvwxyz",  # sk- inside a word
        "the password: whatever",  # prose, no secret-looking value
        "token: the one you gave me",
        "monkey: banana12",
        "the bearer of bad news",
        "skills and tasks",
    ],
)
def test_not_secrets(text: str) -> None:
    assert redacted(text) == text
