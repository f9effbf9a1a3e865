"""Worker metrics: each worker's samples labelled, merged family by family, siblings read over
Unix sockets, a sibling that does not answer left out and counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.api.worker_metrics import Labelled, WorkerMetrics, WorkerSlot, merge


def _registry(requests: int, inflight: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("gm_requests", "Requests.", ("route",), registry=registry).labels("a").inc(requests)
    Gauge("gm_inflight", "In flight.", registry=registry).set(inflight)
    Histogram("gm_seconds", "Time.", buckets=(1,), registry=registry).observe(0.5)
    return registry


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_merge_keeps_one_family_per_name_with_every_workers_samples() -> None:
    merged = merge(generate_latest(Labelled(_registry(3, 1), str(index))) for index in range(2))
    text = merged.decode()
    assert text.count("# TYPE gm_requests_total counter") == 1
    assert text.count("# TYPE gm_seconds histogram") == 1
    samples = _samples(merged)
    for worker in ("0", "1"):
        assert samples[("gm_requests_total", (("route", "a"), ("worker_process", worker)))] == 3
        assert samples[("gm_inflight", (("worker_process", worker),))] == 1
        assert samples[("gm_seconds_bucket", (("le", "1.0"), ("worker_process", worker)))] == 1


def test_a_scrape_reads_the_siblings_and_counts_one_that_is_missing(tmp_path: Path) -> None:
    async def run() -> tuple[bytes, int]:
        slots = [WorkerSlot(i, 3, tmp_path) for i in range(3)]
        first = WorkerMetrics(slots[0], _registry(5, 0))
        second = WorkerMetrics(slots[1], _registry(7, 2))  # worker 2 never starts
        await first.start()
        await second.start()
        try:
            return await first.scrape(), first.scrape_failures
        finally:
            await first.stop()
            await second.stop()

    text, failures = asyncio.run(run())
    samples = _samples(text)
    assert samples[("gm_requests_total", (("route", "a"), ("worker_process", "0")))] == 5
    assert samples[("gm_requests_total", (("route", "a"), ("worker_process", "1")))] == 7
    assert not any(dict(labels).get("worker_process") == "2" for _, labels in samples)
    assert failures == 1
    assert samples[("gemma_monitor_worker_scrape_failures_total", (("worker_process", "0"),))] == 1
