"""The health report's model: what one window of the store says, before any rendering.

`build.build_report` fills a `HealthReport` from the store; `export` (JSON), `markdown` and
`html` render it. The per-request lists of the JSON export are not part of the model: they are
streamed from the store while the file is written (`export.write_json`).

Status, and the headline's first word (`assess`), by these rules, over the window as a whole:

- **unhealthy**: the success rate is below the seed's threshold (95 %), or a `high` or
  `critical` alert is firing at the end of the window, or the backend's latest health check
  failed;
- **degraded**: otherwise, another seed threshold is crossed by the window's figures (mean
  response time above 10 s, process memory above 8192 MB, mean tokens/s below 5), or any
  other alert is firing at the end of the window;
- **healthy**: otherwise. Alerts that fired and resolved inside the window are counted in the
  headline but do not make it degraded.

The thresholds are the built-in alert rules' (`monitor.alerts.rules.default_rules`), read
from there, never copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from monitor.alerts.rules import default_rules

Status = Literal["healthy", "degraded", "unhealthy"]

# The seed's four thresholds, by the summary field their built-in rule compares.
SEED_METRICS = ("success_rate", "mean_response_time_s", "process_memory_mb", "mean_tokens_per_s")
_URGENT = ("high", "critical")


@dataclass(frozen=True, slots=True)
class Threshold:
    """A built-in rule's threshold, as the report marks it."""

    metric: str
    rule: str
    comparison: str
    value: float
    description: str

    def crossed(self, value: float | None) -> bool:
        if value is None:
            return False
        return value < self.value if self.comparison in ("<", "<=") else value > self.value


def seed_thresholds() -> dict[str, Threshold]:
    """The seed's thresholds, by metric, from the built-in alert rules."""
    return {
        r.metric: Threshold(r.metric, r.name, r.comparison, r.threshold, r.description)
        for r in default_rules()
        if r.metric in SEED_METRICS
    }


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: a value (or None, a gap) per step of the window."""

    name: str
    points: tuple[tuple[datetime, float | None], ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart over the window. `threshold` is in the chart's unit (95 for a success rate
    drawn in %), `threshold_label` says which rule it is."""

    key: str
    title: str
    unit: str
    series: tuple[Series, ...]
    threshold: float | None = None
    threshold_label: str = ""
    empty: str = ""  # why there is nothing to draw, when there is nothing

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for _, v in s.points)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One window of the store, summarised. Sections are JSON-ready dicts; `charts` are the
    time series every renderer draws from."""

    since: datetime
    until: datetime
    export_timestamp: datetime
    model_name: str
    status: Status
    headline: str
    reasons: tuple[str, ...]
    step_s: float
    performance_summary: dict[str, Any]
    quality_summary: dict[str, Any]
    current_alerts: list[dict[str, Any]]
    requests: dict[str, Any]
    safety: dict[str, Any]
    system: dict[str, Any]
    gpu: dict[str, Any]
    health_checks: dict[str, Any]
    alert_history: list[dict[str, Any]]
    webhook_deliveries: dict[str, Any]
    charts: tuple[Chart, ...]
    thresholds: dict[str, Threshold]
    notes: dict[str, str] = field(default_factory=dict)


def assess(
    figures: Mapping[str, float | None],
    thresholds: Mapping[str, Threshold],
    firing: Sequence[Mapping[str, Any]],
    backend_down: bool,
) -> tuple[Status, tuple[str, ...]]:
    """The status by the rules of this module's docstring, and the reasons for it.

    `figures` holds the window's value of each seed metric (None without data); `firing` the
    alerts firing at the window's end (each with `rule` and `severity`).
    """
    bad: list[str] = []
    worse: list[str] = []
    for metric, threshold in thresholds.items():
        value = figures.get(metric)
        if threshold.crossed(value):
            line = f"{threshold.description or threshold.rule} ({_value(metric, value)})"
            (bad if metric == "success_rate" else worse).append(line)
    for alert in firing:
        line = f"alert {alert['rule']} ({alert['severity']}) firing"
        (bad if alert["severity"] in _URGENT else worse).append(line)
    if backend_down:
        bad.append("the backend's latest health check failed")
    if bad:
        return "unhealthy", tuple(bad + worse)
    return ("degraded", tuple(worse)) if worse else ("healthy", ())


def headline(status: Status, summary: Mapping[str, Any], fired: int, still_firing: int) -> str:
    """The headline: status, success rate, p95 and alerts, as in "healthy: 99.2 % success,
    p95 1.4 s, 3 alerts fired and resolved"."""
    if not summary.get("total_requests"):
        parts = ["no requests in this window"]
    else:
        rate = summary.get("success_rate")
        parts = [
            "no request reached the backend" if rate is None else f"{100 * rate:.1f} % success"
        ]
        p95 = summary.get("p95_response_time")
        if p95 is not None:
            parts.append(f"p95 {p95:.1f} s")
    if fired == 0:
        parts.append("no alerts")
    elif still_firing == 0:
        parts.append(f"{_alerts(fired)} fired and resolved")
    else:
        parts.append(f"{_alerts(fired)} fired, {still_firing} still firing")
    return f"{status}: " + ", ".join(parts)


def _alerts(count: int) -> str:
    return "1 alert" if count == 1 else f"{count} alerts"


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    if metric == "success_rate":
        return f"{100 * value:.1f} %"
    if metric == "mean_response_time_s":
        return f"{value:.2f} s"
    if metric == "process_memory_mb":
        return f"{value:.0f} MB"
    return f"{value:.1f} tokens/s"
