"""When OpenTelemetry export is on, and where it goes: settings and the standard variables."""

from __future__ import annotations

import pytest

from monitor.config import OtelSettings
from monitor.telemetry.options import OtelOptionsError, resolve


def test_off_by_default() -> None:
    assert resolve(OtelSettings(), {}) is None


def test_on_through_the_standard_endpoint_variable() -> None:
    options = resolve(OtelSettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert options is not None
    assert options.protocol == "http/protobuf"
    assert options.traces_endpoint == "http://collector:4318/v1/traces"
    assert options.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert options.service_name == "gemma-monitor"


def test_grpc_takes_the_endpoint_as_it_is() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "gm-east",
    }
    options = resolve(OtelSettings(), env)
    assert options is not None
    assert options.protocol == "grpc"
    assert options.traces_endpoint == options.metrics_endpoint == "http://collector:4317"
    assert options.service_name == "gm-east"


def test_the_variables_win_over_the_file() -> None:
    settings = OtelSettings(endpoint="http://file:4318", service_name="from-file")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_SERVICE_NAME": "from-env"}
    options = resolve(settings, env)
    assert options is not None
    assert options.traces_endpoint == "http://env:4318/v1/traces"
    assert options.service_name == "from-env"
    file_only = resolve(settings, {})
    assert file_only is not None and file_only.traces_endpoint == "http://file:4318/v1/traces"


def test_a_signals_own_endpoint_is_used_as_it_is() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom"}
    options = resolve(OtelSettings(), env)
    assert options is not None
    assert options.traces_endpoint == "http://traces:9999/custom"
    assert options.metrics_endpoint == "http://localhost:4318/v1/metrics"


def test_sdk_disabled_and_enabled_false_turn_it_off() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert resolve(OtelSettings(), {**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert resolve(OtelSettings(), {**endpoint, "OTEL_SDK_DISABLED": "false"}) is not None
    assert resolve(OtelSettings(enabled=False), endpoint) is None


def test_enabled_without_endpoint_uses_the_otlp_default() -> None:
    options = resolve(OtelSettings(enabled=True, protocol="grpc"), {})
    assert options is not None and options.traces_endpoint == "http://localhost:4317"


def test_one_signal_off() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    options = resolve(OtelSettings(), {**endpoint, "OTEL_METRICS_EXPORTER": "none"})
    assert options is not None and options.metrics_endpoint is None
    assert options.traces_endpoint is not None
    options = resolve(OtelSettings(traces=False), endpoint)
    assert options is not None and options.traces_endpoint is None
    both_off = {**endpoint, "OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"}
    assert resolve(OtelSettings(), both_off) is None


def test_metric_interval_in_milliseconds() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRIC_EXPORT_INTERVAL": "1500"}
    options = resolve(OtelSettings(), env)
    assert options is not None and options.metrics_interval_s == 1.5


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_METRIC_EXPORT_INTERVAL": "soon"},
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(OtelOptionsError, match=next(iter(env))):
        resolve(OtelSettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})
