"""The figures Markdown and HTML both show, formatted once so the two always agree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from monitor.reports.model import HealthReport, Threshold

Format = Callable[[float], str]


def seconds(v: float) -> str:
    return f"{v:.3f} s"


def percent(v: float) -> str:
    return f"{100 * v:.1f} %"


def count(v: float) -> str:
    return f"{v:,.0f}"


def megabytes(v: float) -> str:
    return f"{v:,.0f} MB"


def rate(v: float) -> str:
    return f"{v:.1f} tokens/s"


def score(v: float) -> str:
    return f"{v:.3f}"


# Summary key, label, format, and the summary field its seed threshold compares.
SUMMARY_ROWS: tuple[tuple[str, str, Format, str | None], ...] = (
    ("total_requests", "requests", count, None),
    ("successful_requests", "successful requests", count, None),
    ("success_rate", "success rate", percent, "success_rate"),
    ("avg_response_time", "mean response time", seconds, "mean_response_time_s"),
    ("p95_response_time", "p95 response time (estimated)", seconds, None),
    ("avg_tokens_per_second", "mean generation speed", rate, "mean_tokens_per_s"),
    ("total_tokens_generated", "tokens generated", count, None),
    ("avg_memory_usage", "mean process memory", megabytes, "process_memory_mb"),
    ("avg_gpu_memory", "mean GPU memory", megabytes, None),
)
QUALITY_ROWS = (
    ("relevance_score", "relevance"),
    ("coherence_score", "coherence"),
    ("safety_score", "safety (word list)"),
    ("factual_accuracy", "factual accuracy"),
    ("user_satisfaction", "user satisfaction"),
)


def show(value: Any, fmt: Format) -> str:
    return "-" if value is None else fmt(float(value))


def summary_rows(report: HealthReport) -> list[tuple[str, str, str]]:
    """(label, value, threshold) per figure of the seed's summary; a figure crossing its
    threshold says so in the third column."""
    rows = []
    summary = report.performance_summary
    for key, label, fmt, metric in SUMMARY_ROWS:
        if key not in summary:
            continue
        value = summary[key]
        rows.append((label, show(value, fmt), _limit(report.thresholds, metric, value, fmt)))
    return rows


def _limit(thresholds: Mapping[str, Threshold], metric: str | None, value: Any, fmt: Format) -> str:
    threshold = thresholds.get(metric) if metric else None
    if threshold is None:
        return ""
    text = f"alert when {threshold.comparison} {fmt(threshold.value)}"
    return f"{text} (crossed)" if threshold.crossed(value) else text


def quality_rows(report: HealthReport) -> list[tuple[str, str]]:
    q = report.quality_summary
    return [(label, show(q.get(key), score)) for key, label in QUALITY_ROWS]


def request_rows(report: HealthReport) -> list[tuple[str, str]]:
    r = report.requests

    def ms(v: float) -> str:
        return f"{v:.0f} ms"

    return [
        ("p50 response time (estimated)", show(r.get("p50_response_time"), seconds)),
        ("p99 response time (estimated)", show(r.get("p99_response_time"), seconds)),
        ("p50 time to first token (estimated)", show(r.get("p50_ttft_ms"), ms)),
        ("error rate", show(r.get("error_rate"), percent)),
        ("streams", show(r.get("streams"), count)),
        ("prompt tokens", show(r.get("prompt_tokens"), count)),
        ("blocked requests", show(report.safety.get("blocked_requests"), count)),
    ]


def stat_rows(section: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, mean, min, max) of a section of probe statistics."""
    rows: list[tuple[str, str, str, str]] = []

    def one(v: float) -> str:
        return f"{v:,.1f}"

    for name, stats in section.items():
        if isinstance(stats, Mapping):
            mean, low, high = (show(stats.get(k), one) for k in ("mean", "min", "max"))
            rows.append((name, mean, low, high))
    return rows
