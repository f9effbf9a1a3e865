"""Active markup is found and stripped, to a fixed point; harmless angle brackets stay."""

from __future__ import annotations

import pytest

from monitor.guard.detectors.sanitize import find_markup, strip_markup


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # event handlers: any tag, any case, quoted or not, after a space, `/` or a quote
        ("<img src=x onerror=alert(1)>", "<img src=x >"),
        ('<img src="x"onerror="alert(1)">', '<img src="x">'),
        ('<IMG SRC=x ONERROR = "alert(1)">', "<IMG SRC=x >"),
        ("<img/onerror=alert(1)>", "<img/>"),
        ("<svg\nonload\t=\nalert(1)>", "<svg\n>"),
        ("<body onload='init()'>hi</body>", "<body >hi</body>"),
        ('<img alt=">" onerror=alert(1)>', '<img alt=">" >'),  # a quoted > ends no tag
        ("<a title='>' onclick=alert(1)>", "<a title='>' >"),
        ('<img src=x onerror="&#97;lert(1)">', "<img src=x >"),
        ("x<y onmouseover=alert(1)", "x<y "),
        ('<details open ontoggle="alert(1)">', "<details open >"),
        # SVG: handlers, scripts, animations that put a script URL into a link
        ("<svg onload=alert(1)><circle r=1 /></svg>", "<svg ><circle r=1 /></svg>"),
        ("<svg><script>alert(1)</script></svg>", "<svg></svg>"),
        (
            '<svg><animate attributeName="href" values="javascript:alert(1)"/></svg>',
            '<svg><animate  values=""/></svg>',
        ),
        (
            '<svg><set attributeName=href to="&#106;avascript:alert(1)"/></svg>',
            '<svg><set  to=""/></svg>',
        ),
        ("<svg><animate onbegin=alert(1) dur=1s /></svg>", "<svg><animate  dur=1s /></svg>"),
        # style attributes and elements that run script
        ('<div style="width: expression(alert(1))">x</div>', "<div >x</div>"),
        ('<div style="background:url(jav&#x61;script:alert(1))">', "<div >"),
        ('<div style="x:ex/**/pr\\65 ssion(alert(1))">', "<div >"),
        ("<p style='-moz-binding:url(x.xml#x)'>", "<p >"),
        ("<style>a{x:expression(alert(1))}</style>ok", "ok"),
        ("<style>a{background:url(jav\\61script:alert(1))}</style>ok", "ok"),
        ("<style>a{x:expression(alert(1))}", ""),  # unclosed: to the end
        # meta refresh, base, form actions, srcdoc
        ('<meta http-equiv="refresh" content="0;url=https://evil.example">',
         '<meta  content="0;url=https://evil.example">'),
        ("<meta http-equiv=&#114;efresh content=0>", "<meta  content=0>"),
        ('<base href="https://evil.example/">rest', "rest"),
        ("<form action=javascript:alert(1)><button>go</button></form>",
         "<form action=><button>go</button></form>"),
        ('<button formaction="JAVASCRIPT:alert(1)">', '<button formaction="">'),
        ('<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;">', ""),
        ('<frame srcdoc="x">', ""),
        ('<div srcdoc="<b>x</b>">', "<div >"),
        # entity-encoded and obfuscated schemes
        ('<a href="&#106;avascript:alert(1)">x</a>', '<a href="">x</a>'),
        ('<a href="&#x6A;avascript:alert(1)">x</a>', '<a href="">x</a>'),
        ('<a href="&#0000106&#0000097vascript:alert(1)">', '<a href="">'),
        ('<a href="jav&#x09;ascript:alert(1)">', '<a href="">'),
        ('<a href="jav&Tab;as&NewLine;cript&colon;alert(1)">', '<a href="">'),
        ('<a href="java\x00script:alert(1)">', '<a href="">'),
        ('<a href=" \x01javascript:alert(1)">', '<a href=" \x01">'),
        ("vb&#115;cript:msgbox(1)", ""),
    ],
)  # fmt: skip
def test_strips_active_attributes_and_obfuscated_urls(text: str, expected: str) -> None:
    assert stripped(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "onion rings, one=1, online=yes",
        "set el.onclick = handler; window.onload = init;",
        "Use <b>bold</b> and then window.onload = init;",
        "&lt;img src=x onerror=alert(1)&gt; is the classic payload",
        "<input one=1 value=2>",
        '<div data-onclick="x" class=a>',
        "<style>p { color: red; background: url(/img.png) }</style>",
        '<p style="color: red">hi</p>',
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
        '<meta charset="utf-8">',
        "<svg><animate attributeName=opacity values=0;1 dur=1s /></svg>",
        "the attribute onclick=... runs script",  # no tag anywhere before it
        "a &amp; b, 5 &lt; 6, see &#169; 2024: fine",
        "<a href='https://example.com/path?a=1&b=2'>link</a>",
    ],
)
def test_leaves_text_about_markup(text: str) -> None:
    assert find_markup(text) == []
    assert stripped(text) == text


def test_markup_in_code_fences_is_stripped_too() -> None:
    # a fence protects nothing where the text is rendered as HTML
    text = '```html\n<button onclick="save()">Save</button>\n```'
    assert stripped(text) == "```html\n<button >Save</button>\n```"


def test_removal_cannot_assemble_a_handler() -> None:
    text = "<img src=x o<script></script>nerror=alert(1)>"
    assert "onerror" not in stripped(text)
