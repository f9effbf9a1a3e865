"""Load for fault tests: an open-loop steady rate (requests start on schedule whatever the
answers do, so a slow server cannot slow the load down and hide its own latency) and a
closed-loop soak (a fixed number of clients, each sending its next request when the last
one ends). Both keep one `Sample` per request: when it started, how long it took, its status
and the `X-Request-ID` the proxy answered with. `Background` is the simplest: one client in a
thread, a request every so often while a test's block runs, for traffic that keeps an alert
breaching.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 8}


@dataclass(frozen=True, slots=True)
class Sample:
    started: float  # monotonic seconds
    latency_s: float
    status: int  # 0: no answer (a transport error)
    request_id: str | None
    stream: bool
    body_end: bytes  # the last bytes of the body, to check how a stream ended
    error: str | None = None


class Background:
    """One client in a thread calling `send` every `gap_s` seconds (at most `limit` times)
    from the start of a `with` block to its end. A subclass's `send` keeps what it needs."""

    def __init__(
        self, gap_s: float, *, timeout: httpx.Timeout | float = 5.0, limit: int | None = None
    ) -> None:
        self.gap_s, self.timeout, self.limit = gap_s, timeout, limit
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def send(self, client: httpx.Client) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set() and (self.limit is None or self.sent < self.limit):
                self.send(client)
                self.sent += 1
                self._stop.wait(self.gap_s)


def median_ms(samples: Sequence[Sample]) -> float:
    return statistics.median(s.latency_s for s in samples) * 1000.0


def percentile_ms(samples: Sequence[Sample], q: float) -> float:
    ordered = sorted(s.latency_s for s in samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def _one(client: httpx.AsyncClient, url: str, stream: bool) -> Sample:
    started = time.monotonic()
    body = {**CHAT, "stream": stream}
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            tail = b""
            async for chunk in resp.aiter_raw():
                tail = (tail + chunk)[-64:]
            return Sample(
                started, time.monotonic() - started, resp.status_code,
                resp.headers.get("x-request-id"), stream, tail,
            )  # fmt: skip
    except httpx.HTTPError as exc:
        return Sample(started, time.monotonic() - started, 0, None, stream, b"", repr(exc))


def _client(connections: int, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def steady(
    url: str,
    rate: float,
    duration_s: float,
    *,
    streaming_every: int = 0,
    timeout_s: float = 30.0,
    on_tick: Callable[[float], None] | None = None,
) -> list[Sample]:
    """`rate` requests a second for `duration_s`, open loop; every `streaming_every`-th one
    streams (0: none). `on_tick(elapsed_s)` runs about once a second, on the loop."""
    count = int(rate * duration_s)
    async with _client(256, timeout_s) as client, asyncio.TaskGroup() as group:
        tasks: list[asyncio.Task[Sample]] = []
        start = time.monotonic()
        next_tick = 1.0
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stream = bool(streaming_every) and i % streaming_every == 0
            tasks.append(group.create_task(_one(client, url, stream)))
            if on_tick is not None and time.monotonic() - start >= next_tick:
                on_tick(time.monotonic() - start)
                next_tick += 1.0
    return [task.result() for task in tasks]


async def closed_loop(
    url: str,
    total: int,
    *,
    clients: int = 16,
    streaming_every: int = 3,
    timeout_s: float = 30.0,
    every: int = 0,
    on_progress: Callable[[int], Any] | None = None,
) -> list[Sample]:
    """`total` requests from `clients` clients, each waiting for its answer before the next;
    every `streaming_every`-th request streams. `on_progress(done)` is awaited (if it returns
    an awaitable) after every `every` requests, with no request in flight."""
    samples: list[Sample] = []
    step = every or total
    async with _client(clients, timeout_s) as client:
        done = 0
        while done < total:
            batch = min(step, total - done)
            counter = iter(range(done, done + batch))  # shared: each index taken once

            async def worker(indexes: Iterator[int]) -> None:
                for i in indexes:
                    stream = bool(streaming_every) and i % streaming_every == 0
                    samples.append(await _one(client, url, stream))

            async with asyncio.TaskGroup() as group:
                for _ in range(clients):
                    group.create_task(worker(counter))
            done += batch
            if on_progress is not None:
                result = on_progress(done)
                if asyncio.iscoroutine(result):
                    await result
    return samples
