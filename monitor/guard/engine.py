"""The rules engine: a policy's deterministic checks run over a request or a response.

`Guard(policy).check_input(messages)` and `.check_output(text)` are synchronous and pure
(no I/O, nothing shared between calls), cost microseconds, and always return a `Verdict`.
Checks run in policy order and each sees the text as earlier checks redacted it; the first
check whose findings block ends the stage, because nothing after can change a block and a
blocked 1 MB prompt should not be scanned further. `shieldgemma` and `shieldgemma2` checks are
listed in `Verdict.skipped`: the model classifiers run them, and their verdict combines with
this one.
"""

from __future__ import annotations

import time
from typing import Any

from monitor.guard.checks import ShieldGemma2Check, ShieldGemmaCheck, ValidationCheck
from monitor.guard.detectors.validation import validate_messages
from monitor.guard.messages import Segment, segments, with_texts
from monitor.guard.policy import Policy
from monitor.guard.rules import TextRule, compile_rule
from monitor.guard.verdict import Action, Finding, Stage, Verdict, strongest

_Step = TextRule | ValidationCheck | str  # a str: the id of a check this engine does not run


class Guard:
    """Runs one policy's rule-based checks. Build once per policy, share across requests."""

    classifier = "rules"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._input: list[_Step] = [_step(c) for c in policy.input.checks]
        self._output: list[_Step] = [_step(c) for c in policy.output.checks]

    def check_input(self, messages: Any) -> Verdict:
        """Check a request's `messages` (as the client sent them, unvalidated)."""
        started = time.perf_counter_ns()
        findings: list[Finding] = []
        skipped: list[str] = []
        texts: list[Segment] | None = None
        current: list[str] = []
        for step in self._input:
            if isinstance(step, str):
                skipped.append(step)
                continue
            if isinstance(step, ValidationCheck):
                action = Action(step.action)
                problems = validate_messages(
                    messages,
                    max_messages=step.max_messages,
                    allowed_roles=step.allowed_roles,
                    max_parts=step.max_parts,
                    max_total_chars=step.max_total_chars,
                )
                findings += [
                    Finding(p.rule, "validation", action, step.key, p.path, detail=p.detail)
                    for p in problems
                ]
                if problems and action is Action.BLOCK:
                    break
                continue
            if texts is None:
                texts = segments(messages)
                current = [s.text for s in texts]
            blocked = self._apply(step, texts, current, findings)
            if blocked:
                break
        action = strongest(f.action for f in findings)
        redacted = None
        if action is Action.REDACT and texts is not None:
            changed = [(s, t) for s, t in zip(texts, current, strict=True) if t is not s.text]
            redacted = with_texts(messages, changed) if changed else None
        return Verdict(
            Stage.INPUT,
            self.policy.name,
            action,
            tuple(findings),
            redacted_messages=redacted,
            latency_us=(time.perf_counter_ns() - started) // 1000,
            classifier=self.classifier,
            skipped=tuple(skipped),
        )

    def check_output(self, text: str, *, rewrite: bool = True) -> Verdict:
        """Check a response's text (the whole of it, or a window of a stream).

        With `rewrite` False every check reads `text` as it is rather than as earlier checks
        redacted it: what a stream's client gets (it is never rewritten), and every span is in
        `text`'s offsets, which the windows of an incremental check rely on."""
        started = time.perf_counter_ns()
        findings: list[Finding] = []
        skipped: list[str] = []
        texts = [Segment(-1, None, "assistant", text)]
        current = [text]
        for step in self._output:
            if isinstance(step, str):
                skipped.append(step)
            elif isinstance(step, TextRule) and self._apply(
                step, texts, current, findings, rewrite
            ):
                break
        action = strongest(f.action for f in findings)
        return Verdict(
            Stage.OUTPUT,
            self.policy.name,
            action,
            tuple(findings),
            redacted_text=current[0] if action is Action.REDACT else None,
            latency_us=(time.perf_counter_ns() - started) // 1000,
            classifier=self.classifier,
            skipped=tuple(skipped),
        )

    @staticmethod
    def _apply(
        rule: TextRule,
        texts: list[Segment],
        current: list[str],
        findings: list[Finding],
        rewrite: bool = True,
    ) -> bool:
        """Run one rule over every text it reads; True when its findings block."""
        blocked = False
        for index, segment in enumerate(texts):
            if rule.roles is not None and segment.role not in rule.roles:
                continue
            hits = rule.scan(current[index])
            if not hits:
                continue
            path = segment.path if segment.message >= 0 else None
            redacting = False
            for hit in hits:
                action = rule.action_for(hit)
                blocked |= action is Action.BLOCK
                redacting |= action is Action.REDACT
                findings.append(
                    Finding(
                        hit.rule,
                        hit.category,
                        action,
                        rule.key,
                        path,
                        (hit.start, hit.end),
                        hit.score,
                        hit.detail,
                    )
                )
            if redacting and rewrite:
                current[index] = rule.rewrite(current[index], hits)
        if rule.max_total_chars is not None:
            total = sum(len(current[i]) for i, s in enumerate(texts) if _reads(rule, s))
            if total > rule.max_total_chars:
                detail = f"{total} characters in all; at most {rule.max_total_chars} are allowed"
                findings.append(
                    Finding("length.max_total_chars", "length", Action.BLOCK, rule.key,
                            "messages", detail=detail)
                )  # fmt: skip
                blocked = True
        return blocked


def _reads(rule: TextRule, segment: Segment) -> bool:
    return rule.roles is None or segment.role in rule.roles


def _step(check: Any) -> _Step:
    if isinstance(check, ShieldGemmaCheck | ShieldGemma2Check):
        return check.key
    if isinstance(check, ValidationCheck):
        return check
    return compile_rule(check)
