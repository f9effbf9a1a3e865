"""Rules-only guard cost per request: p50/p99 microseconds for a ~2 KB prompt.

    .venv/bin/python bench/guard_bench.py [--policy policies/default.yaml] [--requests 20000]

Runs `Guard.check_input` on a two-message chat (a system prompt and a ~2 KB user prompt of
ordinary prose with a little code, an email and a URL), and `Guard.check_output` on a ~2 KB
answer, each many times after a warm-up, timing every call with perf_counter_ns; also the
cost of a clean ASCII prompt and of a non-ASCII one (the Unicode folding path). The aim is
< 200 us at p99 for the 2 KB prompt. The input checks run with the rules' memo off (every
text scanned, as a text never seen before is), and once more with it on, as for a system
prompt or an earlier turn sent again.

Then the incremental output checks of a streamed reply (the policy's `every_chars`, pieces of
4 characters): the sliding window (`monitor.guard.incremental`) against checking all the text
so far at every check point, for replies of 32K and 128K characters. The window's cost is
linear in the reply (128K about 4x 32K); checking everything so far is quadratic (about 16x).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from monitor.guard import Guard, Verdict, load_policy
from monitor.guard.incremental import IncrementalCheck

PROSE = (
    "I'm migrating a small Flask service to FastAPI and I'd like a second opinion on the "
    "structure. The service reads orders from Postgres, enriches them with prices from an "
    "internal API, and writes a summary that our finance team downloads every morning. "
    "Right now everything lives in one 900-line module, the database session is a global, "
    "and the tests patch half the world. Could you suggest a layout with routers, a service "
    "layer and a repository, and explain how to pass the session through dependencies? "
)
CODE = (
    "\n```python\n@app.get('/orders/{order_id}')\ndef get_order(order_id: int):\n"
    "    row = db.execute('select * from orders where id = %s', (order_id,)).fetchone()\n"
    "    return {'id': row[0], 'total': float(row[3])}\n```\n"
)
CONTACT = "If it helps, my colleague (jane.doe@example.com) wrote the original; docs at https://docs.example.com/orders.\n"


def prompt_of(size: int, extra: str = "") -> str:
    text = PROSE + CODE + CONTACT + extra
    while len(text) < size:
        text += PROSE
    return text[:size]


def measure(call: Callable[[], Any], requests: int) -> list[float]:
    for _ in range(min(2000, requests)):
        call()
    gc.collect()
    gc.disable()
    timings = []
    try:
        for _ in range(requests):
            started = time.perf_counter_ns()
            call()
            timings.append((time.perf_counter_ns() - started) / 1000)
    finally:
        gc.enable()
    return timings


def line(name: str, timings: list[float]) -> str:
    ordered = sorted(timings)
    p = statistics.quantiles(ordered, n=100)
    return (
        f"{name:<44} p50 {p[49]:7.1f} us   p90 {p[89]:7.1f} us   p99 {p[98]:7.1f} us   "
        f"max {ordered[-1]:8.1f} us"
    )


def stream_windowed(guard: Guard, reply: str, every: int) -> float:
    """Seconds to check `reply` streamed in 4-character pieces, window by window."""

    async def check(window: str, rewrite: bool) -> Verdict:
        return guard.check_output(window, rewrite=rewrite)

    async def stream() -> None:
        watch = IncrementalCheck(guard.policy, every, check)
        pieces: list[str] = []
        for start in range(0, len(reply), 4):
            pieces.append(reply[start : start + 4])
            watch.take(pieces)
            if watch.due:
                await watch.check()
        await watch.check()

    started = time.perf_counter()
    asyncio.run(stream())
    return time.perf_counter() - started


def stream_everything(guard: Guard, reply: str, every: int) -> float:
    """The same, checking all the text so far at every check point (the quadratic way)."""
    started = time.perf_counter()
    pieces: list[str] = []
    length = 0
    next_check = every
    for start in range(0, len(reply), 4):
        pieces.append(reply[start : start + 4])
        length += len(pieces[-1])
        if length >= next_check:
            guard.check_output("".join(pieces))
            next_check = length + every
    guard.check_output("".join(pieces))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    guard = Guard(policy, memo_size=0)  # every check scans, as for a text never seen before
    memoized = Guard(policy)
    prompt = prompt_of(2048)
    system = {"role": "system", "content": "You are a careful senior Python reviewer."}
    chat = [system, {"role": "user", "content": prompt}]
    unicode_chat = [system, {"role": "user", "content": prompt_of(2048, "Grüße, naïve café ☕ ")}]
    answer = prompt_of(2048)
    print(f"policy {args.policy}; prompt {len(prompt)} chars; {args.requests} requests each")
    print(
        line(
            "check_input, 2 KB ASCII prompt",
            measure(lambda: guard.check_input(chat), args.requests),
        )
    )
    print(
        line(
            "check_input, the same prompt seen before",
            measure(lambda: memoized.check_input(chat), args.requests),
        )
    )
    print(
        line(
            "check_input, 2 KB prompt with non-ASCII",
            measure(lambda: guard.check_input(unicode_chat), args.requests),
        )
    )
    print(
        line(
            "check_output, 2 KB answer", measure(lambda: guard.check_output(answer), args.requests)
        )
    )
    verdict = guard.check_input(chat)
    print(
        f"verdict on the 2 KB prompt: {verdict.action.value}, {[f.rule for f in verdict.findings]}"
    )
    every = guard.policy.output.streaming.every_chars
    print(f"incremental output checks, every {every} characters, pieces of 4:")
    timings: dict[str, list[float]] = {"window": [], "everything so far": []}
    for size in (32_768, 131_072):
        reply = prompt_of(size)
        timings["window"].append(min(stream_windowed(guard, reply, every) for _ in range(3)))
        timings["everything so far"].append(stream_everything(guard, reply, every))
    for name, (small, large) in timings.items():
        print(
            f"  {name:<18} 32K {small * 1000:8.1f} ms   128K {large * 1000:8.1f} ms   "
            f"ratio {large / small:5.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
