"""Folding: NFKC, casefold, invisible characters removed, and offsets back to the original."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from monitor.guard.detectors.normalize import FORMAT_CHARS, fold, word_starts


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Hello BOMB", "hello bomb"),
        ("b\u200bomb", "bomb"),
        ("\uff42\uff4f\uff4d\uff42", "bomb"),
        ("\ufb01le", "file"),
        ("Straße", "strasse"),
        ("bo\u0301mb", "bómb"),
        ("café ☕", "café ☕"),
        ("\u202eevil\u202c", "evil"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text).text == folded


def test_spans_map_back_to_the_original() -> None:
    text = "x \uff42\u200b\uff4f\uff4d\uff42\u200b y"
    result = fold(text)
    start = result.text.index("bomb")
    a, b = result.span(start, start + 4)
    assert text[a:b] == "\uff42\u200b\uff4f\uff4d\uff42\u200b"
    assert result.span(len(result.text), len(result.text)) == (len(text), len(text))


def test_ascii_and_clean_unicode_keep_offsets() -> None:
    assert fold("ABC").identity and fold("Ärger ☕").identity
    assert not fold("Straße").identity


def test_format_chars_cover_category_cf() -> None:
    missing = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) == "Cf" and not FORMAT_CHARS.match(chr(cp))
    ]
    assert missing == []


def test_word_starts() -> None:
    assert word_starts("you, your, bayou _you you", "you") == [0, 5, 22]
