"""Incremental output checks of a streamed reply, in time linear in the reply's length.

An incremental stream is checked every `every_chars` new characters and at its end. Checking
all the text so far each time is quadratic (a 128K-character reply cost 1.8 s of rules on the
event loop); here each check reads a window: the text that came since the last check, after
the last `OVERLAP` characters the last check read, kept in a running buffer. Each character is
read about `(OVERLAP + every_chars) / every_chars` times, however long the reply.

Why the overlap is enough, i.e. no pattern a check looks for straddles a window boundary
unseen:

- A window starts `OVERLAP` characters before the end of the previous one. A match of at most
  `OVERLAP - LEAD` characters therefore lies whole inside the first window that reaches its
  end, at least `LEAD` characters after that window's start.
- The first `LEAD` characters of a window are context only: a hit starting there belongs to
  the previous window, which held it with all of its context, so a word, an email's local part
  or a `javascript:` scheme cut at the window's start raises no finding of its own. `LEAD`
  (256) is more than any detector looks back before a match: a word boundary (1 character),
  an email's local part (64), a script scheme with control characters inside it (44).
- The longest bounded patterns are an email address (64 + 1 + at most 1,177 for 17 labels and
  a top-level domain: about 1,250), a deny-list term (200 characters, plus the whitespace
  between its words), an IBAN (about 70), an injection phrase (under 200), a card or a phone
  (under 40): `OVERLAP - LEAD` = 1,792 holds each whole.
- Unbounded ones are found by their beginning, which is short: a secret by its vendor prefix
  and first 20 characters, a private key by its BEGIN line, a script element by `<script`
  (stripped to the window's end; its closing tag, in a later window, is a finding too).

What a window does not see: a phrase padded with more whitespace or invisible characters than
the overlap, a script attribute more than the overlap after its tag's `<`, and injection
patterns further apart than the overlap (their scores add up within a window only).

The verdict of each check is the reply's so far, in the reply's offsets (every check reads a
window as it is, not as earlier checks redacted it: the stream is never rewritten, and the
offsets must hold): each window decides about the hits that start past its lead, replacing
what earlier windows said about those;
findings without a span (a model's score for a harm) keep the strongest seen per check and
rule; length checks count the whole reply. A reply of at most `OVERLAP` characters is read
whole at every check, so its verdicts are exactly those of checking all the text so far.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from monitor.guard.checks import LengthCheck
from monitor.guard.policy import Policy
from monitor.guard.verdict import Action, Finding, Verdict, strongest

OVERLAP: Final = 2048
LEAD: Final = 256
_RANK: Final = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.BLOCK: 3}

WindowCheck = Callable[[str, bool], Awaitable[Verdict]]
"""Runs a stage's output checks over one window's text; the flag is `Guard.check_output`'s
`rewrite`: True for a window that is all of the reply so far (the checks then read it as a
whole reply is read), False for the others, whose spans must be in the window's offsets."""


class IncrementalCheck:
    """The incremental checks of one streamed reply.

    `take` the reply's pieces as they come; when `due` (and at the end), `check()` reads the
    next window and returns the reply's verdict so far. Not shared between replies.
    """

    def __init__(
        self,
        policy: Policy,
        every_chars: int,
        check: WindowCheck,
        *,
        overlap: int = OVERLAP,
        lead: int = LEAD,
    ) -> None:
        if not 0 <= lead < overlap:
            raise ValueError("the lead must be shorter than the overlap")
        self._check = check
        self._every = every_chars
        self._overlap = overlap
        self._lead = lead
        self._lengths = [c for c in policy.output.checks if isinstance(c, LengthCheck)]
        self.length = 0  # characters of the reply so far
        self._taken = 0  # pieces of the reply taken
        self._pending: list[str] = []  # taken since the last check
        self._tail = ""  # the last `overlap` characters the last check read
        self._checked = 0  # where the last check's window ended
        self._next = every_chars
        self._findings: list[Finding] = []

    def take(self, pieces: Sequence[str]) -> None:
        """Take the reply's new pieces; `pieces` is the whole reply so far, and only grows."""
        if len(pieces) > self._taken:
            for piece in pieces[self._taken :]:
                self._pending.append(piece)
                self.length += len(piece)
            self._taken = len(pieces)

    @property
    def due(self) -> bool:
        """Whether `every_chars` characters came since the last check."""
        return self.length >= self._next

    async def check(self) -> Verdict:
        """Check the text that came since the last check, after the overlap."""
        start, window = self._window()
        self._next = self.length + self._every
        verdict = await self._check(window, start == 0)
        if start > 0 and verdict.blocked and not self._owns_block(verdict):
            # The block came from the lead only (a hit the previous window judged, or a cut at
            # the window's start), and it ended the stage before the later checks read the
            # rest: read the window again with the lead blanked out (offsets unchanged).
            verdict = await self._check(" " * self._lead + window[self._lead :], False)
        return self._merge(verdict, start)

    def _window(self) -> tuple[int, str]:
        """The next window's offset in the reply and its text; moves the buffer on."""
        new = "".join(self._pending)
        self._pending.clear()
        text = self._tail + new if self._tail else new
        start = self._checked - len(self._tail)
        self._checked = self.length
        self._tail = text[-self._overlap :] if len(text) > self._overlap else text
        return start, text

    def _owns_block(self, verdict: Verdict) -> bool:
        """Whether a window's block stands: a hit past the lead, or the reply's length."""
        return any(
            f.action is Action.BLOCK and (f.span is None or f.span[0] >= self._lead)
            for f in verdict.findings
            if f.category != "length"
        ) or any(f.action is Action.BLOCK for f in self._length_findings())

    def _merge(self, verdict: Verdict, start: int) -> Verdict:
        if start == 0:  # the window is all of the reply so far: its verdict is the reply's
            self._findings = list(verdict.findings)
            return verdict
        own = start + self._lead
        fresh = [_shifted(f, start) for f in verdict.findings if f.category != "length"]
        spanned = [f for f in self._findings if f.span is not None and f.category != "length"]
        findings = [f for f in spanned if f.span is not None and f.span[0] < own]
        findings += [f for f in fresh if f.span is not None and f.span[0] >= own]
        strongest_of: dict[tuple[str, str], Finding] = {}
        for finding in self._findings + fresh:
            if finding.span is None:
                key = (finding.check, finding.rule)
                seen = strongest_of.get(key)
                if seen is None or _outranks(finding, seen):
                    strongest_of[key] = finding
        findings += strongest_of.values()
        findings += self._length_findings()
        self._findings = findings
        action = strongest(f.action for f in findings)
        return dataclasses.replace(
            verdict,
            action=action,
            findings=tuple(findings),
            redacted_text=None,  # an incremental stream is never rewritten, only cut
        )

    def _length_findings(self) -> list[Finding]:
        """Length checks count the reply, not the window (as the rules engine words them)."""
        total = self._checked
        found = []
        for check in self._lengths:
            if total > check.max_chars:
                action = Action.REDACT if check.action == "truncate" else Action(check.action)
                detail = f"{total} characters; at most {check.max_chars} are allowed"
                span = (check.max_chars, total)
                found.append(
                    Finding(
                        "length.max_chars", "length", action, check.key, None, span, None, detail
                    )
                )
        return found


def _shifted(finding: Finding, offset: int) -> Finding:
    if finding.span is None:
        return finding
    start, end = finding.span
    return dataclasses.replace(finding, span=(start + offset, end + offset))


def _outranks(finding: Finding, other: Finding) -> bool:
    if _RANK[finding.action] != _RANK[other.action]:
        return _RANK[finding.action] > _RANK[other.action]
    return (finding.score or 0.0) >= (other.score or 0.0)
