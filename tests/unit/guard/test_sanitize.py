"""Active markup is found and stripped, to a fixed point; harmless angle brackets stay."""

from __future__ import annotations

import pytest

from monitor.guard.sanitize import find_markup, strip_markup


def stripped(text: str) -> str:
    return strip_markup(text, find_markup(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi <script>alert(1)</script> there", "hi  there"),
        ("<SCRIPT type='text/javascript'>x()</SCRIPT >!", "!"),
        ("a <script>never closed", "a "),  # a browser would run the rest
        ("a </script> stray", "a  stray"),
        ("a <iframe src=x></iframe> b", "a  b"),
        ("<object data=x><embed src=y></object>", ""),
        ('<a href="javascript:alert(1)">x</a>', '<a href="">x</a>'),
        ("<a href='JaVaScRiPt:void(0)'>", "<a href=''>"),
        ("java\tscript&#58;alert(1)", ""),
        ("vbscript&colon;msgbox", ""),
        ("see data:text/html;base64,PHNjcmlwdD4= now", "see  now"),
        ("<img src='data:image/svg+xml;base64,PHN2Zz4='>", "<img src=''>"),
    ],
)
def test_strips(text: str, expected: str) -> None:
    assert stripped(text) == expected


def test_reassembled_tags_do_not_survive() -> None:
    text = "<scr<script></script>ipt>alert(1)</scr<script></script>ipt>"
    assert "<script" not in stripped(text).lower()


@pytest.mark.parametrize(
    "text",
    [
        "if a < b and c > d: pass",
        "List<String> xs = new ArrayList<>();",
        "a description: of things",
        "data: text/plain is fine",
        "metadata:text/html",
        "xjavascript:1",
        "the <b>bold</b> move",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_leaves_harmless_text(text: str) -> None:
    assert find_markup(text) == []
    assert stripped(text) == text
