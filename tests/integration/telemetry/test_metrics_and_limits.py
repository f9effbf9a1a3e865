"""The metrics of /metrics reach a real OTLP receiver through the OpenTelemetry metrics API; a
slow collector never slows a request (a bounded queue, drops counted on /metrics); and a real
`gemma-monitor serve` process is switched on by the standard OTEL_* variables alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import HISTOGRAM_BUCKETS
from monitor.telemetry.instruments import otel_name
from tests.integration.telemetry.test_spans import CHAT, INJECTION, otel, span_of
from tests.support.fake_backend import FakeBackend
from tests.support.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver, Received
from tests.support.proxy import RunningProxy
from tests.support.servers import start_serve


def scrape(proxy: RunningProxy) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> labels -> value, of every sample on /metrics."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = httpx.get(f"{proxy.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_the_metrics_of_metrics_over_otlp(
    http_receiver: tuple[OtlpHttpReceiver, str],
    make_proxy: Callable[..., RunningProxy],
    fake_backend: FakeBackend,
) -> None:
    receiver, url = http_receiver
    proxy = make_proxy(**otel(url))
    for _ in range(3):
        assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200
    stream = {**CHAT, "stream": True}
    assert httpx.post(f"{proxy.url}/v1/chat/completions", json=stream).status_code == 200
    blocked = {**CHAT, "messages": [{"role": "user", "content": INJECTION}]}
    assert httpx.post(f"{proxy.url}/v1/chat/completions", json=blocked).status_code == 400
    proxy.records(5)
    text = httpx.get(f"{proxy.url}/metrics").text
    families = [f for f in text_string_to_metric_families(text) if f.samples]
    proxy.stop()  # the last export: every value as of now
    got = receiver.received.metrics()

    # every family with a sample on /metrics has its OpenTelemetry metric
    missing = []
    for family in families:
        if family.type == "histogram":
            wanted = otel_name(family.name)
        elif family.type == "summary":
            wanted = family.name + "_count"
        elif family.type in ("info", "stateset") or family.name.endswith("_created"):
            continue  # _created: a counter's start, which OTLP carries as start_time_unix_nano
        else:
            wanted = family.name
        if wanted not in got:
            missing.append(wanted)
    assert not missing, f"on /metrics, not exported: {missing}"

    duration = got["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = duration.histogram.data_points
    assert sum(p.count for p in points) == 5
    bounds = [b for b in HISTOGRAM_BUCKETS["gen_ai_client_operation_duration_seconds"]]
    assert list(points[0].explicit_bounds) == bounds[:-1]  # the same buckets, +Inf implied
    by_outcome = {
        {kv.key: kv.value.string_value for kv in p.attributes}["outcome"]: p.count for p in points
    }
    assert by_outcome == {"ok": 4, "blocked_input": 1}
    assert {kv.key for kv in points[0].attributes} == {"gen_ai.operation.name", "outcome"}

    tokens = got["gen_ai.client.token.usage"].histogram.data_points
    sums = {p.attributes[0].value.string_value: p.sum for p in tokens}
    assert sums == {"input": 4 * 7, "output": 4 * 3}

    requests = got["gemma_monitor_requests"]
    assert requests.sum.is_monotonic
    counted = {
        {kv.key: kv.value.string_value for kv in p.attributes}["outcome"]: p.as_double
        for p in requests.sum.data_points
    }
    assert counted == {"ok": 4.0, "blocked_input": 1.0}


def test_a_slow_collector_never_slows_a_request(
    http_receiver: tuple[OtlpHttpReceiver, str],
    make_proxy: Callable[..., RunningProxy],
    fake_backend: FakeBackend,
) -> None:
    receiver, url = http_receiver
    receiver.delay_s = 1.0  # each export takes a second
    proxy = make_proxy(**otel(url, queue_size=2, batch_size=1, metrics=False))
    n = 30
    started = time.monotonic()
    for _ in range(n):
        assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200
    elapsed = time.monotonic() - started
    # waiting for the exports would take n seconds; loaded runners are slow, not that slow
    assert elapsed < n * receiver.delay_s / 2
    dropped = scrape(proxy)["gemma_monitor_otel_dropped_total"][()]
    assert dropped > 0
    receiver.delay_s = 0.0

    def settled(_: Received) -> bool:
        m = scrape(proxy)
        exported = m["gemma_monitor_otel_spans_exported_total"][()]
        return exported + m["gemma_monitor_otel_dropped_total"][()] == n

    receiver.received.wait(settled, timeout=30)
    m = scrape(proxy)
    assert m["gemma_monitor_otel_dropped_total"][()] == dropped  # none dropped after the burst
    assert len(receiver.received.spans()) == n - dropped
    assert m["gemma_monitor_otel_queue_size"][()] == 2


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_serve_is_switched_on_by_the_standard_variables(
    protocol: str,
    grpc_receiver: OtlpGrpcReceiver,
    http_receiver: tuple[OtlpHttpReceiver, str],
    tmp_path: Path,
    fake_backend_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = grpc_receiver if protocol == "grpc" else http_receiver[0]
    endpoint = grpc_receiver.url if protocol == "grpc" else http_receiver[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gm-from-env")
    process, url = start_serve(tmp_path, fake_backend_url, otel__export_interval_s="0.05")
    try:
        resp = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200
        span = span_of(receiver.received, resp.headers["x-request-id"])
        assert span.resource["service.name"] == "gm-from-env"
        assert span.attributes["gen_ai.request.model"] == CHAT["model"]
    finally:
        process.terminate()
        process.wait(timeout=60)
