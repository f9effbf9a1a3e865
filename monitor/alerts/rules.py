"""Alert rules: a threshold on one summary field over a window, and their evaluation.

A rule reads one field of a *summary* (a mapping of field name to float, or None when the
window has no data for it: see `SUMMARY_FIELDS` for the names the defaults use), compares it
with a threshold, and says whether it is *breaching*. The state machine (`alerts.state`) turns
successive evaluations into pending → firing → resolved alerts.

A threshold is absolute, or relative to a *baseline* field (the same quantity over a longer
window): with ``baseline: blocked_rate_baseline``, ``threshold: 3`` means "more than three
times the usual rate". ``baseline_floor`` keeps a near-zero baseline from making any blip a
spike: the effective threshold is ``threshold * max(baseline, baseline_floor)``.

Missing data is explicit. A field absent from the summary, None or NaN (or a missing baseline)
makes the evaluation ``no_data``; the rule's ``no_data`` option says what the state machine
does with it: ``ok`` (treat as clear: an alert about latency resolves when traffic stops, as
Prometheus does when a series disappears), ``breaching`` (silence is itself the problem), or
``keep`` (treat as the last known condition).

The rule itself (`AlertRule`, durations included) is a settings type, in `config_types`;
`effective_rules` merges the configured rules with the built-in ones.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from monitor.config_types import AlertRule, Comparison

Status = Literal["ok", "breaching", "no_data"]

SUMMARY_FIELDS: dict[str, str] = {
    "total_requests": "requests in the window",
    "successful_requests": "requests with outcome ok in the window (None without any request)",
    "success_rate": "successful / total, 0..1 (None without requests)",
    "mean_response_time_s": "mean end-to-end latency, seconds",
    "p95_response_time_s": "95th percentile latency, seconds (also p50_, p99_)",
    "mean_tokens_per_s": "mean completion tokens per second",
    "process_memory_mb": "mean resident memory of the monitored process, MB",
    "gpu_memory_pct": "highest GPU memory use among GPUs, percent 0..100",
    "gpu_temperature_c": "highest GPU temperature among GPUs, degrees Celsius",
    "backend_up": "latest backend health check: 1 healthy or degraded, 0 unhealthy",
    "blocked_rate": "blocked (input or output) / total requests, 0..1",
    "blocked_rate_baseline": "blocked_rate over the baseline window (24 h)",
    "quality_overall": "mean overall quality score of the window's scored requests, 0..1",
    "quality_overall_baseline": "quality_overall over the baseline window (24 h)",
}

_COMPARE: dict[Comparison, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One rule against one summary: breaching or not, and what was compared."""

    rule: AlertRule
    status: Status
    value: float | None
    threshold: float | None  # the effective threshold (after the baseline), None without data
    labels: Mapping[str, str] = field(default_factory=dict)  # the target's, e.g. {"gpu": "0"}

    @property
    def breaching(self) -> bool:
        return self.status == "breaching"


def evaluate(
    rule: AlertRule, summary: Mapping[str, float | None], labels: Mapping[str, str] | None = None
) -> Evaluation:
    """Compare the rule's field of `summary` with its threshold."""
    target = dict(labels or {})
    value = _number(summary.get(rule.metric))
    threshold: float | None = rule.threshold
    if rule.baseline is not None:
        base = _number(summary.get(rule.baseline))
        threshold = None if base is None else rule.threshold * max(base, rule.baseline_floor)
    if value is None or threshold is None:
        return Evaluation(rule, "no_data", value, threshold, target)
    status: Status = "breaching" if _COMPARE[rule.comparison](value, threshold) else "ok"
    return Evaluation(rule, status, value, threshold, target)


def evaluate_all(
    rules: Iterable[AlertRule],
    summary: Mapping[str, float | None],
    labels: Mapping[str, str] | None = None,
) -> list[Evaluation]:
    return [evaluate(rule, summary, labels) for rule in rules if rule.enabled]


def parse_rules(raw: Iterable[Mapping[str, object]]) -> list[AlertRule]:
    """Rules from configuration data; names must be unique."""
    rules = [AlertRule.model_validate(item) for item in raw]
    names = [rule.name for rule in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate alert rule names: {', '.join(duplicates)}")
    return rules


def effective_rules(
    configured: Iterable[AlertRule], *, with_defaults: bool = True
) -> list[AlertRule]:
    """The rules to evaluate: the built-in ones (unless `with_defaults` is off), replaced or
    extended by the configured ones (`alerts.rules`), matched by name."""
    rules = {r.name: r for r in (default_rules() if with_defaults else [])}
    rules.update({r.name: r for r in configured})
    return list(rules.values())


def default_rules() -> list[AlertRule]:
    """The seed's five rules, then backend health, GPU, blocked-request spikes and quality."""
    rule = AlertRule.model_validate
    return [
        rule({"name": "high_response_time", "metric": "mean_response_time_s", "comparison": ">",
              "threshold": 10, "window": "5m", "for": "1m", "severity": "medium",
              "description": "Mean response time above 10 s"}),
        rule({"name": "high_memory", "metric": "process_memory_mb", "comparison": ">",
              "threshold": 8192, "window": "5m", "for": "1m", "severity": "medium",
              "description": "Process memory above 8192 MB"}),
        rule({"name": "low_throughput", "metric": "mean_tokens_per_s", "comparison": "<",
              "threshold": 5, "window": "5m", "for": "1m", "severity": "low",
              "description": "Mean generation speed below 5 tokens/s"}),
        rule({"name": "low_success_rate", "metric": "success_rate", "comparison": "<",
              "threshold": 0.95, "window": "5m", "for": "1m", "severity": "high",
              "description": "Success rate below 95 %"}),
        rule({"name": "no_successful_requests", "metric": "successful_requests",
              "comparison": "<", "threshold": 1, "window": "10m", "severity": "high",
              "description": "No successful request in the last 10 minutes"}),
        rule({"name": "backend_unhealthy", "metric": "backend_up", "comparison": "<",
              "threshold": 1, "window": "1m", "for": "30s", "severity": "critical",
              "no_data": "keep", "description": "The backend fails its health checks"}),
        rule({"name": "gpu_memory_high", "metric": "gpu_memory_pct", "comparison": ">",
              "threshold": 95, "window": "5m", "for": "2m", "severity": "medium",
              "description": "GPU memory use above 95 %"}),
        rule({"name": "gpu_temperature_high", "metric": "gpu_temperature_c", "comparison": ">",
              "threshold": 85, "window": "5m", "for": "2m", "severity": "high",
              "description": "GPU temperature above 85 °C"}),
        rule({"name": "blocked_requests_spike", "metric": "blocked_rate", "comparison": ">",
              "threshold": 3, "baseline": "blocked_rate_baseline", "baseline_floor": 0.02,
              "window": "10m", "for": "5m", "severity": "medium",
              "description": "Blocked requests at over 3x their usual rate (and over 6 %)"}),
        rule({"name": "quality_drop", "metric": "quality_overall", "comparison": "<",
              "threshold": 0.8, "baseline": "quality_overall_baseline", "window": "1h",
              "for": "15m", "severity": "low",
              "description": "Response quality below 80 % of its usual level"}),
    ]  # fmt: skip


def _number(value: object) -> float | None:
    if not isinstance(value, int | float):  # None, or not a number: no data
        return None
    number = float(value)
    return number if math.isfinite(number) else None
