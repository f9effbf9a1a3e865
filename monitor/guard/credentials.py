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

from monitor.guard.redaction import Hit

_VENDOR_KEYS: Final = re.compile(
    r"(?<![\w-])(?:"
    r"(?P<openai>sk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]{2,8}-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<aws>(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9]))"
    r"|(?P<github>gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"
    r"|(?P<slack>xox[abposr]-[A-Za-z0-9-]{10,})"
    r"|(?P<google>AIza[0-9A-Za-z_-]{35})"
    r"|(?P<stripe>[rsp]k_(?:live|test)_[0-9A-Za-z]{16,})"
    r"|(?P<jwt>eyJ[A-Za-z0-9_-]{5,}+\.eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{10,}+)"
    r")"
)
_BEARER: Final = re.compile(r"(?<![\w-])bearer\s{1,8}([A-Za-z0-9._~+/-]{16,}+=*)", re.IGNORECASE)
_ASSIGNMENT: Final = re.compile(
    r"(?<![\w-])(?:api[_-]?key|secret(?:[_-]?key)?|client[_-]?secret|passw(?:or)?d|pwd"
    r"|(?:access|auth|refresh|api)?[_-]?token|aws_secret_access_key)"
    r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?([^\s\"',;]{6,}+)",
    re.IGNORECASE,
)
_KEY_BEGIN: Final = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END: Final = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_SYMBOLS: Final = frozenset("!#$%&*+-./:<=>?@^_~|")


def _secret(rule: str, start: int, end: int, detail: str) -> Hit:
    return Hit(f"pii.secret.{rule}", "secret", start, end, "[SECRET]", detail=detail)


def find_secrets(text: str) -> list[Hit]:
    """Every secret in `text`."""
    hits = [
        _secret(m.lastgroup or "key", m.start(), m.end(), f"{m.lastgroup} credential")
        for m in _VENDOR_KEYS.finditer(text)
    ]
    hits += [
        _secret("bearer", m.start(1), m.end(1), "bearer token") for m in _BEARER.finditer(text)
    ]
    hits += [
        _secret("assignment", m.start(1), m.end(1), "assigned secret value")
        for m in _ASSIGNMENT.finditer(text)
        if _looks_secret(m.group(1))
    ]
    if "-----BEGIN" in text:
        hits += _private_keys(text)
    return hits


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
