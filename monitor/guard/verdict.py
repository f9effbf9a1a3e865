"""What a guard decides: one `Finding` per thing a check noticed, one `Verdict` per stage.

A block is a normal result, not an exception: the proxy reads `Verdict.action` and answers
CONTENT_FILTERED / RESPONSE_FILTERED (or VALIDATION_ERROR for `category == "validation"`)
itself. Findings never carry the matched text, only where it was, so a stored verdict cannot
leak the PII or secret it found.

These are plain slotted dataclasses rather than pydantic models: one request builds several,
and the guard's budget is a fraction of a millisecond.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """Where in the request path a verdict was reached."""

    INPUT = "input"
    OUTPUT = "output"


class Action(StrEnum):
    """What a finding asks for, and what a verdict does. Ordered: `block` > `redact` > `flag`."""

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"


_RANK = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.BLOCK: 3}


def strongest(actions: Iterable[Action]) -> Action:
    """The action that wins among several: block wins over redact, which wins over flag."""
    best = Action.ALLOW
    for action in actions:
        if _RANK[action] > _RANK[best]:
            best = action
    return best


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing one check noticed.

    `span` is a half-open character range in the text the check saw, which is the text after
    any redaction made by earlier checks of the same stage (checks run in policy order).
    `path` says which text: `messages[2].content`, `messages[0].content[1].text`, or None for
    the output text. A scored finding below its check's threshold has action `allow`: it is
    kept because near misses are what one tunes thresholds with.
    """

    rule: str  # what matched, dotted: "pii.email", "injection.ignore_previous"
    category: str  # the family: validation, length, markup, pii, secret, injection, denylist
    action: Action
    check: str  # id of the policy check that produced it
    path: str | None = None
    span: tuple[int, int] | None = None
    score: float | None = None
    detail: str | None = None  # a human explanation, never the matched content

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for records and admin answers."""
        return {
            "rule": self.rule,
            "category": self.category,
            "action": self.action.value,
            "check": self.check,
            "path": self.path,
            "span": list(self.span) if self.span else None,
            "score": self.score,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The combined decision of one stage of one policy.

    `action` is the strongest action among the findings (`allow` when there are none).
    When it is `redact`, `redacted_messages` (input) or `redacted_text` (output) hold what
    to forward instead of the original; they are None otherwise.
    """

    stage: Stage
    policy: str
    action: Action
    findings: tuple[Finding, ...] = ()
    redacted_text: str | None = None
    redacted_messages: list[Any] | None = None
    latency_us: int = 0
    classifier: str = "rules"
    skipped: tuple[str, ...] = field(default=())  # ids of checks this guard did not run
    findings_omitted: int = 0  # findings a bounded copy no longer lists (see `bounded`)

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def reason(self) -> Finding | None:
        """The first finding that decided the action: what a refusal should name."""
        for finding in self.findings:
            if finding.action is self.action and self.action is not Action.ALLOW:
                return finding
        return None

    def without_skipped(self, ran: Collection[str]) -> Verdict:
        """This verdict with the checks in `ran` no longer listed as skipped (another guard
        ran them); itself when none of them is listed."""
        if not self.skipped or not ran:
            return self
        kept = tuple(s for s in self.skipped if s not in ran)
        return self if len(kept) == len(self.skipped) else dataclasses.replace(self, skipped=kept)

    @property
    def max_score(self) -> float | None:
        """The highest score among scored findings, None when no check produced a score."""
        scores = [f.score for f in self.findings if f.score is not None]
        return max(scores) if scores else None

    def bounded(self, max_findings: int) -> Verdict:
        """This verdict listing about `max_findings` findings at most (itself when it lists no
        more): a hostile text can carry thousands (a digit run per few characters), and each
        costs time to copy, record and store. Past the bound a finding is still listed when it
        is the first of its check, rule and action, or the highest score, so the deciding
        finding, every kind of finding and the score survive; `findings_omitted` counts the
        rest."""
        findings = self.findings
        if len(findings) <= max_findings:
            return self
        top = max(findings, key=lambda f: -1.0 if f.score is None else f.score)
        seen: set[tuple[str, str, Action]] = set()
        kept: list[Finding] = []
        for finding in findings:
            kind = (finding.check, finding.rule, finding.action)
            if len(kept) < max_findings or kind not in seen or finding is top:
                kept.append(finding)
            seen.add(kind)
        omitted = self.findings_omitted + len(findings) - len(kept)
        return dataclasses.replace(self, findings=tuple(kept), findings_omitted=omitted)

    def as_dict(self, max_findings: int | None = None) -> dict[str, Any]:
        """A JSON-ready form (without redacted content: storing it is the recorder's choice),
        listing at most `max_findings` findings as `bounded` keeps them."""
        verdict = self if max_findings is None else self.bounded(max_findings)
        omitted = verdict.findings_omitted
        answer = {
            "stage": self.stage.value,
            "policy": self.policy,
            "action": self.action.value,
            "findings": [f.as_dict() for f in verdict.findings],
            "latency_us": self.latency_us,
            "classifier": self.classifier,
            "skipped": list(self.skipped),
        }
        if omitted:
            answer["findings_omitted"] = omitted
        return answer
