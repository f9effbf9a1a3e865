"""`build_telemetry`: the OpenTelemetry exporter for resolved options. Importing this module
imports no OpenTelemetry package, so the composition root can import it without the `otel`
extra; the SDK is imported only when export is on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.telemetry.options import OtelOptions

if TYPE_CHECKING:
    from monitor.telemetry.exporter import Telemetry
    from monitor.telemetry.instruments import Registry


def build_telemetry(options: OtelOptions, registry: Registry) -> Telemetry:
    """The exporter for `options`, over the app's Prometheus `registry`. Raises `ImportError`
    naming the extra when the OpenTelemetry packages are not installed."""
    try:
        from monitor.telemetry import otlp
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            f"OpenTelemetry export is on but its packages are missing ({exc}); "
            "install gemma-monitor[otel]"
        ) from exc
    return otlp.build(options, registry)
