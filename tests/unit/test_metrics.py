"""Metrics: records observed become Prometheus series with bounded labels, per registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import Metrics
from monitor.record import RequestRecord


def record(**fields: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "id": "req-1",
        "ts": datetime(2025, 1, 1, tzinfo=UTC),
        "route": "/v1/chat/completions",
        "protocol": "openai",
    }
    return RequestRecord(**(base | fields))


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def ok_chat() -> RequestRecord:
    return record(
        latency_ms=1500.0,
        ttft_ms=200.0,
        itl_ms=20.0,
        prompt_tokens=10,
        completion_tokens=20,
    )


def test_render_has_the_request_counter_with_route_and_outcome_labels() -> None:
    m = Metrics()
    m.observe(ok_chat())
    m.observe(ok_chat())
    lines = [
        line
        for line in m.render().decode().splitlines()
        if line.startswith("gemma_monitor_requests_total{")
    ]
    assert len(lines) == 1
    assert 'route="/v1/chat/completions"' in lines[0]
    assert 'outcome="ok"' in lines[0]
    assert lines[0].endswith("} 2.0")
    assert value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="ok") == 2


def test_duration_histogram_by_operation_and_outcome() -> None:
    m = Metrics()
    m.observe(ok_chat())
    labels = {"gen_ai_operation_name": "chat", "outcome": "ok"}
    name = "gen_ai_client_operation_duration_seconds"
    assert value(m, f"{name}_count", **labels) == 1
    assert value(m, f"{name}_sum", **labels) == pytest.approx(1.5)
    assert value(m, f"{name}_bucket", le="1.0", **labels) == 0
    assert value(m, f"{name}_bucket", le="2.5", **labels) == 1
    assert value(m, f"{name}_bucket", le="+Inf", **labels) == 1


def test_ttft_and_time_per_output_token() -> None:
    m = Metrics()
    m.observe(ok_chat())
    op = {"gen_ai_operation_name": "chat"}
    assert value(m, "gen_ai_server_time_to_first_token_seconds_count", **op) == 1
    assert value(m, "gen_ai_server_time_to_first_token_seconds_sum", **op) == pytest.approx(0.2)
    assert value(m, "gen_ai_server_time_per_output_token_seconds_sum", **op) == pytest.approx(0.02)


def test_token_usage_by_token_type() -> None:
    m = Metrics()
    m.observe(ok_chat())
    m.observe(
        record(route="/api/generate", protocol="ollama", prompt_tokens=5, completion_tokens=1)
    )
    usage = "gen_ai_client_token_usage"
    assert value(m, f"{usage}_count", gen_ai_token_type="input") == 2
    assert value(m, f"{usage}_sum", gen_ai_token_type="input") == 15
    assert value(m, f"{usage}_sum", gen_ai_token_type="output") == 21
    assert value(m, f"{usage}_bucket", gen_ai_token_type="output", le="1.0") == 1
    assert value(m, f"{usage}_bucket", gen_ai_token_type="output", le="4.0") == 1
    assert value(m, f"{usage}_bucket", gen_ai_token_type="output", le="64.0") == 2
    assert value(m, "gemma_monitor_tokens_total", gen_ai_token_type="input") == 15
    assert value(m, "gemma_monitor_tokens_total", gen_ai_token_type="output") == 21


@pytest.mark.parametrize(
    ("route", "operation"),
    [
        ("/v1/chat/completions", "chat"),
        ("/api/chat", "chat"),
        ("/v1/completions", "text_completion"),
        ("/api/generate", "text_completion"),
        ("/v1/embeddings", "other"),
    ],
)
def test_routes_map_to_operation_names(route: str, operation: str) -> None:
    m = Metrics()
    m.observe(record(route=route, latency_ms=10.0, ttft_ms=5.0))
    assert value(m, "gemma_monitor_requests_total", route=route, outcome="ok") == 1
    name = "gen_ai_client_operation_duration_seconds_count"
    assert value(m, name, gen_ai_operation_name=operation, outcome="ok") == 1
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    assert value(m, ttft, gen_ai_operation_name=operation) == 1


def test_failed_requests_count_and_time_but_add_no_tokens_or_ttft() -> None:
    m = Metrics()
    m.observe(
        record(
            outcome="backend_error",
            http_status=502,
            latency_ms=300.0,
            ttft_ms=100.0,
            prompt_tokens=10,
            completion_tokens=3,
        )
    )
    route = "/v1/chat/completions"
    assert value(m, "gemma_monitor_requests_total", route=route, outcome="backend_error") == 1
    assert value(m, "gemma_monitor_requests_total", route=route, outcome="ok") is None
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert value(m, duration, gen_ai_operation_name="chat", outcome="backend_error") == 1
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    assert value(m, ttft, gen_ai_operation_name="chat") == 0
    assert value(m, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 0
    assert value(m, "gemma_monitor_tokens_total", gen_ai_token_type="output") == 0


def test_record_without_latency_is_counted_but_not_timed() -> None:
    m = Metrics()
    m.observe(record(outcome="invalid", http_status=400))
    assert (
        value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="invalid")
        == 1
    )
    name = "gen_ai_client_operation_duration_seconds_count"
    assert value(m, name, gen_ai_operation_name="chat", outcome="invalid") == 0


def test_label_values_never_include_request_specific_data() -> None:
    m = Metrics()
    m.observe(record(id="secret-id", model="user-model", principal="alice", latency_ms=1.0))
    text = m.render().decode()
    for leaked in ("secret-id", "user-model", "alice"):
        assert leaked not in text


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    assert a.registry is not b.registry
    a.observe(ok_chat())
    a.observe(ok_chat())
    b.observe(ok_chat())
    route = "/v1/chat/completions"
    assert value(a, "gemma_monitor_requests_total", route=route, outcome="ok") == 2
    assert value(b, "gemma_monitor_requests_total", route=route, outcome="ok") == 1
    assert value(Metrics(), "gemma_monitor_requests_total", route=route, outcome="ok") is None


class FakeRecorderStats:
    queue_depth = 3
    spool_bytes = 1024
    spool_max_bytes = 4096
    records_written_total = 100
    records_spooled_total = 7
    records_rejected_total = 1
    records_dropped_total = 5
    records_dropped_spool_full_total = 4
    records_sampled_out_total = 9
    write_errors_total = 2


def test_recorder_stats_are_exported() -> None:
    m = Metrics()
    m.track_recorder(FakeRecorderStats())
    assert value(m, "gemma_monitor_recorder_queue_depth") == 3
    assert value(m, "gemma_monitor_recorder_spool_bytes") == 1024
    assert value(m, "gemma_monitor_recorder_records_written_total") == 100
    assert value(m, "gemma_monitor_recorder_records_spooled_total") == 7
    assert value(m, "gemma_monitor_recorder_write_errors_total") == 2
    assert value(m, "gemma_monitor_recorder_records_rejected_total") == 1
    assert value(m, "gemma_monitor_recorder_records_dropped_total") == 5
    assert value(m, "gemma_monitor_recorder_records_dropped_spool_full_total") == 4
    assert value(m, "gemma_monitor_recorder_spool_max_bytes") == 4096
    assert value(m, "gemma_monitor_recorder_records_sampled_out_total") == 9


def test_inflight_gauge_reads_the_callback() -> None:
    m = Metrics()
    count = [4]
    m.track_inflight(lambda: count[0])
    assert value(m, "gemma_monitor_inflight_requests") == 4
    count[0] = 1
    assert value(m, "gemma_monitor_inflight_requests") == 1


def _reference(records: list[RequestRecord]) -> dict[Any, float]:
    """What one observation at a time gives: the same metrics fed through prometheus_client's
    own `inc` and `observe`, record by record."""
    m = Metrics()
    for r in records:
        operation = {"/api/generate": "text_completion"}.get(r.route, "chat")
        m.ttft.labels(operation), m.tpot.labels(operation)  # a route's series exist at once
        m.requests.labels(r.route, r.outcome).inc()
        if r.latency_ms is not None:
            m.duration.labels(operation, r.outcome).observe(r.latency_ms / 1000.0)
        if r.outcome != "ok":
            continue
        if r.tokens_per_s is not None:
            m.output_speed.observe(r.tokens_per_s)
        if r.ttft_ms is not None:
            m.ttft.labels(operation).observe(r.ttft_ms / 1000.0)
        if r.itl_ms is not None:
            m.tpot.labels(operation).observe(r.itl_ms / 1000.0)
        for kind, tokens in (("input", r.prompt_tokens), ("output", r.completion_tokens)):
            if tokens is not None:
                m.token_usage.labels(kind).observe(tokens)
                m.tokens.labels(kind).inc(tokens)
    return {k: v for k, v in samples(m).items() if not k[0].endswith("_created")}


def test_batched_observations_equal_one_observation_at_a_time() -> None:
    # bucket bounds exactly, between them, zero, above the last, and both routes and outcomes
    latencies = [0.0, 10.0, 10.0001, 250.0, 1500.0, 160_000.0, 500_000.0, None]
    records = [
        record(
            id=f"r{i}",
            route="/api/generate" if i % 3 == 0 else "/v1/chat/completions",
            outcome="ok" if i % 4 else "backend_error",
            latency_ms=latencies[i % len(latencies)],
            ttft_ms=[1.0, 5.0, 7.3, 10_000.0, None][i % 5],
            itl_ms=[None, 20.0, 0.5][i % 3],
            tokens_per_s=[None, 1.0, 33.3, 1e9][i % 4],
            prompt_tokens=[None, 0, 4, 5, 70_000][i % 5],
            completion_tokens=[1, None, 16, 17][i % 4],
        )
        for i in range(700)  # more than one batch of the event loop's, and a remainder
    ]
    m = Metrics()
    for r in records:
        m.observe(r)
    got = {k: v for k, v in samples(m).items() if not k[0].endswith("_created")}
    assert got == pytest.approx(_reference(records))
    assert value(m, "gemma_monitor_requests_total", route="/api/generate", outcome="ok") == 175


def test_a_read_applies_what_is_queued_and_nothing_twice() -> None:
    m = Metrics()
    m.observe(ok_chat())
    assert value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="ok") == 1
    assert value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="ok") == 1
    m.observe(ok_chat())
    # any reader of the registry, not only a scrape (the OpenTelemetry export reads it too)
    names = {s.name: s.value for f in m.registry.collect() for s in f.samples if not s.labels}
    assert value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="ok") == 2
    assert "gemma_monitor_inflight_requests" in names


def test_the_queue_keeps_no_record_and_no_content() -> None:
    m = Metrics()
    kept = ok_chat()
    kept.prompt_text, kept.response_text = "a prompt " * 1000, "a reply " * 1000
    m.observe(kept)  # queued (fewer than a batch), not applied yet
    held = [field for item in m._queued for field in item]
    # neither the record nor its prompt and reply are held by the queue
    assert not any(x is kept or x is kept.prompt_text or x is kept.response_text for x in held)
    assert value(m, "gemma_monitor_requests_total", route="/v1/chat/completions", outcome="ok") == 1
