"""The rules engine: a policy's deterministic checks run over a request or a response.

`Guard(policy).check_input(messages)` and `.check_output(text)` are synchronous and pure
(no I/O, nothing shared between calls), cost microseconds, and always return a `Verdict`.
Checks run in policy order and each sees the text as earlier checks redacted it; the first
check whose findings block ends the stage, because nothing after can change a block and a
blocked 1 MB prompt should not be scanned further. `shieldgemma` and `shieldgemma2` checks are
listed in `Verdict.skipped`: the model classifiers run them, and their verdict combines with
this one.

A request's texts come back: a chat's system prompt and its earlier turns are sent again with
every turn, so a conversation of N turns would have its first turn scanned N times. What each
input rule found in a text is kept (`ScanMemo`), keyed by a keyed digest of the text (no text
is kept), and a text seen again costs a digest and a lookup per rule instead of a scan.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any, Final

from monitor.guard.checks import ShieldGemma2Check, ShieldGemmaCheck, ValidationCheck
from monitor.guard.detectors.redaction import Hit
from monitor.guard.detectors.validation import validate_messages
from monitor.guard.messages import Segment, segments, with_texts
from monitor.guard.policy import Policy
from monitor.guard.rules import TextRule, compile_rule
from monitor.guard.verdict import Action, Finding, Stage, Verdict, strongest

_Step = TextRule | ValidationCheck | str  # a str: the id of a check this engine does not run

MEMO_TEXTS: Final = 4096  # texts remembered per input rule (the oldest forgotten first)
MEMO_MAX_HITS: Final = 16  # a text with more hits than this is not remembered: each costs room
_NO_HITS: Final[list[Hit]] = []


class ScanMemo:
    """What one rule found in the texts it scanned lately: a text's hits by its digest.

    The digest is SHA-256 behind a secret of this memo's own (16 bytes of it kept), so no text
    is kept and no client can make two texts share a digest. At most `size` texts per rule;
    those with more than `MEMO_MAX_HITS` hits (a hostile text can have thousands) are scanned
    every time. Lookups take no lock; inserts do: the event loop and the rules' fallback thread
    (`monitor.proxy.rules_process`, while its child is down) share one guard.
    """

    def __init__(self, rules: int, size: int = MEMO_TEXTS) -> None:
        self.size = size
        # SHA-256 behind a secret prefix: OpenSSL's SHA-256 (with the CPU's SHA instructions
        # where it has them) costs a fraction of hashlib's portable BLAKE2b on a long text
        self._keyed = hashlib.sha256(secrets.token_bytes(32))
        self._found: list[dict[bytes, list[Hit]]] = [{} for _ in range(rules)]
        self._inserting = threading.Lock()

    def digest(self, text: str) -> bytes:
        keyed = self._keyed.copy()
        keyed.update(text.encode("utf-8", "surrogatepass"))
        return keyed.digest()[:16]

    def scan(self, number: int, rule: TextRule, text: str, digest: bytes) -> list[Hit]:
        """`rule.scan(text)`, remembered: the caller must not change the list."""
        found = self._found[number]
        hits = found.get(digest)
        if hits is None:
            hits = rule.scan(text) or _NO_HITS  # most texts: one shared empty list
            if len(hits) <= MEMO_MAX_HITS and self.size:
                with self._inserting:
                    if len(found) >= self.size:
                        del found[next(iter(found))]
                    found[digest] = hits
        return hits


class Guard:
    """Runs one policy's rule-based checks. Build once per policy, share across requests."""

    classifier = "rules"

    def __init__(self, policy: Policy, memo_size: int = MEMO_TEXTS) -> None:
        self.policy = policy
        self._input: list[_Step] = [_step(c) for c in policy.input.checks]
        self._output: list[_Step] = [_step(c) for c in policy.output.checks]
        self._memo = ScanMemo(len(self._input), memo_size)

    def check_input(self, messages: Any) -> Verdict:
        """Check a request's `messages` (as the client sent them, unvalidated)."""
        started = time.perf_counter_ns()
        findings: list[Finding] = []
        skipped: list[str] = []
        texts: list[Segment] | None = None
        current: list[str] = []
        digests: list[bytes | None] = []  # of each current text, once asked for
        for number, step in enumerate(self._input):
            if isinstance(step, TextRule):
                if texts is None:
                    texts = segments(messages)
                    current = [s.text for s in texts]
                    digests = [None] * len(texts)
                if self._apply(step, texts, current, findings, memo=(self._memo, number, digests)):
                    break
                continue
            if isinstance(step, str):
                skipped.append(step)
                continue
            if isinstance(step, ValidationCheck):
                problems = validate_messages(
                    messages,
                    max_messages=step.max_messages,
                    allowed_roles=step.allowed_roles,
                    max_parts=step.max_parts,
                    max_total_chars=step.max_total_chars,
                )
                if not problems:
                    continue
                action = Action(step.action)
                findings += [
                    Finding(p.rule, "validation", action, step.key, p.path, detail=p.detail)
                    for p in problems
                ]
                if action is Action.BLOCK:
                    break
        action = strongest(f.action for f in findings) if findings else Action.ALLOW
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
        action = strongest(f.action for f in findings) if findings else Action.ALLOW
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
        memo: tuple[ScanMemo, int, list[bytes | None]] | None = None,
    ) -> bool:
        """Run one rule over every text it reads; True when its findings block. With `memo`
        (the memo, the rule's number, the digests of `current` known so far) a text seen
        before is not scanned again."""
        blocked = False
        for index, segment in enumerate(texts):
            if rule.roles is not None and segment.role not in rule.roles:
                continue
            if memo is None:
                hits = rule.scan(current[index])
            else:
                scans, number, digests = memo
                digest = digests[index]
                if digest is None:
                    digest = digests[index] = scans.digest(current[index])
                hits = scans.scan(number, rule, current[index], digest)
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
                if memo is not None:
                    memo[2][index] = None  # a new text: its own digest
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
