"""Policy checks compiled into runnable text rules: the link between a check's declaration
(`monitor.guard.checks`) and its detection code, built once per policy so that a request pays
for matching only.

A `TextRule` scans one text and says what its hits do. The engine decides the order, the
texts, and how verdicts combine; the rules know nothing of messages or stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.guard.checks import (
    DenyListCheck,
    InjectionCheck,
    LengthCheck,
    PiiCheck,
    SanitizeCheck,
)
from monitor.guard.detectors.denylist import DenyList
from monitor.guard.detectors.injection import score_injection
from monitor.guard.detectors.pii import pii_scanner
from monitor.guard.detectors.redaction import Hit, redact
from monitor.guard.detectors.sanitize import find_markup, strip_markup
from monitor.guard.verdict import Action

TextCheck = LengthCheck | SanitizeCheck | PiiCheck | InjectionCheck | DenyListCheck


@dataclass(frozen=True, slots=True)
class TextRule:
    """One check, ready to run on a text.

    `scan` finds hits; a hit's action is `action`, except for scored hits below `threshold`,
    which are `allow`. `rewrite` takes the hits out of the text when the action is redact.
    """

    key: str
    action: Action
    scan: Callable[[str], list[Hit]]
    rewrite: Callable[[str, list[Hit]], str] = redact
    threshold: float | None = None
    roles: frozenset[str] | None = None
    max_total_chars: int | None = field(default=None)

    def action_for(self, hit: Hit) -> Action:
        if self.threshold is not None and (hit.score or 0.0) < self.threshold:
            return Action.ALLOW
        return self.action


def compile_rule(check: TextCheck) -> TextRule:
    """The runnable rule for one declared check."""
    roles = frozenset(r.value for r in check.roles) if check.roles is not None else None
    if isinstance(check, LengthCheck):
        action = Action.REDACT if check.action == "truncate" else Action(check.action)
        return TextRule(
            check.key,
            action,
            _length_scanner(check.max_chars),
            roles=roles,
            max_total_chars=check.max_total_chars,
        )
    if isinstance(check, SanitizeCheck):
        return TextRule(check.key, Action(check.action), find_markup, strip_markup, roles=roles)
    if isinstance(check, PiiCheck):
        kinds = tuple(dict.fromkeys(check.types))
        return TextRule(check.key, Action(check.action), pii_scanner(kinds), roles=roles)
    if isinstance(check, InjectionCheck):
        return TextRule(
            check.key, Action(check.action), _injection_scan, threshold=check.threshold, roles=roles
        )
    deny = DenyList(check.terms, category=check.category, match=check.match, allow=check.allow)
    return TextRule(check.key, Action(check.action), deny.find, roles=roles)


def _length_scanner(max_chars: int) -> Callable[[str], list[Hit]]:
    def scan(text: str) -> list[Hit]:
        if len(text) <= max_chars:
            return []
        detail = f"{len(text)} characters; at most {max_chars} are allowed"
        return [Hit("length.max_chars", "length", max_chars, len(text), "", detail=detail)]

    return scan


def _injection_scan(text: str) -> list[Hit]:
    """One hit per text: the strongest pattern's span, carrying the text's combined score."""
    result = score_injection(text)
    if not result.hits:
        return []
    top = result.hits[0]
    names = ", ".join(h.rule.removeprefix("injection.") for h in result.hits)
    return [Hit(top.rule, "injection", top.start, top.end, "", result.score, f"matched: {names}")]
