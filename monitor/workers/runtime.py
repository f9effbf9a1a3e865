"""The proxy process itself on /metrics: resident memory, open file descriptors, threads, TCP
connections by state, and the asyncio tasks alive on its event loop.

These are the numbers a leak shows up in first: a task per request never collected, a socket
per stream never closed (CLOSE_WAIT), a descriptor per spool segment never released. Read at
scrape time from the process (psutil, which reads /proc on Linux) and from the event loop it
was told of (`watch`): `/metrics` renders in a thread, off the loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# psutil's TCP states, in the order they are reported; a bounded label set
TCP_STATES = (
    psutil.CONN_ESTABLISHED,
    psutil.CONN_CLOSE_WAIT,
    psutil.CONN_TIME_WAIT,
    psutil.CONN_LISTEN,
)


class RuntimeCollector(Collector):
    """`gemma_monitor_runtime_*` gauges for this process, read on every scrape."""

    def __init__(self, process: psutil.Process | None = None) -> None:
        self._process = process or psutil.Process()
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count the tasks of `loop`, also when scraped from another thread (`/metrics`
        renders off the loop: reading the TCP table alone can take milliseconds)."""
        self._loop = loop

    def collect(self) -> Iterator[Any]:
        process = self._process
        with process.oneshot():
            rss = process.memory_info().rss
            fds = process.num_fds()
            threads = process.num_threads()
        yield _gauge("gemma_monitor_runtime_resident_bytes", "Resident memory of the proxy.", rss)
        yield _gauge("gemma_monitor_runtime_open_fds", "Open file descriptors.", fds)
        yield _gauge("gemma_monitor_runtime_threads", "Operating-system threads.", threads)
        try:
            tasks = len(asyncio.all_tasks(self._loop))
        except RuntimeError:  # scraped off a loop it was not told of (a test's render())
            tasks = None
        if tasks is not None:
            yield _gauge(
                "gemma_monitor_runtime_asyncio_tasks", "Tasks alive on the event loop.", tasks
            )
        states = Counter(c.status for c in process.net_connections(kind="tcp"))
        family = GaugeMetricFamily(
            "gemma_monitor_runtime_tcp_connections",
            "TCP sockets of the proxy (clients, backend, database, Redis, webhooks) by state.",
            labels=["state"],
        )
        for state in TCP_STATES:
            family.add_metric([state.lower()], states.get(state, 0))
        family.add_metric(
            ["other"], sum(n for state, n in states.items() if state not in TCP_STATES)
        )
        yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
