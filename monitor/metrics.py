"""Prometheus metrics, fed from finished request records at the edge.

A request's record is only queued where it finishes (`observe`: one append); the queue is
applied to the metrics in batches, by the event loop every `APPLY_EVERY` records and by whoever
reads the registry (a scrape, the OpenTelemetry export) before it reads. A batch adds its
observations up per counter and per histogram bucket and applies each sum once, so a request
costs a few bucket lookups instead of eight locked updates; what is read is always up to date.

Names follow Prometheus conventions and, where one fits, the OpenTelemetry GenAI semantic
conventions (`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`,
`gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`), with dots as
underscores and the unit as a suffix. Label values come only from bounded sets: route, outcome,
operation, token type. Never a model name from a request, a user or a request id.
"""

from __future__ import annotations

import collections
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from monitor.guard.model_guard import ClassifierCall
from monitor.record import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    20,
    40,
    80,
    160,
    float("inf"),
)
_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
    float("inf"),
)
_TPOT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1,
    2.5,
    float("inf"),
)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, float("inf"))
_CLASSIFIER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, float("inf"))
_SPEED_BUCKETS = (1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, float("inf"))
# What a guard finding can ask for that changes a request ("allow" findings are near misses).
_ACTED = frozenset({"flag", "redact", "block"})

_OPERATION = {
    "/v1/chat/completions": "chat",
    "/api/chat": "chat",
    "/v1/completions": "text_completion",
    "/api/generate": "text_completion",
}
APPLY_EVERY: Final = 256  # queued records applied at once by the event loop
# what the request metrics read of a record: route, outcome, latency_ms, verdicts, tokens_per_s,
# ttft_ms, itl_ms, prompt_tokens, completion_tokens
_Observed = tuple[
    str, str, float | None, list[Any] | None, float | None, float | None, float | None,
    int | None, int | None,
]  # fmt: skip

# Shared with the OpenTelemetry export (`monitor.telemetry.instruments`), so that its metrics
# are these: the GenAI operation of each route, the bucket bounds of each histogram.
OPERATIONS = _OPERATION
HISTOGRAM_BUCKETS = {
    "gen_ai_client_operation_duration_seconds": _DURATION_BUCKETS,
    "gen_ai_server_time_to_first_token_seconds": _TTFT_BUCKETS,
    "gen_ai_server_time_per_output_token_seconds": _TPOT_BUCKETS,
    "gen_ai_client_token_usage": _TOKEN_BUCKETS,
    "gemma_monitor_guard_classifier_duration_seconds": _CLASSIFIER_BUCKETS,
    "gemma_monitor_output_tokens_per_second": _SPEED_BUCKETS,
}


class RecorderStats(Protocol):
    @property
    def queue_depth(self) -> int: ...
    @property
    def spool_bytes(self) -> int: ...
    @property
    def spool_max_bytes(self) -> int | None: ...
    @property
    def records_sampled_out_total(self) -> int: ...

    records_written_total: int
    records_spooled_total: int
    records_rejected_total: int
    records_dropped_total: int
    records_dropped_spool_full_total: int
    write_errors_total: int


class _RecorderCollector(Collector):
    def __init__(self, stats: RecorderStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        s = self._stats
        yield GaugeMetricFamily(
            "gemma_monitor_recorder_queue_depth",
            "Records waiting in memory to be written.",
            value=s.queue_depth,
        )
        yield GaugeMetricFamily(
            "gemma_monitor_recorder_spool_bytes",
            "Bytes of records waiting in the spool for the database.",
            value=s.spool_bytes,
        )
        if s.spool_max_bytes is not None:
            yield GaugeMetricFamily(
                "gemma_monitor_recorder_spool_max_bytes",
                "The spool's cap (spool_max_bytes): past it records are dropped.",
                value=s.spool_max_bytes,
            )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_written",
            "Records written to the database.",
            value=s.records_written_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_spooled",
            "Records that went to the spool.",
            value=s.records_spooled_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_write_errors",
            "Failed database writes.",
            value=s.write_errors_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_rejected",
            "Records the database refused as data (kept apart in the spool's rejected file).",
            value=s.records_rejected_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_dropped",
            "Records lost: neither the database nor the spool could take them.",
            value=s.records_dropped_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_dropped_spool_full",
            "Of the records lost, those refused because the spool was at spool_max_bytes.",
            value=s.records_dropped_spool_full_total,
        )
        yield CounterMetricFamily(
            "gemma_monitor_recorder_records_sampled_out",
            "Successful requests not stored: sampling keeps one in N (sampling.share = 1/N).",
            value=s.records_sampled_out_total,
        )


class QualityCounts(Protocol):
    """What the quality worker counts, per scorer (`monitor.workers.quality.QualityStats`)."""

    @property
    def scored(self) -> Mapping[str, int]: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...
    @property
    def failed(self) -> Mapping[str, int]: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def overall_sum(self) -> Mapping[str, float]: ...
    @property
    def overall_count(self) -> Mapping[str, int]: ...


class _QualityCollector(Collector):
    # scorer: from the configured scorers and "user" (a bounded set), never from a request
    def __init__(self, counts: QualityCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        c = self._counts
        yield GaugeMetricFamily(
            "gemma_monitor_quality_queue_depth",
            "Sampled requests waiting to be scored.",
            value=c.queue_depth,
        )
        for name, what, counts in (
            ("scored", "Requests whose scores were stored, per scorer.", c.scored),
            ("dropped", "Scores lost to a full queue or an unreachable database.", c.dropped),
            ("failed", "Scorer errors, timeouts and unreadable judge answers.", c.failed),
        ):
            family = CounterMetricFamily(f"gemma_monitor_quality_{name}", what, labels=["scorer"])
            for scorer, count in sorted(counts.items()):
                family.add_metric([scorer], count)
            yield family
        overall = SummaryMetricFamily(
            "gemma_monitor_quality_overall_score",
            "Overall quality scores (0..1) written, per scorer: _sum / _count is their mean.",
            labels=["scorer"],
        )
        for scorer, count in sorted(c.overall_count.items()):
            overall.add_metric([scorer], count, c.overall_sum.get(scorer, 0.0))
        yield overall


class _Sums:
    """What a batch observed of one histogram (a labelled child): a count per bucket and the
    sum, applied at once as the histogram's own `observe` would have, value by value.

    It reads and adds to prometheus_client's `_upper_bounds`, `_buckets` and `_sum`, which are
    private (unchanged since 0.4); `tests/unit/test_metrics.py` compares the result with
    `observe` itself, so a release that changes them fails there, not in production."""

    __slots__ = ("counts", "histogram", "total", "upper_bounds")

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.upper_bounds: list[float] = histogram._upper_bounds
        self.counts = [0] * len(self.upper_bounds)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.total += value
        if value == value:  # NaN: in the sum, in no bucket (as `Histogram.observe`)
            self.counts[bisect_left(self.upper_bounds, value)] += 1

    def apply(self) -> None:
        self.histogram._sum.inc(self.total)
        for bucket, count in zip(self.histogram._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)


class _ApplyQueued(Collector):
    """Registered first: a read of the registry applies the queued records before the
    metrics after it are read."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self._metrics.apply_queued()
        return iter(())


class Metrics:
    """The app's metrics, on a registry of its own (a fresh one per app, so per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._queued: collections.deque[_Observed] = collections.deque()
        self._applying = threading.Lock()
        r.register(_ApplyQueued(self))
        self.requests = Counter(
            "gemma_monitor_requests",
            "Generation requests by route and outcome.",
            ("route", "outcome"),
            registry=r,
        )
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "End-to-end request duration as the client saw it.",
            ("gen_ai_operation_name", "outcome"),
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request to the first output token.",
            ("gen_ai_operation_name",),
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Mean time between output tokens after the first (streams).",
            ("gen_ai_operation_name",),
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, input and output.",
            ("gen_ai_token_type",),
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gemma_monitor_tokens", "Tokens processed.", ("gen_ai_token_type",), registry=r
        )
        self.inflight = Gauge(
            "gemma_monitor_inflight_requests", "Generation requests in progress.", registry=r
        )
        # classifier: from the policy's configuration (a bounded set), never from a request
        self.classifier_duration = Histogram(
            "gemma_monitor_guard_classifier_duration_seconds",
            "Guard model classifier calls (one per check and text), answered or not.",
            ("classifier", "stage", "outcome"),
            buckets=_CLASSIFIER_BUCKETS,
            registry=r,
        )
        self.classifier_failures = Counter(
            "gemma_monitor_guard_classifier_failures",
            "Guard classifier calls that failed (error) or did not answer in time (timeout).",
            ("classifier", "stage", "reason"),
            registry=r,
        )
        # the mean of this histogram is the built-in alert rules' mean_tokens_per_s
        self.output_speed = Histogram(
            "gemma_monitor_output_tokens_per_second",
            "Completion tokens per second of generation, per successful request.",
            buckets=_SPEED_BUCKETS,
            registry=r,
        )
        # check: a policy check's id (a bounded set from the configuration), never a request's
        self.guard_findings = Counter(
            "gemma_monitor_guard_findings",
            "Guard findings that acted on a request, by stage, policy check and action.",
            ("stage", "check", "action"),
            registry=r,
        )
        self._input_usage = self.token_usage.labels("input")
        self._output_usage = self.token_usage.labels("output")
        self._input_total = self.tokens.labels("input")
        self._output_total = self.tokens.labels("output")
        self._children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def track_recorder(self, stats: RecorderStats) -> None:
        self.registry.register(_RecorderCollector(stats))

    def track_inflight(self, count: Callable[[], float]) -> None:
        self.inflight.set_function(count)

    def track_quality(self, counts: QualityCounts) -> None:
        self.registry.register(_QualityCollector(counts))

    def observe_classifier(self, call: ClassifierCall) -> None:
        self.classifier_duration.labels(call.classifier, call.stage.value, call.outcome).observe(
            call.seconds
        )
        if call.outcome != "ok":
            self.classifier_failures.labels(call.classifier, call.stage.value, call.outcome).inc()

    def _count_findings(self, verdicts: list[dict[str, Any]]) -> None:
        """One increment per (stage, check, action), not per finding: a hostile text can
        carry thousands of findings, and this runs on the event loop."""
        acted: collections.Counter[tuple[Any, Any, str]] = collections.Counter(
            (verdict.get("stage"), finding.get("check"), finding["action"])
            for verdict in verdicts
            for finding in verdict.get("findings", ())
            if finding.get("action") in _ACTED
        )
        for labels, count in acted.items():
            self.guard_findings.labels(*labels).inc(count)

    def observe(self, record: RequestRecord) -> None:
        """Count a finished request (queued: see the module's docstring). What the metrics
        read is copied out, not the record: a record can hold a prompt and a reply."""
        queued = self._queued
        queued.append(
            (
                record.route,
                record.outcome,
                record.latency_ms,
                record.verdicts or None,
                record.tokens_per_s,
                record.ttft_ms,
                record.itl_ms,
                record.prompt_tokens,
                record.completion_tokens,
            )
        )
        if len(queued) >= APPLY_EVERY:
            self.apply_queued(wait=False)

    def apply_queued(self, *, wait: bool = True) -> None:
        """Apply the queued records to the metrics. `wait` False: return at once when another
        thread is applying them (it takes what is queued)."""
        if not self._applying.acquire(blocking=wait):
            return
        try:
            queued = self._queued
            batch = [queued.popleft() for _ in range(len(queued))]
            if batch:
                self._apply(batch)
        finally:
            self._applying.release()

    def _apply(self, batch: list[_Observed]) -> None:
        requests: collections.Counter[Any] = collections.Counter()
        sums: dict[int, _Sums] = {}

        def histogram(child: Any) -> _Sums:
            found = sums.get(id(child))
            if found is None:
                found = sums[id(child)] = _Sums(child)
            return found

        speed, input_usage, output_usage = (
            histogram(self.output_speed),
            histogram(self._input_usage),
            histogram(self._output_usage),
        )
        input_total = output_total = 0
        for (
            route,
            outcome,
            latency_ms,
            verdicts,
            per_s,
            ttft_ms,
            itl_ms,
            tokens_in,
            tokens_out,
        ) in batch:
            key = (route, outcome)
            children = self._children.get(key)
            if children is None:
                operation = _OPERATION.get(route, "other")
                children = (
                    self.requests.labels(route, outcome),
                    self.duration.labels(operation, outcome),
                    self.ttft.labels(operation),
                    self.tpot.labels(operation),
                )
                self._children[key] = children
            counter, duration, ttft, tpot = children
            requests[counter] += 1
            if latency_ms is not None:
                histogram(duration).add(latency_ms / 1000.0)
            if verdicts:
                self._count_findings(verdicts)
            if outcome != "ok":
                continue
            if per_s is not None:
                speed.add(per_s)
            if ttft_ms is not None:
                histogram(ttft).add(ttft_ms / 1000.0)
            if itl_ms is not None:
                histogram(tpot).add(itl_ms / 1000.0)
            if tokens_in is not None:
                input_usage.add(tokens_in)
                input_total += tokens_in
            if tokens_out is not None:
                output_usage.add(tokens_out)
                output_total += tokens_out
        for counter, count in requests.items():
            counter.inc(count)
        for observed in sums.values():
            if any(observed.counts) or observed.total:
                observed.apply()
        if input_total:
            self._input_total.inc(input_total)
        if output_total:
            self._output_total.inc(output_total)

    def render(self) -> bytes:
        return generate_latest(self.registry)
