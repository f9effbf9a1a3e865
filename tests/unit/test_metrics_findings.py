"""The series the Prometheus rules and the Grafana dashboard need beside the request counters:
guard findings by check (blocks by check), each request's generation speed (the built-in
low_throughput rule's mean) and the mean overall quality score (quality_drop's)."""

from __future__ import annotations

from typing import Any

from monitor.config import QualitySettings
from monitor.metrics import Metrics
from monitor.workers.quality import QualityWorker
from tests.unit.test_metrics import record, value


def verdict(stage: str, *findings: tuple[str, str]) -> dict[str, Any]:
    return {
        "stage": stage,
        "policy": "default",
        "action": "block",
        "findings": [{"rule": "r", "category": "c", "check": c, "action": a} for c, a in findings],
    }


def test_findings_that_acted_are_counted_by_stage_check_and_action() -> None:
    m = Metrics()
    m.observe(
        record(
            outcome="blocked_input",
            http_status=400,
            verdicts=[verdict("input", ("pii", "redact"), ("mass-harm", "block"))],
        )
    )
    m.observe(record(verdicts=[verdict("output", ("pii", "redact"), ("injection", "allow"))]))
    name = "gemma_monitor_guard_findings_total"
    assert value(m, name, stage="input", check="mass-harm", action="block") == 1
    assert value(m, name, stage="input", check="pii", action="redact") == 1
    assert value(m, name, stage="output", check="pii", action="redact") == 1
    # a near miss (action allow) changed nothing: not counted
    assert value(m, name, stage="output", check="injection", action="allow") is None


def test_each_successful_requests_speed_is_observed() -> None:
    m = Metrics()
    m.observe(record(tokens_per_s=40.0, latency_ms=100.0))
    m.observe(record(tokens_per_s=20.0, latency_ms=100.0))
    m.observe(record(outcome="backend_error", http_status=502, tokens_per_s=1.0))
    assert value(m, "gemma_monitor_output_tokens_per_second_count") == 2
    assert value(m, "gemma_monitor_output_tokens_per_second_sum") == 60.0  # mean 30


class Sink:
    def __init__(self) -> None:
        self.scores: list[Any] = []

    def __call__(self, scores: Any) -> None:
        self.scores.extend(scores)


async def test_the_mean_overall_score_reaches_prometheus_per_scorer() -> None:
    sink = Sink()
    worker = QualityWorker(QualitySettings(sample_rate=1.0, scorers=["heuristic"]), sink)
    metrics = Metrics()
    metrics.track_quality(worker.stats)
    worker.start()
    for i in range(4):
        chat = record(id=f"r{i}", completion_tokens=8)
        assert worker.offer(chat, "What is the capital of France?", "Paris is the capital.")
    await worker.stop()
    overall = [s.value for s in sink.scores if s.metric == "overall"]
    assert len(overall) == 4
    name = "gemma_monitor_quality_overall_score"
    assert value(metrics, f"{name}_count", scorer="heuristic") == 4
    total = value(metrics, f"{name}_sum", scorer="heuristic")
    assert total is not None and abs(total - sum(overall)) < 1e-9
