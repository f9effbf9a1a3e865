"""Active markup: what a browser would run if a prompt or a response were rendered as HTML.

Finds, as spans to strip:

- `<script>` and active `<style>` elements with their content (an unclosed one runs to the end
  of the text, as a browser would take it); `<iframe>`, `<object>`, `<embed>`, `<frame>`,
  `<applet>` and `<base>` tags;
- `javascript:` / `vbscript:` URLs and `data:` URLs of HTML, SVG or script, also when the
  scheme is entity-encoded (`&#106;avascript:`, `&#x6A;`, `&colon;`) or split by tabs,
  newlines or control characters (browsers drop tabs and newlines inside a URL);
- attributes that run script, in any tag: event handlers (`onerror=`, `onload=`, any case,
  quoted or not, after a space, a `/` or a closing quote), `srcdoc=`, `style=` with
  `expression(`, a script URL, `-moz-binding` or `behavior:` (after entity and CSS escapes and
  comments are undone), `http-equiv="refresh"`, and SVG `attributeName="href"` (what lets
  `<animate>`/`<set>` put a script URL into a link).

Markup is found wherever it is, code fences included: a fence is no protection where the
text is rendered as HTML. Text that only talks about markup is left alone: `el.onclick = f`,
`onion`, `one=1`, escaped `&lt;img onerror=...&gt;`, attributes of tags that run nothing.

An attribute counts as inside a tag when a tag start (`<` and a letter) comes before it and no
`>` does in between, or the last `>` before it is followed by a quote (a `>` inside a quoted
value does not end a tag). This errs towards stripping: a browser's tag always passes it.

Stripping runs to a fixed point, so `<scr<script></script>ipt>` cannot reassemble a tag once
the inner one is gone. Every pattern starts with a literal character, so the regex engine
skips ahead to where a match can begin, and is linear: tag bodies are possessive `[^<>]*+`,
the end of an element is found by one forward search per opening tag, never by a lazy `.*?`,
and attributes are found from the `=` before their value.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Final

from monitor.guard.detectors.redaction import Hit, redact

_SCRIPT_OPEN: Final = re.compile(r"<\s*script\b[^<>]*+>?", re.IGNORECASE)
_SCRIPT_CLOSE: Final = re.compile(r"<\s*/\s*script\b[^<>]*+>?", re.IGNORECASE)
_STYLE_OPEN: Final = re.compile(r"<\s*style\b[^<>]*+>?", re.IGNORECASE)
_STYLE_CLOSE: Final = re.compile(r"<\s*/\s*style\b[^<>]*+>?", re.IGNORECASE)
_TAG: Final = re.compile(
    r"<\s*/?\s*(?:iframe|object|embed|frame|frameset|applet|base)\b[^<>]*+>?", re.IGNORECASE
)
_TAG_START: Final = re.compile(r"<(?=/?[A-Za-z])")
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

# Character references a browser decodes in attribute values (numeric ones also without the
# `;`); only the named ones that can spell part of a URL or a style are decoded here.
_ENTITY: Final = re.compile(
    r"&(?:#[xX]([0-9a-fA-F]{1,8});?|#([0-9]{1,10});?"
    r"|(colon|Tab|NewLine|lpar|rpar|sol|bsol|quot|apos|equals|period|amp|lt|gt);)"
)
# only these can spell part of a scheme: without one, URLs are looked for in the text as is
_SCHEME_ENTITY: Final = re.compile(r"&(?:#|colon;|Tab;|NewLine;)")
_SCHEME_ENDS: Final = frozenset("tTaA" + "".join(map(chr, range(32))))
_NAMED: Final = {
    "colon": ":", "Tab": "\t", "NewLine": "\n", "lpar": "(", "rpar": ")", "sol": "/",
    "bsol": "\\", "quot": '"', "apos": "'", "equals": "=", "period": ".", "amp": "&",
    "lt": "<", "gt": ">",
}  # fmt: skip

# HTML attributes: whitespace as the tokenizer knows it, what may precede a name, name chars.
_SPACE: Final = "\t\n\f\r "
# reversed: `=`, whitespace, the name (handlers: letters then `no`), what precedes the name
_NAME_BACKWARDS: Final = re.compile(
    r"=[\t\n\f\r ]*+([a-z]{3,46}?no|elyts|codcrs|viuqe-ptth|emanetubirtta)(?=[\t\n\f\r /\"'])",
    re.IGNORECASE | re.ASCII,
)
_VALUE: Final = re.compile(r"""[\t\n\f\r ]*+(?:"[^"]*+"?|'[^']*+'?|[^\t\n\f\r >]*+)""")
_ALWAYS: Final = frozenset({"srcdoc"})  # attributes stripped whatever their value
_REFRESH: Final = ("refresh", "set-cookie")
_HREF: Final = ("href", "xlink:href")

# CSS that runs script (old IE and Firefox) or loads a script URL.
_CSS_ESCAPE: Final = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(.))", re.DOTALL)
_CSS_MARKERS: Final = ("expression(", "javascript:", "vbscript:", "-moz-binding", "behavior:")


def find_markup(text: str) -> list[Hit]:
    """Every piece of active markup in `text`, as hits to strip (replacement '')."""
    hits: list[Hit] = []
    if "<" in text:
        hits += _scripts(text)
        hits += _styles(text)
        hits += [
            Hit("markup.tag", "markup", m.start(), m.end(), detail="embedding tag")
            for m in _TAG.finditer(text)
        ]
        first_tag = _TAG_START.search(text)
        if first_tag is not None and "=" in text:
            hits += _attributes(text, first_tag.start())
    if ":" in text or "&" in text:
        hits += _urls(text)
    return hits


# --- character references -------------------------------------------------------------------


@dataclass(slots=True)
class _Decoded:
    """`original` with character references decoded, and the way back to its offsets."""

    text: str
    starts: list[int] = field(default_factory=list)  # decoded offset of each reference
    extra: list[int] = field(default_factory=list)  # original characters it saved, cumulated

    def original(self, index: int) -> int:
        count = bisect_left(self.starts, index)  # references wholly before `index`
        return index + (self.extra[count - 1] if count else 0)


def _decode(text: str) -> _Decoded:
    pieces: list[str] = []
    decoded = _Decoded("")
    last = saved = length = 0
    for match in _ENTITY.finditer(text):
        hex_, decimal, name = match.groups()
        if name is not None:
            char = _NAMED[name]
        else:
            code = int(hex_, 16) if hex_ is not None else int(decimal)
            valid = 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF
            char = chr(code) if valid else "\ufffd"
        pieces.append(text[last : match.start()])
        length += match.start() - last
        decoded.starts.append(length)
        saved += match.end() - match.start() - 1
        decoded.extra.append(saved)
        pieces.append(char)
        length += 1
        last = match.end()
    pieces.append(text[last:])
    decoded.text = "".join(pieces)
    return decoded


def _unescape(value: str) -> str:
    return _decode(value).text if "&" in value else value


# --- URLs -----------------------------------------------------------------------------------


def _urls(text: str) -> list[Hit]:
    """`javascript:` and `vbscript:` URLs (tabs, newlines or control characters inside the
    scheme, and character references anywhere in it) and active `data:` URLs, found from their
    colons: a colon is rare, and only those right after a `t` or an `a` are looked at further.
    """
    decoded = _decode(text) if "&" in text and _SCHEME_ENTITY.search(text) else None
    view = decoded.text if decoded is not None else text
    hits = []
    colon = view.find(":")
    while colon >= 0:
        if colon == 0 or view[colon - 1] not in _SCHEME_ENDS:  # most colons: at once
            colon = view.find(":", colon + 1)
            continue
        start, scheme = _scheme_before(view, colon)
        end = colon
        if scheme in _SCRIPT_SCHEMES:
            end = _body_end(view, colon + 1)
            hits.append(("markup.script_url", start, end, "script URL"))
        elif scheme == "data":
            tail = view[colon + 1 : colon + 33]
            media = tail.lstrip()
            if media.lower().startswith(_ACTIVE_DATA):
                end = _body_end(view, colon + 1 + len(tail) - len(media))
                hits.append(("markup.data_url", start, end, "active data URL"))
        colon = view.find(":", max(end, colon + 1))
    if decoded is None:
        return [Hit(rule, "markup", s, e, detail=d) for rule, s, e, d in hits]
    return [
        Hit(rule, "markup", decoded.original(s), decoded.original(e), detail=d)
        for rule, s, e, d in hits
    ]


def _body_end(text: str, position: int) -> int:
    match = _URL_BODY.match(text, position)
    return match.end() if match else position


def _scheme_before(text: str, colon: int) -> tuple[int, str]:
    """The scheme that ends at `colon` if it is javascript, vbscript or data (letters, with
    control characters between them ignored, starting a word), as (start, lower-case scheme)."""
    letters: list[tuple[int, str]] = []
    index = colon
    skipped = 0
    while index > 0 and len(letters) < 11:
        char = text[index - 1]
        index -= 1
        if char < " " and skipped < 32:  # browsers drop tabs and newlines inside a URL
            skipped += 1
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


# --- elements -------------------------------------------------------------------------------


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


def _styles(text: str) -> list[Hit]:
    """`<style>` elements whose CSS runs script; harmless style sheets stay."""
    hits: list[Hit] = []
    position = 0
    while (opening := _STYLE_OPEN.search(text, position)) is not None:
        closing = _STYLE_CLOSE.search(text, opening.end())
        inner_end, end = (closing.start(), closing.end()) if closing else (len(text), len(text))
        if _active_css(text[opening.end() : inner_end]):
            hits.append(
                Hit("markup.style", "markup", opening.start(), end, detail="style with script")
            )
        position = end
    return hits


def _active_css(css: str) -> bool:
    """Whether a style sheet or a `style` attribute runs or loads script. Checked as written
    and with character references decoded (SVG decodes them inside `<style>` too)."""
    views = (css, _unescape(css)) if "&" in css else (css,)
    for view in views:
        normal = _css_normal(view)
        if any(marker in normal for marker in _CSS_MARKERS):
            return True
    return False


def _css_normal(css: str) -> str:
    """CSS without comments, escapes or whitespace, lower-cased: `ex/**/pr\\65 ssion (` is
    `expression(`."""
    if "/*" in css:
        kept = []
        position = 0
        while (opening := css.find("/*", position)) >= 0:
            kept.append(css[position:opening])
            closing = css.find("*/", opening + 2)
            position = len(css) if closing < 0 else closing + 2
        kept.append(css[position:])
        css = "".join(kept)
    if "\\" in css:
        css = _CSS_ESCAPE.sub(_css_char, css)
    return "".join(css.lower().split())


def _css_char(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return match.group(2)
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


# --- attributes -----------------------------------------------------------------------------


class _TagContext:
    """Where tags may be open: tag starts, `>` and quotes, looked up by bisection. Built only
    when a text has an attribute worth asking about."""

    def __init__(self, text: str) -> None:
        self.starts = [m.start() for m in _TAG_START.finditer(text)]
        self.closes = _positions(text, ">")
        self.quotes = sorted(_positions(text, '"') + _positions(text, "'"))

    def inside(self, position: int) -> bool:
        """Whether `position` may be inside a tag (see the module docstring)."""
        count = bisect_left(self.starts, position)
        if count == 0:
            return False
        start = self.starts[count - 1]
        count = bisect_left(self.closes, position)
        if count == 0 or self.closes[count - 1] < start:
            return True
        quote = bisect_right(self.quotes, self.closes[count - 1])
        return quote < len(self.quotes) and self.quotes[quote] < position


def _positions(text: str, char: str) -> list[int]:
    found = []
    position = text.find(char)
    while position >= 0:
        found.append(position)
        position = text.find(char, position + 1)
    return found


def _attributes(text: str, first_tag: int) -> list[Hit]:
    """Attributes that run script after the first tag start, found from their `=`: one regex
    over the reversed text, so that it starts with the literal `=` (the engine skips to each
    one) and reads the name backwards up to what precedes it (a space, `/` or quote)."""
    hits: list[Hit] = []
    context: _TagContext | None = None
    length = len(text)
    for match in _NAME_BACKWARDS.finditer(text[::-1], 0, length - first_tag):
        name = match.group(1)[::-1].lower()
        kind = _attribute_kind(name)
        if kind is None:
            continue
        equals = length - 1 - match.start()
        value = _VALUE.match(text, equals + 1)
        value_end = value.end() if value else equals + 1
        if not _attribute_active(kind, text[equals + 1 : value_end]):
            continue
        name_start = length - match.end()
        if context is None:
            context = _TagContext(text)
        if context.inside(name_start):
            hits.append(Hit(f"markup.{kind}", "markup", name_start, value_end, detail=kind))
    return hits


def _attribute_kind(name: str) -> str | None:
    if name.startswith("on") and len(name) >= 5 and name.isalpha():
        return "event_handler"  # on + at least three letters: oncut, onload; not "one"
    if name in _ALWAYS:
        return "srcdoc"
    if name == "style":
        return "style"
    if name == "http-equiv":
        return "refresh"
    if name == "attributename":
        return "animated_href"
    return None


def _attribute_active(kind: str, raw_value: str) -> bool:
    if kind in ("event_handler", "srcdoc"):
        return True
    value = _unescape(raw_value.strip(_SPACE + "\"'"))
    if kind == "style":
        return _active_css(value)
    folded = "".join(value.lower().split())
    return folded in (_REFRESH if kind == "refresh" else _HREF)


def strip_markup(text: str, hits: list[Hit]) -> str:
    """`text` without the hits, and without whatever their removal made appear: repeated to a
    fixed point, and after `MAX_PASSES` the remaining `<` are escaped so no tag can survive."""
    for _ in range(MAX_PASSES):
        if not hits:
            return text
        text = redact(text, hits)
        hits = find_markup(text)
    return redact(text, hits).replace("<", "&lt;") if hits else text
