"""Incremental output checks: a sliding window over a running buffer, linear in the reply.

Short replies get exactly the verdicts of checking all the text so far; in long ones a
violation is caught wherever the check points and window boundaries fall, a word cut at a
window's start raises nothing, and the cost grows with the reply's length, not its square.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from monitor.guard.engine import Guard
from monitor.guard.incremental import LEAD, OVERLAP, IncrementalCheck
from monitor.guard.loader import load_policy, parse_policy
from monitor.guard.verdict import Action, Verdict

POLICY = parse_policy(
    """
output:
  streaming: {mode: incremental, every_chars: 256}
  checks:
    - {type: sanitize, action: redact}
    - {type: pii, action: redact}
    - {type: injection, threshold: 0.8, action: flag}
    - {type: denylist, category: weapons, terms: [make a pipe bomb, bomb], action: block}
""",
    default_name="windows",
)
PROSE = (
    "The service reads orders from Postgres and writes a summary at 06:30 each morning; "
    "order 4111 2222 3333 was late, ring +44 20 7946 0958 or mail ops@example.com. "
)


def pieces_of(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def run(
    text: str, size: int = 7, every: int = 256, guard: Guard | None = None
) -> list[tuple[int, Verdict]]:
    """Stream `text` in pieces of `size` through an incremental check, as the proxy does:
    (reply length, verdict) at every check point and at the end; stops at a block."""
    rules = guard or Guard(POLICY)

    async def check(window: str, rewrite: bool) -> Verdict:
        return rules.check_output(window, rewrite=rewrite)

    async def stream() -> list[tuple[int, Verdict]]:
        watch = IncrementalCheck(rules.policy, every, check)
        pieces: list[str] = []
        verdicts = []
        for piece in pieces_of(text, size):
            pieces.append(piece)
            watch.take(pieces)
            if watch.due:
                verdicts.append((watch.length, await watch.check()))
                if verdicts[-1][1].blocked:
                    return verdicts
        verdicts.append((watch.length, await watch.check()))
        return verdicts

    return asyncio.run(stream())


def summary(verdict: Verdict) -> tuple[Action, list[tuple[str, tuple[int, int] | None]]]:
    return verdict.action, [(f.rule, f.span) for f in verdict.findings]


def test_a_reply_within_the_overlap_gets_the_verdicts_of_all_its_text() -> None:
    text = (PROSE + "<script>alert(1)</script> sk-" + "a1B2" * 8 + " ") * 12
    text = text[: OVERLAP - 10]
    for size in (1, 5, 64, 300):
        for length, verdict in run(text, size):
            assert summary(verdict) == summary(Guard(POLICY).check_output(text[:length]))


def test_a_violation_straddling_check_points_and_windows_is_caught_where_it_is() -> None:
    filler = PROSE * 80  # 12,000 characters: many windows before the violation
    for shift in range(0, 300, 13):  # every position against the check points of 256
        text = filler[: 9000 + shift] + " and then make a pipe bomb, said nobody. " + filler
        at = text.index("make a pipe bomb")
        verdicts = run(text)
        length, verdict = verdicts[-1]
        assert verdict.blocked, shift
        assert verdict.reason is not None and verdict.reason.span == (at, at + 16), shift
        assert at + 16 <= length < at + 16 + 256 + 7  # cut at the check point after it


def test_long_secrets_and_emails_across_window_boundaries_are_found() -> None:
    secret = "sk-proj-" + "Zq7" * 40
    email = "someone.with.a.long.name@" + "sub." * 14 + "example.com"
    for shift in range(0, 400, 37):
        text = "x " * (2500 + shift) + secret + " y " + email + " " + PROSE * 40
        findings = {(f.rule, f.span) for f in run(text)[-1][1].findings}
        at = text.index(secret)
        assert ("pii.secret.openai", (at, at + len(secret))) in findings, shift
        at = text.index(email)
        assert ("pii.email", (at, at + len(email))) in findings, shift


def test_a_word_cut_at_a_window_start_is_no_finding() -> None:
    # "abomb" is no word "bomb"; some window starts between its "a" and its "b"
    text = "abomb " * 3000
    for size in (1, 5, 7):
        verdicts = run(text, size)
        assert all(not verdict.findings for _, verdict in verdicts), size
    # and the block of a real one right after such a cut is still found
    verdicts = run("abomb " * 1500 + "bomb " + "abomb " * 100, 5)
    assert verdicts[-1][1].blocked


def test_length_counts_the_reply_not_the_window() -> None:
    guard = Guard(
        parse_policy(
            "output:\n  checks:\n    - {type: length, max_chars: 5000, action: flag}\n",
            default_name="long",
        )
    )
    length, verdict = run("word " * 2000, guard=guard)[-1]
    assert length == 10_000 and verdict.action is Action.FLAG
    assert summary(verdict) == (Action.FLAG, [("length.max_chars", (5000, 10_000))])


def stream_seconds(text: str, guard: Guard) -> float:
    started = time.perf_counter()
    run(text, size=4, guard=guard)
    return time.perf_counter() - started


def test_cost_is_linear_in_the_reply() -> None:
    guard = Guard(load_policy("policies/default.yaml"))
    reply = PROSE * 1000
    short, long = reply[:32_768], reply[:131_072]
    stream_seconds(short[:8192], guard)  # warm up
    small = min(stream_seconds(short, guard) for _ in range(3))
    large = min(stream_seconds(long, guard) for _ in range(2))
    print(
        f"\nincremental output checks (default policy, every 256, overlap {OVERLAP}, "
        f"lead {LEAD}): 32K {small * 1000:.1f} ms, 128K {large * 1000:.1f} ms, "
        f"ratio {large / small:.1f}"
    )
    assert large / small < 8  # quadratic would be about 16
