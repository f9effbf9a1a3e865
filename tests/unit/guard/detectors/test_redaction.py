"""Replacing hits in a text, overlapping ones merged."""

from __future__ import annotations

from monitor.guard.detectors.redaction import Hit, redact


def hit(start: int, end: int, replacement: str) -> Hit:
    return Hit("r", "c", start, end, replacement)


def test_redact() -> None:
    assert redact("abcdef", []) == "abcdef"
    assert redact("abcdef", [hit(1, 3, "X")]) == "aXdef"
    assert redact("abcdef", [hit(4, 6, "Y"), hit(0, 1, "X")]) == "XbcdY"
    assert redact("abcdef", [hit(1, 3, "X"), hit(2, 5, "Y"), hit(5, 6, "Z")]) == "aXZ"
    assert redact("abcdef", [hit(1, 5, "X"), hit(2, 3, "Y")]) == "aXf"
    assert redact("abcdef", [hit(0, 6, "")]) == ""
