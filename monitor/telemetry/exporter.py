"""The OpenTelemetry exporter: a bounded queue the request path offers finished records to, and
one thread that turns them into spans and metrics and sends them over OTLP.

The request path pays one `put_nowait` per record (and per guard classifier call); when the
queue is full the item is dropped and counted (`gemma_monitor_otel_dropped` on /metrics), never
waited for. Spans leave in batches of `batch_size`, or after `export_interval_s`; the metrics go
through the SDK's periodic reader every `metrics_interval_s`. A failed export is counted and
logged, not retried past what the OTLP exporter itself retries. At shutdown the queue is
drained and both signals flushed, each within the export timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from monitor.guard.model_guard import ClassifierCall
from monitor.record import RequestRecord
from monitor.telemetry.options import OtelOptions

if TYPE_CHECKING:
    from monitor.telemetry.instruments import HistogramMirror, PrometheusBridge
    from monitor.telemetry.spans import SpanBuilder

log = logging.getLogger(__name__)
_STOP = object()
_REFRESH_S = 5.0  # how stale the bridged counters and gauges may be at an export


class Telemetry:
    """Owns the queue, the export thread and the OpenTelemetry providers."""

    def __init__(
        self,
        options: OtelOptions,
        spans: SpanBuilder | None,
        span_exporter: Any,
        mirror: HistogramMirror | None,
        bridge: PrometheusBridge | None,
        meter_provider: Any,
    ) -> None:
        self.options = options
        self._spans, self._span_exporter = spans, span_exporter
        self._mirror, self._bridge, self._meter_provider = mirror, bridge, meter_provider
        self._queue: queue.Queue[object] = queue.Queue(options.queue_size)
        self._thread: threading.Thread | None = None
        self._refresher: asyncio.Task[None] | None = None
        # written by one thread each: `dropped` by the event loop, the rest by the exporter
        self.dropped_total = 0
        self.spans_exported_total = 0
        self.spans_failed_total = 0

    @property
    def tracing(self) -> bool:
        return self._spans is not None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def queue_size(self) -> int:
        return self.options.queue_size

    def offer(self, item: RequestRecord | ClassifierCall) -> None:
        """Hand over a finished record or a classifier call; never waits."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped_total += 1

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-export", daemon=True)
        self._thread.start()
        if self._bridge is not None:
            self._bridge.refresh()
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def stop(self) -> None:
        """Export what is queued, flush both signals, stop the thread."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._bridge is not None:
            self._bridge.refresh()  # the last values, for the final metric export
        if self._thread is not None:
            while True:  # the stop mark must get in, after what is queued
                try:
                    self._queue.put_nowait(_STOP)
                    break
                except queue.Full:
                    await asyncio.sleep(0.01)
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._shutdown)

    async def _refresh(self) -> None:
        assert self._bridge is not None
        interval = min(_REFRESH_S, self.options.metrics_interval_s / 2)
        while True:
            await asyncio.sleep(interval)
            try:  # in a thread, as a scrape is: the collectors read /proc (the TCP table ...)
                await asyncio.to_thread(self._bridge.refresh)
            except Exception:  # a collector's bug must not end the export
                log.exception("reading the Prometheus registry for OpenTelemetry failed")

    def _shutdown(self) -> None:
        if self._span_exporter is not None:
            self._span_exporter.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown(timeout_millis=(self.options.timeout_s or 10) * 1000)

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._export()
                return
            if item is not None:
                try:
                    self._take(item)
                except Exception:  # one odd record must not end the export
                    log.exception("turning a record into OpenTelemetry data failed")
            pending = len(self._spans) if self._spans is not None else 0
            if pending and deadline is None:
                deadline = time.monotonic() + self.options.export_interval_s
            if pending >= self.options.batch_size or (
                deadline is not None and time.monotonic() >= deadline
            ):
                self._export()
                deadline = None

    def _take(self, item: object) -> None:
        if isinstance(item, RequestRecord):
            if self._spans is not None:
                self._spans.add(item)
            if self._mirror is not None:
                self._mirror.observe(item)
        elif isinstance(item, ClassifierCall) and self._mirror is not None:
            self._mirror.observe_classifier(item)

    def _export(self) -> None:
        if self._spans is None:
            return
        batch = self._spans.take()
        if not batch:
            return
        try:
            ok = self._span_exporter.export(batch).name == "SUCCESS"
        except Exception:
            log.exception("exporting %d spans failed", len(batch))
            ok = False
        if ok:
            self.spans_exported_total += len(batch)
        else:
            self.spans_failed_total += len(batch)
            log.warning("%d spans not exported (OTLP %s)", len(batch), self.options.protocol)
