"""The metrics of /metrics through the OpenTelemetry metrics API, on a meter provider of the
exporter's own.

Two parts, so that what is exported is what Prometheus scrapes:

- `PrometheusBridge`: every counter, gauge and summary in the app's Prometheus registry (the
  request and token counters, the recorder, quality, workers, GPU, process, alerts ...) becomes
  an observable instrument of the same name and labels (a histogram no record feeds, the event
  loop's lateness, becomes counters of its buckets, count and sum), read from a snapshot of the
  registry that `refresh` takes in a thread, as a scrape of /metrics does. A family that
  appears later (a GPU seen late) gets its instrument at the next refresh.
- `HistogramMirror`: a histogram cannot be observed from outside, so each Prometheus histogram
  has an OpenTelemetry one with the same bucket bounds (a view), fed on the export thread from
  the same finished records (and guard classifier calls) that feed Prometheus, by the same
  rules (`monitor.metrics.Metrics.observe`). The GenAI ones take their semantic-convention
  names and attributes (`NAMES`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from monitor.guard.model_guard import ClassifierCall
from monitor.metrics import HISTOGRAM_BUCKETS, OPERATIONS
from monitor.record import RequestRecord

# Prometheus name -> (OpenTelemetry name, unit); label names map through `_ATTRIBUTES`
NAMES: dict[str, tuple[str, str]] = {
    "gen_ai_client_operation_duration_seconds": ("gen_ai.client.operation.duration", "s"),
    "gen_ai_server_time_to_first_token_seconds": ("gen_ai.server.time_to_first_token", "s"),
    "gen_ai_server_time_per_output_token_seconds": ("gen_ai.server.time_per_output_token", "s"),
    "gen_ai_client_token_usage": ("gen_ai.client.token.usage", "{token}"),
    "gemma_monitor_guard_classifier_duration_seconds": (
        "gemma_monitor.guard.classifier.duration",
        "s",
    ),
    "gemma_monitor_output_tokens_per_second": ("gemma_monitor.output.tokens_per_second", "1/s"),
}
_ATTRIBUTES = {
    "gen_ai_operation_name": "gen_ai.operation.name",
    "gen_ai_token_type": "gen_ai.token.type",
}


def otel_name(prometheus_name: str) -> str:
    return NAMES.get(prometheus_name, (prometheus_name, ""))[0]


def views() -> list[View]:
    """The Prometheus histograms' bucket bounds, for the meter provider."""
    return [
        View(
            instrument_name=otel_name(name),
            aggregation=ExplicitBucketHistogramAggregation(
                [b for b in bounds if b != float("inf")]
            ),
        )
        for name, bounds in HISTOGRAM_BUCKETS.items()
    ]


class Registry(Protocol):
    def collect(self) -> Iterable[Any]: ...


class HistogramMirror:
    """OpenTelemetry histograms fed like the Prometheus ones; used from one thread."""

    def __init__(self, meter: Meter) -> None:
        def make(prometheus_name: str, description: str) -> Any:
            name, unit = NAMES[prometheus_name]
            return meter.create_histogram(name, unit=unit, description=description)

        self.duration = make(
            "gen_ai_client_operation_duration_seconds", "End-to-end request duration."
        )
        self.ttft = make("gen_ai_server_time_to_first_token_seconds", "Time to first token.")
        self.tpot = make("gen_ai_server_time_per_output_token_seconds", "Time per output token.")
        self.tokens = make("gen_ai_client_token_usage", "Tokens per request.")
        self.speed = make("gemma_monitor_output_tokens_per_second", "Output tokens per second.")
        self.classifier = make(
            "gemma_monitor_guard_classifier_duration_seconds", "Guard classifier calls."
        )

    def observe(self, record: RequestRecord) -> None:
        operation = {"gen_ai.operation.name": OPERATIONS.get(record.route, "other")}
        if record.latency_ms is not None:
            self.duration.record(
                record.latency_ms / 1000.0, {**operation, "outcome": record.outcome}
            )
        if record.outcome != "ok":
            return
        if record.tokens_per_s is not None:
            self.speed.record(record.tokens_per_s)
        if record.ttft_ms is not None:
            self.ttft.record(record.ttft_ms / 1000.0, operation)
        if record.itl_ms is not None:
            self.tpot.record(record.itl_ms / 1000.0, operation)
        if record.prompt_tokens is not None:
            self.tokens.record(record.prompt_tokens, {"gen_ai.token.type": "input"})
        if record.completion_tokens is not None:
            self.tokens.record(record.completion_tokens, {"gen_ai.token.type": "output"})

    def observe_classifier(self, call: ClassifierCall) -> None:
        self.classifier.record(
            call.seconds,
            {"classifier": call.classifier, "stage": call.stage.value, "outcome": call.outcome},
        )


# Prometheus sample -> (family name, kind, labels, value)
_Sample = tuple[str, dict[str, str], float]


class PrometheusBridge:
    """Observable instruments over the counters, gauges and summaries of a registry."""

    def __init__(self, meter: Meter, registry: Registry) -> None:
        self._meter = meter
        self._registry = registry
        self._snapshot: dict[str, list[tuple[dict[str, str], float]]] = {}
        self._known: set[str] = set()
        self._lock = threading.Lock()  # instruments are made by refresh, read on the reader's

    def refresh(self) -> None:
        """Collect the registry (in a thread, off the event loop, as a scrape does) and make
        instruments for new families."""
        snapshot: dict[str, list[tuple[dict[str, str], float]]] = {}
        new: list[tuple[str, str, str]] = []
        for family in self._registry.collect():
            for name, kind, samples in _scalar_series(family):
                snapshot[name] = samples
                if name not in self._known:
                    self._known.add(name)
                    new.append((name, kind, family.documentation))
        self._snapshot = snapshot  # one reference swap: the reader sees the old or the new
        with self._lock:
            for name, kind, doc in new:
                create = (
                    self._meter.create_observable_counter
                    if kind == "counter"
                    else self._meter.create_observable_gauge
                )
                create(name, callbacks=[self._callback(name)], description=doc)

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for labels, value in self._snapshot.get(name, ()):
                yield Observation(value, {_ATTRIBUTES.get(k, k): v for k, v in labels.items()})

        return observe


def _scalar_series(
    family: Any,
) -> Iterator[tuple[str, str, list[tuple[dict[str, str], float]]]]:
    """(instrument name, counter or gauge, samples) of a Prometheus family; the histograms of
    `NAMES` are the mirror's, info and state sets are not exported."""
    kind = family.type
    samples: Sequence[Any] = family.samples
    if kind == "counter":
        yield family.name, "counter", _values(samples, family.name + "_total")
    elif kind in ("gauge", "unknown"):
        yield family.name, "gauge", _values(samples, family.name)
    elif kind == "summary":
        yield family.name + "_count", "counter", _values(samples, family.name + "_count")
        yield family.name + "_sum", "counter", _values(samples, family.name + "_sum")
    elif kind == "histogram" and family.name not in NAMES:
        # a histogram no record feeds (the event loop's lateness, sampled in the process):
        # its cumulative buckets by `le`, its count and its sum, as counters
        yield family.name, "counter", _values(samples, family.name + "_bucket")
        yield family.name + "_count", "counter", _values(samples, family.name + "_count")
        yield family.name + "_sum", "counter", _values(samples, family.name + "_sum")


def _values(samples: Sequence[Any], name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), float(s.value)) for s in samples if s.name == name]
