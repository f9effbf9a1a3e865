"""The OpenTelemetry exporter's own counts on /metrics: how full its queue is, what it dropped
(queue full: the request went on without waiting), and how many spans were exported or lost
to a failed export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ExportCounts(Protocol):
    @property
    def queue_depth(self) -> int: ...
    @property
    def queue_size(self) -> int: ...

    dropped_total: int
    spans_exported_total: int
    spans_failed_total: int


class TelemetryCollector(Collector):
    def __init__(self, counts: ExportCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        c = self._counts
        yield GaugeMetricFamily(
            "gemma_monitor_otel_queue_depth",
            "Records and classifier calls waiting for the OpenTelemetry exporter.",
            value=c.queue_depth,
        )
        yield GaugeMetricFamily(
            "gemma_monitor_otel_queue_size",
            "The OpenTelemetry queue's capacity (otel.queue_size): past it items are dropped.",
            value=c.queue_size,
        )
        yield CounterMetricFamily(
            "gemma_monitor_otel_dropped",
            "Records and classifier calls not exported because the queue was full.",
            value=c.dropped_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_otel_spans_exported",
            "Spans the OTLP receiver accepted.",
            value=c.spans_exported_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_otel_spans_failed",
            "Spans lost to a failed OTLP export (after the exporter's own retries).",
            value=c.spans_failed_total,
        )
