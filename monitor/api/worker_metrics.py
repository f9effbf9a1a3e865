"""`/metrics` when several worker processes share the port: one scrape shows every worker.

A scrape reaches whichever worker the kernel gave the connection to, so each worker serves its
own samples on a Unix socket in the supervisor's private runtime directory, and the worker
answering `/metrics` reads its siblings' there and merges them family by family. Every sample
carries a `worker_process` label (the worker's index, not its pid, so a restarted worker
continues its series; not `worker`, which names background workers): counters stay monotonic
per series, and `sum without (worker_process)` gives the monitor's total. A sibling that does
not answer within `SIBLING_TIMEOUT_S` (restarting, stuck) is left out of that scrape and
counted in `gemma_monitor_worker_scrape_failures_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

SIBLING_TIMEOUT_S = 2.0
LABEL = "worker_process"


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """One worker's place among `count`: its index and where the siblings' sockets are."""

    index: int
    count: int
    runtime_dir: Path

    @property
    def label(self) -> str:
        return str(self.index)

    def socket_path(self, index: int) -> Path:
        return self.runtime_dir / f"metrics-{index}.sock"

    def siblings(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]


class Labelled:
    """A collector's samples with `worker_process="<index>"` added (for `generate_latest`)."""

    def __init__(self, source: Any, worker: str) -> None:
        self.source = source
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            family.samples = [
                s._replace(labels={**s.labels, LABEL: self.worker}) for s in family.samples
            ]
            yield family


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge(expositions: Iterable[bytes]) -> bytes:
    """One exposition from several (each already labelled by worker): a family's samples from
    every worker together, under its first HELP and TYPE."""
    families: dict[str, Metric] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            seen = families.get(family.name)
            if seen is None:
                families[family.name] = family
            else:
                seen.samples += family.samples
    return generate_latest(_Families(families.values()))


class WorkerMetrics:
    """Serves this worker's samples to its siblings, and gathers theirs for a scrape."""

    def __init__(self, slot: WorkerSlot, registry: CollectorRegistry) -> None:
        self.slot = slot
        self.registry = registry
        self.scrape_failures = 0
        self._server: asyncio.AbstractServer | None = None
        registry.register(_Failures(self))  # in this worker's own samples, for every scrape

    def render_own(self) -> bytes:
        """This worker's exposition, labelled (blocking: collectors read /proc)."""
        return generate_latest(Labelled(self.registry, self.slot.label))

    async def start(self) -> None:
        path = self.slot.socket_path(self.slot.index)
        path.unlink(missing_ok=True)  # left by this slot's previous process
        self._server = await asyncio.start_unix_server(self._answer, path=str(path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await asyncio.to_thread(self.render_own))
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the asking worker gave up (timeout) or went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def scrape(self) -> bytes:
        """Every worker's samples, merged: this one's and each sibling's that answered."""
        found = await asyncio.gather(*(self._read(i) for i in self.slot.siblings()))
        own = await asyncio.to_thread(self.render_own)  # after the reads: their failures count
        return await asyncio.to_thread(merge, [own, *(text for text in found if text)])

    async def _read(self, index: int) -> bytes | None:
        path = self.slot.socket_path(index)
        try:
            async with asyncio.timeout(SIBLING_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    return await reader.read()
                finally:
                    writer.close()
        except (TimeoutError, OSError) as exc:
            self.scrape_failures += 1
            log.warning("metrics: worker %d did not answer (%s)", index, exc.__class__.__name__)
            return None


class _Failures(Collector):
    def __init__(self, owner: WorkerMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "gemma_monitor_worker_scrape_failures",
            "Scrapes that left out a sibling worker's samples (it did not answer in time).",
            value=self.owner.scrape_failures,
        )
