"""Whether OpenTelemetry export is on, and where it goes: the `otel:` settings section read
together with the standard OpenTelemetry environment variables, which win, as every OTel user
expects. Pure: no OpenTelemetry import, so it runs (and says "off") without the extra.

The variables read here: `OTEL_SDK_DISABLED`, `OTEL_EXPORTER_OTLP_ENDPOINT` and its
`_TRACES_`/`_METRICS_` forms (a signal's own endpoint is used as it is; the general one gets
`/v1/traces` or `/v1/metrics` appended for http/protobuf), `OTEL_EXPORTER_OTLP_PROTOCOL`,
`OTEL_SERVICE_NAME`, `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` (`none` turns that signal
off) and `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds). The exporters read the rest
themselves (`OTEL_EXPORTER_OTLP_HEADERS`, `_CERTIFICATE`, `_COMPRESSION`, `_TIMEOUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config import OtelSettings

PROTOCOLS = ("http/protobuf", "grpc")
_DEFAULT_ENDPOINT = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
_SIGNAL_PATH = {"traces": "/v1/traces", "metrics": "/v1/metrics"}


class OtelOptionsError(ValueError):
    """An OTEL_* variable has a value this exporter cannot use (an unknown protocol)."""


@dataclass(frozen=True, slots=True)
class OtelOptions:
    """Resolved export options; an endpoint of None turns that signal off."""

    protocol: str
    traces_endpoint: str | None
    metrics_endpoint: str | None
    service_name: str
    queue_size: int
    batch_size: int
    export_interval_s: float
    metrics_interval_s: float
    timeout_s: float | None  # None: the exporters read OTEL_EXPORTER_OTLP_TIMEOUT


def resolve(settings: OtelSettings, environ: Mapping[str, str]) -> OtelOptions | None:
    """The export options, or None when export is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.enabled is False:
        return None
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or settings.endpoint
    own = {
        signal: environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        for signal in _SIGNAL_PATH
    }
    if settings.enabled is None and not base and not any(own.values()):
        return None
    protocol = (environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or settings.protocol).strip()
    if protocol not in PROTOCOLS:
        raise OtelOptionsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use one of {', '.join(PROTOCOLS)}"
        )
    base = base or _DEFAULT_ENDPOINT[protocol]
    wanted = {
        "traces": settings.traces and _exporter_on(environ, "OTEL_TRACES_EXPORTER"),
        "metrics": settings.metrics and _exporter_on(environ, "OTEL_METRICS_EXPORTER"),
    }
    endpoints: dict[str, str | None] = {}
    for signal, path in _SIGNAL_PATH.items():
        if not wanted[signal]:
            endpoints[signal] = None
        elif own[signal]:
            endpoints[signal] = own[signal]
        elif protocol == "grpc":
            endpoints[signal] = base
        else:
            endpoints[signal] = base.rstrip("/") + path
    if endpoints["traces"] is None and endpoints["metrics"] is None:
        return None
    metrics_interval_s = settings.metrics_interval_s
    if interval := environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
        try:
            metrics_interval_s = float(interval) / 1000.0
        except ValueError:
            raise OtelOptionsError(
                f"OTEL_METRIC_EXPORT_INTERVAL={interval!r}: milliseconds, a number"
            ) from None
    return OtelOptions(
        protocol=protocol,
        traces_endpoint=endpoints["traces"],
        metrics_endpoint=endpoints["metrics"],
        service_name=environ.get("OTEL_SERVICE_NAME") or settings.service_name,
        queue_size=settings.queue_size,
        batch_size=settings.batch_size,
        export_interval_s=settings.export_interval_s,
        metrics_interval_s=metrics_interval_s,
        timeout_s=None if environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") else settings.timeout_s,
    )


def _exporter_on(environ: Mapping[str, str], name: str) -> bool:
    """`none` turns a signal off; any other value (`otlp`, the default) leaves it on."""
    return environ.get(name, "otlp").strip().lower() != "none"
