"""Active markup: what a browser would run if a prompt or a response were rendered as HTML.

Finds `<script>` elements with their content (an unclosed one runs to the end of the text,
as a browser would take it), `<iframe>`, `<object>`, `<embed>`, `<frame>`, `<applet>` tags,
`javascript:` / `vbscript:` URLs (also split by tabs or newlines, or ending in `&#58;`) and `data:` URLs of HTML,
SVG or script. Stripping runs to a fixed point, so `<scr<script></script>ipt>` cannot
reassemble a tag once the inner one is gone.

Every pattern starts with a literal character, so the regex engine skips ahead to where a
match can begin (a look-behind first would be tried at every position), and is linear: tag bodies are possessive `[^<>]*+` (stopping at the next `<`), and
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
_ENTITY_COLON: Final = re.compile(r"&#0*58;?|&#[xX]0*3[aA];?|&colon;")
_URL_BODY: Final = re.compile(r"[^\s\"'<>]*+")
_SCRIPT_SCHEMES: Final = ("javascript", "vbscript")
_ACTIVE_DATA: Final = (
    "text/html",
    "image/svg+xml",
    "application/xhtml+xml",
    "text/javascript",
    "application/javascript",
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
        hits += _urls(text)
    return hits


def _urls(text: str) -> list[Hit]:
    """`javascript:` and `vbscript:` URLs (tabs or newlines inside the scheme and an entity
    colon allowed, as browsers allow them) and active `data:` URLs, found from their colons: a
    colon is rare, and only those right after a `t` or an `a` are looked at further."""
    hits = []
    for colon, after in _colons(text):
        start, scheme = _scheme_before(text, colon)
        if scheme in _SCRIPT_SCHEMES:
            end = _body_end(text, after)
            hits.append(Hit("markup.script_url", "markup", start, end, detail="script URL"))
        elif scheme == "data":
            tail = text[after : after + 32]
            media = tail.lstrip()
            if media.lower().startswith(_ACTIVE_DATA):
                end = _body_end(text, after + len(tail) - len(media))
                hits.append(Hit("markup.data_url", "markup", start, end, detail="active data URL"))
    return hits


def _body_end(text: str, position: int) -> int:
    match = _URL_BODY.match(text, position)
    return match.end() if match else position


def _colons(text: str) -> list[tuple[int, int]]:
    """(start, end) of every `:` and entity-encoded colon."""
    found = []
    position = text.find(":")
    while position >= 0:
        found.append((position, position + 1))
        position = text.find(":", position + 1)
    position = text.find("&")
    while position >= 0:
        match = _ENTITY_COLON.match(text, position)
        if match:
            found.append((position, match.end()))
        position = text.find("&", position + 1)
    return found


def _scheme_before(text: str, colon: int) -> tuple[int, str]:
    """The scheme that ends at `colon` if it is javascript, vbscript or data (letters, with
    whitespace between them ignored, starting a word), as (start, lower-case scheme)."""
    letters: list[tuple[int, str]] = []
    index = colon
    while index > 0 and len(letters) < 11:
        char = text[index - 1]
        index -= 1
        if char in "\t\n\r" and len(letters) < 10:  # browsers drop these inside a URL
            continue
        if not (char.isascii() and char.isalpha()):
            break
        if not letters and char not in "tTaA":  # every scheme sought ends in t or a
            return colon, ""
        letters.append((index, char.lower()))
    word = "".join(c for _, c in reversed(letters))
    for scheme in (*_SCRIPT_SCHEMES, "data"):
        if word.endswith(scheme):
            first = len(letters) - len(scheme)
            start = letters[len(scheme) - 1][0]
            if first == 0 and (
                start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")
            ):
                return start, scheme
    return colon, ""


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
