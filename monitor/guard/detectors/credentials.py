"""Secrets in text: API keys by their vendors' formats, bearer and JWT tokens, `key = value`
assignments of passwords and tokens, and PEM private key blocks. All become `[SECRET]`.

Vendor formats are precise enough to match alone (OpenAI `sk-...`, AWS `AKIA...`, GitHub
`ghp_...`, Slack `xox.-...`, Google `AIza...`, Stripe `sk_live_...`). An assignment needs a
value that looks like a secret (a digit or a symbol, or 12+ characters), so that prose such
as "the password: whatever you like" is left alone; only the value is redacted.

A private key's end is found with one forward search per `BEGIN` (never a lazy `.*?`, which
turns quadratic on many unterminated blocks); a block with no `END` is redacted to the end
of the text, because half a key is still a secret.
"""

from __future__ import annotations

import re
from typing import Final

from monitor.guard.detectors.normalize import word_starts
from monitor.guard.detectors.redaction import Hit

# Vendor formats: each key holds a rare character (`-`, `_`, `A` or `J`) at a fixed place,
# and one regex finds those places in a single pass (a set of four characters is scanned for
# at C speed, where a search per literal would read the text twenty times). The anchor's
# group says which vendor, and how far back from it the key starts; the vendor's pattern is
# then tried only where a key could start a token: "eyJeyJeyJ..." costs one attempt, not one
# per occurrence (each attempt runs to the end of the token, so that would be quadratic).
_VENDOR_KEYS: Final = {
    name: (back, re.compile(pattern))
    for name, back, pattern in (
        ("openai", 2, r"sk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]{2,8}-)?[A-Za-z0-9_-]{20,}+"),
        ("aws", 0, r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        ("github", 3, r"gh[pousr]_[A-Za-z0-9]{36,255}+"),
        ("github_pat", 6, r"github_pat_[A-Za-z0-9_]{22,255}+"),
        ("slack", 4, r"xox[abposr]-[A-Za-z0-9-]{10,}+"),
        ("google", 0, r"AIza[0-9A-Za-z_-]{35}"),
        ("stripe", 2, r"[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}+"),
        ("jwt", 2, r"eyJ[A-Za-z0-9_-]{5,}+\.eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{10,}+"),
    )
}
_VENDOR_ANCHOR: Final = re.compile(  # literals first: the engine skips to those characters
    r"-(?:(?<=sk-)(?P<openai>)|(?<=xox[abposr]-)(?P<slack>))"
    r"|_(?:(?<=gh[pousr]_)(?P<github>)|(?<=github_)(?=pat_)(?P<github_pat>)"
    r"|(?<=[rsp]k_)(?=live_|test_)(?P<stripe>))"
    r"|A(?:(?=KIA|SIA|BIA|CCA)(?P<aws>)|(?=Iza)(?P<google>))|J(?<=eyJ)(?P<jwt>)"
)
_BEARER: Final = re.compile(r"bearer\s{1,8}([A-Za-z0-9._~+/-]{16,}+=*)", re.IGNORECASE)
# an assignment is tried where its keyword's last word starts, in the lower-cased text
_ASSIGNMENT_WORDS: Final = ("key", "secret", "passw", "pwd", "token")
_ASSIGNMENT: Final = re.compile(
    r"(?:key|secret(?:[_-]?key)?|passw(?:or)?d|pwd|token)"
    r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?([^\s\"',;]{6,}+)"
)
_KEY_BEGIN: Final = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END: Final = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_SYMBOLS: Final = frozenset("!#$%&*+-./:<=>?@^_~|")


def _secret(rule: str, start: int, end: int, detail: str) -> Hit:
    return Hit(f"pii.secret.{rule}", "secret", start, end, "[SECRET]", detail=detail)


def find_secrets(text: str) -> list[Hit]:
    """Every secret in `text`."""
    # the token boundary is checked here rather than by a leading look-behind, which would
    # make the regex engine try every position instead of skipping to the first letters
    hits = []
    covered = 0  # where the last key ended: anchors inside it start no other key
    for anchor in _VENDOR_ANCHOR.finditer(text):
        name = anchor.lastgroup
        assert name is not None
        back, pattern = _VENDOR_KEYS[name]
        start = anchor.start() - back
        if start < covered or (
            start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-")
        ):
            continue
        match = pattern.match(text, start)
        if match:
            vendor = "github" if name == "github_pat" else name
            hits.append(_secret(vendor, start, match.end(), f"{vendor} credential"))
            covered = match.end()
    low = text.lower()
    if len(low) != len(text):  # a few characters lower-case to two: keep offsets right
        low = text
    for position in word_starts(low, "bearer") if "earer" in low else ():
        match = _BEARER.match(text, position)
        if match:
            hits.append(_secret("bearer", match.start(1), match.end(1), "bearer token"))
    for word in _ASSIGNMENT_WORDS:
        position = low.find(word)
        while position >= 0:
            match = _ASSIGNMENT.match(low, position) if _keyword_start(low, position) else None
            if match and _looks_secret(text[match.start(1) : match.end(1)]):
                hits.append(
                    _secret("assignment", match.start(1), match.end(1), "assigned secret value")
                )
            position = low.find(word, match.end() if match else position + 1)
    if "-----BEGIN" in text:
        hits += _private_keys(text)
    return hits


def _keyword_start(low: str, position: int) -> bool:
    """`key` in `api_key` or `apikey`, `token` in `access_token`: yes; in `monkey`: no."""
    if position == 0 or not low[position - 1].isalnum():
        return True
    return low.endswith(_KEY_PREFIXES, 0, position)  # no slice: that would copy the text


_KEY_PREFIXES: Final = ("api", "access", "auth", "refresh", "client", "private", "secret")


def _looks_secret(value: str) -> bool:
    return len(value) >= 12 or any(c.isdigit() or c in _SYMBOLS for c in value)


def _private_keys(text: str) -> list[Hit]:
    hits = []
    position = 0
    while (begin := _KEY_BEGIN.search(text, position)) is not None:
        end = _KEY_END.search(text, begin.end())
        stop = end.end() if end else len(text)
        hits.append(_secret("private_key", begin.start(), stop, "private key block"))
        if end is None:
            break
        position = stop
    return hits
