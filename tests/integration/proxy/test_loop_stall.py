"""No request holds the event loop: a stream keeps flowing while hostile requests are checked.

One client streams a long reply (the fake backend sends many small events a few milliseconds
apart) while others send the worst shapes found for each guard check, at the largest size the
default policy accepts (or just over it): digit runs for the PII scanners, many parts, long
words and start words for the injection scorer, markup for the sanitizer, deny-list near
misses, Unicode that takes the slow folding path. The proxy's own measure of its event loop
(`gemma_monitor_runtime_event_loop_lag_seconds`, read before and after) must show no stall
over 20 ms, and the largest gap between two reads of the stream, measured at the client, must
stay small. Before the rules ran off the loop (and before the size caps), these requests froze
every stream for 0.5 to 1 s at a time.

The proxy runs as an operator runs it (`gemma-monitor serve`, its own process): in this
process the proxy's threads would also take GIL turns from the fake backend and the clients,
and the gaps would measure that. The attack starts once the proxy has settled: its first
seconds run every background worker's first step at once (SQL compiled for the first time,
in threads), which is start-up's cost, not a request's.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from tests.support.fake_backend import FakeBackend
from tests.support.servers import metric_samples, start_serve

TEXT_CHARS = 8192  # the default policy's max_chars per text
TEXTS = 16  # 16 x 8192 = 131072: its max_total_chars
# The aim: no request holds the proxy's event loop for more than 20 ms. The proxy measures its
# loop itself (a timer due every LAG_INTERVAL_S: how late it ran), and the worst lateness plus
# the interval bounds the longest stall (the histogram's buckets round the lateness up to the
# next 2.5 ms). Measured on a 2-core machine: 12-22 ms while the rules ran in a thread (over
# 20 ms in about 1 run in 10: the thread held the GIL while the OS ran something else);
# with them in a process, the body's JSON containers capped and the attack started once the
# proxy had settled: 7-14.5 ms over 30 runs.
MAX_STALL_S = 0.020
LAG_INTERVAL_S = 0.002
# The gaps the streaming client sees: the backend's own spacing (2 ms), any stall of the proxy,
# and this process's scheduling (the fake backend and the hostile senders share its GIL).
# Measured on a 2-core machine: 8.8-15.8 ms over 30 runs (19-31 ms before the findings were bounded and /metrics
# left the loop; 0.5 to 1 s before the rules ran off it).
MAX_GAP_S = 0.030


def fill(unit: str, size: int = TEXT_CHARS) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Each shape at the largest accepted size: 16 texts of 8,192 characters.
SHAPES: dict[str, str] = {
    "digits": fill("7"),
    "digit groups": fill("4111 1111 1111 1111 "),
    "phone shapes": fill("1 (555) 555-0100 0 20 7946 0958 "),
    "ssn and ip shapes": fill("123-45-6789 10.0.0.1 "),
    "iban shapes": fill("DE89 3704 0044 0532 0130 00 GB"),
    "at signs": fill("a@"),
    "long word": fill("a"),
    "injection start words": fill("ignore you act from do what new system <|im_start|> "),
    "injection near misses": fill("ignore all the previous and disregard the "),
    "markup": fill('<a onerror=x <script <iframe style="expression( javascript:'),
    "entities": fill("&#106;&#x61;&colon;&Tab;"),
    "attributes": fill('" onload= x'),
    "deny-list near misses": fill("make a pipe bom synthesize sari weaponize anthra "),
    "combining marks": fill("e\u0301\u0327"),
    "invisible characters": fill("b\u200bo\u200bm\u00ad"),
    "ligatures and width": fill("\ufb00\uff42\u00df\u0130"),
    "secrets": fill("sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaa eyJhbGciOi.eyJzdWIi.abc key=v "),
    "private key begins": fill("-----BEGIN PRIVATE KEY-----\n"),
}


def chat(messages: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"model": "m", "messages": messages})


def hostile_bodies() -> list[tuple[str, str, bytes]]:
    bodies = []
    for name, text in SHAPES.items():
        messages = [{"role": "user", "content": text} for _ in range(TEXTS)]
        bodies.append((name, "/v1/chat/completions", chat(messages)))
    # many parts: 128 of them (the cap), 1,024 characters each
    parts = [{"type": "text", "text": fill("9 ", 1024)} for _ in range(128)]
    bodies.append(
        ("many parts", "/v1/chat/completions", chat([{"role": "user", "content": parts}]))
    )
    # just over the caps, at the largest body (1 MiB): refused, but parsed and counted first
    over = fill("1 (555) 555-0100 0 20 7946 0958 ", 8000)  # the costliest digit shape
    near_limit = [{"role": "user", "content": [{"type": "text", "text": over}] * 125}]
    bodies.append(("1 MB of digits in parts", "/v1/chat/completions", chat(near_limit)))
    # tiny parts: just under the body's JSON containers cap (parsed, then over max_parts), and
    # far over it (refused before parsing: 38,000 objects took 20 ms to parse and walk)
    for name, count in (("9k tiny parts", 9_000), ("38k tiny parts", 38_000)):
        tiny = [{"type": "text", "text": ""}] * count
        bodies.append((name, "/v1/chat/completions", chat([{"role": "user", "content": tiny}])))
    template = orjson.dumps({"model": "m", "prompt": "hi", "template": fill("8", 1_000_000)})
    bodies.append(("1 MB template", "/api/generate", template))
    return bodies


def test_no_request_stalls_a_stream(
    tmp_path: Path, fake_backend: FakeBackend, fake_backend_url: str
) -> None:
    process, url = start_serve(tmp_path, fake_backend_url, loop_lag_interval_s=str(LAG_INTERVAL_S))
    try:
        settle(process.pid)
        before = loop_lag_buckets(url)
        largest, statuses = stream_under_attack(url, fake_backend)
        after = loop_lag_buckets(url)
    finally:
        process.terminate()
        process.wait(30)
    lag = worst_between(before, after)
    print(
        f"proxy's event loop during the attack: {after[math.inf] - before[math.inf]:.0f} "
        f"wake-ups, every one at most {lag * 1000:g} ms late, so no stall longer than "
        f"{(lag + LAG_INTERVAL_S) * 1000:g} ms"
    )
    assert lag + LAG_INTERVAL_S <= MAX_STALL_S
    assert largest < MAX_GAP_S
    assert all(status in (200, 400) for status in statuses.values()), statuses
    assert statuses["1 MB of digits in parts"] == 400  # over max_total_chars
    assert statuses["9k tiny parts"] == 400  # over max_parts
    assert statuses["38k tiny parts"] == 400  # over max_json_containers


def settle(pid: int, *, window_s: float = 0.25, busy_s: float = 0.025, limit_s: float = 15) -> None:
    """Wait until the proxy's process is idle (under `busy_s` of CPU in a `window_s`): its
    start-up work (every background worker's first step) is done."""
    proxy = psutil.Process(pid)
    deadline = time.monotonic() + limit_s
    used = sum(proxy.cpu_times()[:2])
    while time.monotonic() < deadline:
        time.sleep(window_s)
        now = sum(proxy.cpu_times()[:2])
        if now - used < busy_s:
            return
        used = now
    raise AssertionError(f"the proxy was still busy {limit_s} s after it started")


def loop_lag_buckets(base: str) -> dict[float, float]:
    """The proxy's own measure: its event loop's lateness histogram (cumulative counts by
    upper bound), read from /metrics."""
    prefix = 'gemma_monitor_runtime_event_loop_lag_seconds_bucket{le="'
    buckets = {
        float(name[len(prefix) : -2]): value
        for name, value in metric_samples(base).items()
        if name.startswith(prefix)
    }
    assert buckets, "no event loop lag on /metrics"
    return buckets


def worst_between(before: dict[float, float], after: dict[float, float]) -> float:
    """The smallest bucket bound that holds every wake-up observed between two scrapes."""
    total = after[math.inf] - before[math.inf]
    return min(bound for bound in after if after[bound] - before[bound] == total)


def stream_under_attack(base: str, fake_backend: FakeBackend) -> tuple[float, dict[str, int]]:
    """The largest gap between reads of a stream while the hostile bodies are sent, and the
    status each of them got."""
    bodies = hostile_bodies()
    assert all(len(body) < 1024 * 1024 for _, _, body in bodies)
    fake_backend.script.chunks = 20_000
    fake_backend.script.chunk_s = 0.002
    statuses: dict[str, int] = {}
    done = threading.Event()
    started = threading.Event()

    def send(share: list[tuple[str, str, bytes]]) -> None:
        started.wait(10)
        with httpx.Client(timeout=60) as client:
            for name, route, body in share:
                response = client.post(
                    f"{base}{route}",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                statuses[name] = response.status_code

    senders = [threading.Thread(target=send, args=(bodies[i::2],)) for i in range(2)]
    for sender in senders:
        sender.start()

    def finish() -> None:
        for sender in senders:
            sender.join(120)
        done.set()

    threading.Thread(target=finish).start()
    reads: list[float] = []
    request = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    url = f"{base}/v1/chat/completions"
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json=request) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            reads.append(time.perf_counter())
            if len(reads) == 20:
                started.set()
            if done.is_set():
                break
    assert done.is_set(), "the stream ended before the hostile requests were all answered"
    gaps = sorted(b - a for a, b in itertools.pairwise(reads[20:]))
    largest = gaps[-1]
    print(
        f"\n{len(bodies)} hostile requests during a stream of {len(reads)} reads: largest gap "
        f"{largest * 1000:.1f} ms, p99 {gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms, "
        f"median {gaps[len(gaps) // 2] * 1000:.1f} ms"
    )
    assert len(statuses) == len(bodies)
    return largest, statuses
