"""Soak: many requests (a third of them streaming) through the default policy with recording
on, and nothing grows that should not: resident memory (under 10 % after warm-up), open file
descriptors, TCP connections (none left in CLOSE_WAIT), asyncio tasks.

Read from outside the process (/proc) and from inside it (/metrics, `gemma_monitor_runtime_*`)
at checkpoints with no request in flight, so the numbers compare like with like.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from monitor.store.engine import make_engine
from monitor.store.queries import count_requests
from tests.integration.faults.conftest import Monitor, report, scale
from tests.support.backend_process import BackendProcess
from tests.support.load import closed_loop
from tests.support.private_postgres import PrivatePostgres
from tests.support.proc import view

pytestmark = pytest.mark.faults

# The baseline is taken after 20 % of the requests, and never before 5,000: the proxy keeps
# bounded caches that fill in the first requests (the last 10,000 request ids, for feedback;
# SQLite's page cache). In the suite's short soak the id cache is still filling after the
# baseline, so its growth there is an upper bound; the full soak measures past it.
WARM_UP = 0.2
WARM_UP_MIN = 5_000
FD_SLACK = 8
# asyncio's default executor starts its threads on demand, up to this many
EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class Checkpoint:
    done: int
    rss_mb: float
    fds: int
    threads: int
    established: int
    close_wait: int
    tasks: int
    app_fds: int


def checkpoint(monitor: Monitor, done: int) -> Checkpoint:
    metrics = monitor.metrics()  # first: the scrape's own connection is closed before /proc
    proc = view(monitor.pid)
    return Checkpoint(
        done,
        round(proc.rss_bytes / 2**20, 1),
        proc.open_fds,
        proc.threads,
        proc.established,
        proc.close_wait,
        int(metrics["gemma_monitor_runtime_asyncio_tasks"]),
        int(metrics["gemma_monitor_runtime_open_fds"]),
    )


@pytest.mark.parametrize(
    "database",
    [
        # The full soak found memory following the traffic on SQLite: the alert worker read
        # every latency of each rule's window into Python at each step (+20 MB over 80,000
        # requests; now ranked in the database), and the pooled connections' page caches,
        # dropped and refilled at each write by another connection, fragmented the C heap
        # (2 MiB each then, 256 KiB now): 112.9 -> 125.8 MB after warm-up before the second
        # fix, 107.5 -> 113.6 MB after.
        "sqlite",
        "postgres",
    ],
)
def test_soak_nothing_grows(
    database: str,
    backend: BackendProcess,
    start_monitor: Callable[..., Monitor],
    request: pytest.FixtureRequest,
) -> None:
    total = int(scale(10_000, 100_000))
    if database == "postgres":
        private: PrivatePostgres = request.getfixturevalue("private_postgres")
        url = private.database("soak")
    else:
        url = None
    monitor = start_monitor(backend.url, **({"database_url": url} if url else {}))
    url = url or f"sqlite:///{monitor.directory / 'monitor.db'}"
    points: list[Checkpoint] = []

    async def settle_and_look(done: int) -> None:
        await asyncio.sleep(0.3)  # the last records batched, the scrape connection gone
        points.append(checkpoint(monitor, done))

    started = time.monotonic()
    samples = asyncio.run(
        closed_loop(
            monitor.url, total, clients=16, streaming_every=3, every=total // 20,
            on_progress=settle_and_look,
        )
    )  # fmt: skip
    elapsed = time.monotonic() - started
    # the same check, naming what failed (a transport error says which)
    assert [(s.status, s.error) for s in samples if s.status != 200] == []
    streams = [s for s in samples if s.stream]
    assert len(streams) == -(-total // 3)
    assert all(s.body_end.endswith(b"data: [DONE]\n\n") for s in streams)

    baseline = next(p for p in points if p.done >= max(total * WARM_UP, WARM_UP_MIN))
    end, peak = points[-1], max(points, key=lambda p: p.rss_mb)
    curve = " ".join(f"{p.done}:{p.rss_mb}MB/{p.fds}fd/{p.tasks}t" for p in points)
    report(
        f"soak on {database}",
        requests=total,
        req_per_s=round(total / elapsed),
        rss_start_mb=points[0].rss_mb,
        rss_baseline_mb=baseline.rss_mb,
        rss_end_mb=end.rss_mb,
        rss_peak_mb=peak.rss_mb,
        fds=f"{points[0].fds}/{baseline.fds}/{end.fds}/{max(p.fds for p in points)}",
        tasks=f"{baseline.tasks}/{end.tasks}",
        threads=f"{baseline.threads}/{end.threads}",
        established=f"{baseline.established}/{end.established}",
        curve=curve,
    )
    assert end.rss_mb <= 1.10 * baseline.rss_mb, curve
    # Descriptors and connections move with the pools (backend keep-alive, database pool):
    # compared with the most the warm-up saw, not with the baseline checkpoint alone, which
    # can fall on a moment when a pooled connection was being replaced (41 fds there, 50-53
    # around it, once). A leak of one per 10,000 requests would pass this bound over a full
    # soak, no more.
    warm = [p for p in points if p.done <= baseline.done]
    fds, app_fds = max(p.fds for p in warm), max(p.app_fds for p in warm)
    assert end.fds <= fds + FD_SLACK and end.app_fds <= app_fds + FD_SLACK, curve
    assert end.tasks <= baseline.tasks, curve
    # connections: bounded by the clients and the pools, not by the requests served
    established = max(p.established for p in warm)
    assert end.established <= established + FD_SLACK and end.close_wait == 0, curve
    assert end.threads <= baseline.threads + EXECUTOR_THREADS, curve

    engine = make_engine(url)
    try:
        deadline = time.monotonic() + 30
        while count_requests(engine) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count_requests(engine) == total  # recording kept up: every request stored
    finally:
        engine.dispose()
