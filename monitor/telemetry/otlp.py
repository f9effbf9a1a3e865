"""The OpenTelemetry SDK objects behind `Telemetry`: OTLP exporters for the chosen protocol
(http/protobuf or grpc), the resource (`service.name`, `service.version`), the span builder,
and a meter provider of its own (never the global one: a test can run two apps in one
process) with the histogram views and a periodic reader.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from monitor.telemetry.exporter import Telemetry
from monitor.telemetry.instruments import HistogramMirror, PrometheusBridge, Registry, views
from monitor.telemetry.options import OtelOptions
from monitor.telemetry.spans import SCOPE, SpanBuilder


def build(options: OtelOptions, registry: Registry) -> Telemetry:
    resource = Resource.create(
        {"service.name": options.service_name, "service.version": _version()}
    )
    spans = span_exporter = None
    if options.traces_endpoint is not None:
        spans = SpanBuilder(resource)
        span_exporter = _span_exporter(options, options.traces_endpoint)
    mirror = bridge = meter_provider = None
    if options.metrics_endpoint is not None:
        reader = PeriodicExportingMetricReader(
            _metric_exporter(options, options.metrics_endpoint),
            export_interval_millis=options.metrics_interval_s * 1000,
        )
        meter_provider = MeterProvider(
            metric_readers=[reader], resource=resource, views=views(), shutdown_on_exit=False
        )
        meter = meter_provider.get_meter(SCOPE)
        mirror, bridge = HistogramMirror(meter), PrometheusBridge(meter, registry)
    return Telemetry(options, spans, span_exporter, mirror, bridge, meter_provider)


def _version() -> str:
    try:
        return version("gemma-monitor")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _timeout(options: OtelOptions) -> dict[str, Any]:
    return {} if options.timeout_s is None else {"timeout": options.timeout_s}


def _span_exporter(options: OtelOptions, endpoint: str) -> Any:
    if options.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, **_timeout(options))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(endpoint=endpoint, **_timeout(options))


def _metric_exporter(options: OtelOptions, endpoint: str) -> Any:
    if options.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, **_timeout(options))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter(endpoint=endpoint, **_timeout(options))
