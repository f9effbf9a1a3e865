"""Active markup: what a browser would run if a prompt or a response were rendered as HTML.

Finds `<script>` elements with their content (an unclosed one runs to the end of the text,
as a browser would take it), `<iframe>`, `<object>`, `<embed>`, `<frame>`, `<applet>` tags,
`javascript:` / `vbscript:` URLs (also spelt with spaces or `&#58;`) and `data:` URLs of HTML,
SVG or script. Stripping runs to a fixed point, so `<scr<script></script>ipt>` cannot
reassemble a tag once the inner one is gone.

Every pattern is linear: tag bodies are possessive `[^<>]*+` (stopping at the next `<`), and
the end of a script is found by one forward search per opening tag, never by a lazy `.*?`.
"""

from __future__ import annotations

import re
from typing import Final

from monitor.guard.redaction import Hit, redact

_SCRIPT_OPEN: Final = re.compile(r"<\s*script\b[^<>]*+>?", re.IGNORECASE)
_SCRIPT_CLOSE: Final = re.compile(r"<\s*/\s*script\b[^<>]*+>?", re.IGNORECASE)
_TAG: Final = re.compile(
    r"<\s*/?\s*(?:iframe|object|embed|frame|frameset|applet)\b[^<>]*+>?", re.IGNORECASE
)
_SCRIPT_URL: Final = re.compile(
    r"(?<![\w])(?:j\s*a\s*v\s*a|v\s*b)\s*s\s*c\s*r\s*i\s*p\s*t\s*"
    r"(?::|&#0*58;?|&#x0*3a;?|&colon;)[^\s\"'<>]*+",
    re.IGNORECASE,
)
_DATA_URL: Final = re.compile(
    r"(?<![\w])data\s*:\s*(?:text/html|image/svg\+xml|application/xhtml\+xml|"
    r"text/javascript|application/javascript)[^\s\"'<>]*+",
    re.IGNORECASE,
)
MAX_PASSES: Final = 8


def find_markup(text: str) -> list[Hit]:
    """Every piece of active markup in `text`, as hits to strip (replacement '')."""
    hits: list[Hit] = []
    if "<" in text:
        hits += _scripts(text)
        hits += [
            Hit("markup.tag", "markup", m.start(), m.end(), detail="embedding tag")
            for m in _TAG.finditer(text)
        ]
    if ":" in text or "&" in text:
        hits += [
            Hit("markup.script_url", "markup", m.start(), m.end(), detail="script URL")
            for m in _SCRIPT_URL.finditer(text)
        ]
        hits += [
            Hit("markup.data_url", "markup", m.start(), m.end(), detail="active data URL")
            for m in _DATA_URL.finditer(text)
        ]
    return hits


def _scripts(text: str) -> list[Hit]:
    hits: list[Hit] = []
    position = 0
    while position < len(text):
        opening = _SCRIPT_OPEN.search(text, position)
        gap_end = opening.start() if opening else len(text)
        hits += [  # closing tags with no opening one
            Hit("markup.script", "markup", m.start(), m.end(), detail="script tag")
            for m in _SCRIPT_CLOSE.finditer(text, position, gap_end)
        ]
        if opening is None:
            break
        closing = _SCRIPT_CLOSE.search(text, opening.end())
        end = closing.end() if closing else len(text)
        hits.append(Hit("markup.script", "markup", opening.start(), end, detail="script element"))
        position = end
    return hits


def strip_markup(text: str, hits: list[Hit]) -> str:
    """`text` without the hits, and without whatever their removal made appear: repeated to a
    fixed point, and after `MAX_PASSES` the remaining `<` are escaped so no tag can survive."""
    for _ in range(MAX_PASSES):
        if not hits:
            return text
        text = redact(text, hits)
        hits = find_markup(text)
    return redact(text, hits).replace("<", "&lt;") if hits else text
