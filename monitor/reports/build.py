"""Build a `HealthReport` from the store.

Every figure and chart comes from the rollups read API (`monitor.store.rollups`): for a window
longer than a few hours it reads only the per-minute and hourly rollups, so a 30-day report
costs about what a 1-day one does. What the rollups do not hold comes from small queries of
`monitor.store.reports`: the alerts of the window and now, the outbox's deliveries, the latest
health checks.

Exact and estimated figures (the JSON's `notes` says which is which): counts, sums and means
are exact (a histogram keeps its values' count and sum); percentiles come from the merged
histograms and are within one bucket's width (about 9 %) of the exact value.

Field mapping of the seed's summary:

- `total_requests`: every request of the window, whatever its outcome;
  `successful_requests`: those that ended `ok`;
- `success_rate`: ok over the requests the backend was asked to serve (ok and backend
  errors), a fraction in 0..1 as the alert rules compare it (None when there were none);
- `avg_response_time`, `p95_response_time`, `avg_tokens_per_second`: over the `ok` requests
  (as the alert rules and the rollups take them: a refusal or a backend error is not a
  response time), in seconds and tokens/s;
- `total_tokens_generated`: completion tokens;
- `avg_memory_usage`: the window's mean process memory (MB) from the probe samples: the
  backend's RSS where it is probed, else this proxy's;
- `avg_gpu_memory` (only where a GPU was sampled): the mean GPU memory used (MB), summed over
  the GPUs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from monitor.record import utcnow
from monitor.reports.charts import build_charts
from monitor.reports.model import (
    HealthReport,
    assess,
    headline,
    seed_thresholds,
)
from monitor.store import reports as store
from monitor.store import rollups
from monitor.store.histogram import GROWTH
from monitor.store.rollups import RequestSlice

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.store.rollups import ProbePoint, QualityPoint, VerdictSlice

STEPS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
MOST_POINTS = 48
PROBE_METRICS = (
    "backend_rss_mb", "proxy_rss_mb", "host_memory_used_mb", "host_memory_percent",
    "host_cpu_percent", "gpu_memory_used_mb", "gpu_memory_pct", "gpu_utilization_percent",
    "gpu_temperature_c", "gpu_power_w", "backend_up", "energy_j", "energy_tokens",
)  # fmt: skip
# The seed's quality_summary keys, and the (scorer, metric) each is the mean of.
QUALITY_SUMMARY = dict(store.QUALITY_EXPORT)
BUCKET_ERROR = GROWTH - 1
ALIGN_FROM = timedelta(hours=3)  # windows this long are read from a whole hour on


def choose_step(span: timedelta, most: int = MOST_POINTS) -> timedelta:
    """The chart step: the shortest of `STEPS_S` giving at most `most` points."""
    seconds = span.total_seconds()
    for step in STEPS_S:
        if seconds / step <= most:
            return timedelta(seconds=step)
    return timedelta(seconds=STEPS_S[-1] * -(-seconds // (STEPS_S[-1] * most)))


def build_report(
    engine: Engine, since: datetime, until: datetime, *, now: datetime | None = None
) -> HealthReport:
    """The report of `since <= t < until`; `now` is the export time (the current alerts are
    the ones firing when the report is built)."""
    step = choose_step(until - since)
    slices, verdicts, probes, quality = _read(engine, since, until, step)
    totals = _merged(slices, since)
    models = rollups.dimensions(engine, since, until).models
    thresholds = seed_thresholds()

    summary = _performance_summary(totals, probes)
    firing = [_current(a) for a in store.firing_alerts(engine)]
    fired = store.alerts_fired_in(engine, since, until)
    checks = store.latest_health_checks(engine, since, until)
    figures = {
        "success_rate": summary["success_rate"],
        "mean_response_time_s": summary["avg_response_time"],
        "process_memory_mb": summary["avg_memory_usage"],
        "mean_tokens_per_s": summary["avg_tokens_per_second"],
    }
    at_end = [
        {"rule": a.rule, "severity": a.severity}
        for a in fired
        if a.resolved_at is None or a.resolved_at >= until
    ]
    status, reasons = assess(figures, thresholds, at_end, any(not c.up for c in checks))
    return HealthReport(
        since=since,
        until=until,
        export_timestamp=now or utcnow(),
        model_name=", ".join(models) if models else "unknown",
        status=status,
        headline=headline(status, summary, len(fired), len(at_end)),
        reasons=reasons,
        step_s=step.total_seconds(),
        performance_summary=summary,
        quality_summary=_quality_summary(quality),
        current_alerts=firing,
        requests=_requests(totals, models),
        safety=_safety(totals, verdicts),
        system=_system(probes),
        gpu=_gpu(probes),
        health_checks=_health(checks, probes),
        alert_history=[_fired(a) for a in fired],
        webhook_deliveries={
            "by_status": dict(sorted(store.delivery_counts(engine, since, until).items())),
            "problems": [_problem(p) for p in store.delivery_problems(engine, since, until)],
        },
        charts=build_charts(slices, verdicts, probes, quality, thresholds, step),
        thresholds=thresholds,
        notes=_notes(),
    )


def _read(
    engine: Engine, since: datetime, until: datetime, step: timedelta
) -> tuple[
    list[RequestSlice],
    list[VerdictSlice],
    dict[tuple[str, str], list[ProbePoint]],
    dict[tuple[str, str], list[QualityPoint]],
]:
    """The window's series. A long window is read in two parts: its first partial hour as one
    step, then steps from a whole hour, which the rollups answer from hourly rows (reading a
    month from a moment like 21:57 would merge minutes at every step's edges)."""
    parts = [(since, until, step)]
    body = since.replace(minute=0, second=0, microsecond=0)
    if body < since:
        body += timedelta(hours=1)
    if until - since >= ALIGN_FROM and since < body < until:
        parts = [(since, body, body - since), (body, until, step)]
    slices: list[RequestSlice] = []
    verdicts: list[VerdictSlice] = []
    probes: dict[tuple[str, str], list[ProbePoint]] = defaultdict(list)
    quality: dict[tuple[str, str], list[QualityPoint]] = defaultdict(list)
    for start, end, size in parts:
        slices += rollups.request_series(engine, start, end, size)
        verdicts += rollups.verdict_series(engine, start, end, size)
        for key, points in rollups.probe_series(engine, start, end, size, PROBE_METRICS).items():
            probes[key] += points
        for key, scores in rollups.quality_series(engine, start, end, size).items():
            quality[key] += scores
    return slices, verdicts, dict(probes), dict(quality)


def _merged(slices: Sequence[RequestSlice], since: datetime) -> RequestSlice:
    """The slices as one (histograms merge exactly: the same as reading the whole window)."""
    total = rollups.RequestSlice(since)
    for piece in slices:
        total.requests += piece.requests
        for outcome, count in piece.outcomes.items():
            total.outcomes[outcome] = total.outcomes.get(outcome, 0) + count
        total.streams += piece.streams
        total.prompt_tokens += piece.prompt_tokens
        total.completion_tokens += piece.completion_tokens
        total.latency_ms.merge(piece.latency_ms)
        total.ttft_ms.merge(piece.ttft_ms)
        total.itl_ms.merge(piece.itl_ms)
        total.tokens_per_s.merge(piece.tokens_per_s)
        total.guard_ms.merge(piece.guard_ms)
    return total


def _performance_summary(
    totals: RequestSlice, probes: Mapping[tuple[str, str], Sequence[ProbePoint]]
) -> dict[str, Any]:
    latency = totals.latency_ms
    mean_ms, p95_ms = latency.mean(), latency.quantile(0.95)
    memory = _mean(probes, "backend_rss_mb")
    if memory is None:
        memory = _mean(probes, "proxy_rss_mb")
    summary: dict[str, Any] = {
        "total_requests": totals.requests,
        "successful_requests": totals.outcomes.get("ok", 0),
        "success_rate": totals.success_rate,
        "avg_response_time": None if mean_ms is None else mean_ms / 1000,
        "avg_memory_usage": memory,
        "avg_tokens_per_second": totals.tokens_per_s.mean(),
        "p95_response_time": None if p95_ms is None else p95_ms / 1000,
        "total_tokens_generated": totals.completion_tokens,
    }
    gpus = [_weighted(points)[0] for (m, _), points in probes.items() if m == "gpu_memory_used_mb"]
    if gpus:
        summary["avg_gpu_memory"] = sum(gpus)
    return summary


def _requests(totals: RequestSlice, models: Sequence[str]) -> dict[str, Any]:
    def seconds(q: float) -> float | None:
        value = totals.latency_ms.quantile(q)
        return None if value is None else value / 1000

    def ms(h: Any, q: float) -> float | None:
        value = h.quantile(q)
        return None if value is None else float(value)

    return {
        "models": list(models),
        "outcomes": dict(sorted(totals.outcomes.items())),
        "streams": totals.streams,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "error_rate": totals.error_rate,
        "p50_response_time": seconds(0.5),
        "p95_response_time": seconds(0.95),
        "p99_response_time": seconds(0.99),
        "p50_ttft_ms": ms(totals.ttft_ms, 0.5),
        "p95_ttft_ms": ms(totals.ttft_ms, 0.95),
        "p50_itl_ms": ms(totals.itl_ms, 0.5),
        "mean_guard_ms": totals.guard_ms.mean(),
    }


def _quality_summary(quality: Mapping[tuple[str, str], Sequence[QualityPoint]]) -> dict[str, Any]:
    def mean(key: tuple[str, str]) -> float | None:
        points = quality.get(key, ())
        count = sum(p.count for p in points)
        return sum(p.mean * p.count for p in points) / count if count else None

    summary: dict[str, Any] = {k: mean(v) for k, v in QUALITY_SUMMARY.items()}
    summary["scored_requests"] = sum(p.count for p in quality.get(("heuristic", "overall"), ()))
    summary["by_scorer"] = {
        f"{s}.{m}": {"mean": mean((s, m)), "count": sum(p.count for p in points)}
        for (s, m), points in sorted(quality.items())
    }
    return summary


def _safety(totals: RequestSlice, verdicts: Sequence[VerdictSlice]) -> dict[str, Any]:
    by_stage: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_check: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_policy: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for piece in verdicts:
        for (stage, action, category, rule, policy), count in piece.counts.items():
            by_stage[stage][action] += count
            by_check[rule or category or "(none)"][action] += count
            by_policy[policy][action] += count

    def plain(table: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
        return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}

    return {
        "blocked_requests": totals.blocked,
        "blocked_input": totals.outcomes.get("blocked_input", 0),
        "blocked_output": totals.outcomes.get("blocked_output", 0),
        "by_stage": plain(by_stage),
        "by_check": plain(by_check),
        "by_policy": plain(by_policy),
    }


def _system(probes: Mapping[tuple[str, str], Sequence[ProbePoint]]) -> dict[str, Any]:
    return {
        metric: _stats(probes, metric)
        for metric in ("backend_rss_mb", "proxy_rss_mb", "host_memory_used_mb",
                       "host_memory_percent", "host_cpu_percent")
    }  # fmt: skip


def _gpu(probes: Mapping[tuple[str, str], Sequence[ProbePoint]]) -> dict[str, Any]:
    targets = sorted({t for (m, t) in probes if m.startswith("gpu_")})
    if not targets:
        return {"available": False, "gpus": {}, "energy_j_per_1k_tokens": None}
    per_gpu = {
        target: {
            metric: _stats(probes, metric, target)
            for metric in (
                "gpu_memory_used_mb",
                "gpu_memory_pct",
                "gpu_utilization_percent",
                "gpu_temperature_c",
                "gpu_power_w",
            )
        }
        for target in targets
    }
    joules = _sum(probes, "energy_j")
    tokens = _sum(probes, "energy_tokens")
    per_1k = 1000 * joules / tokens if joules is not None and tokens else None
    return {"available": True, "gpus": per_gpu, "energy_j_per_1k_tokens": per_1k}


def _health(
    checks: Sequence[store.HealthCheck], probes: Mapping[tuple[str, str], Sequence[ProbePoint]]
) -> dict[str, Any]:
    return {
        "latest": [
            {"backend": _host(c.target), "at": c.ts.isoformat(), "up": c.up, "detail": c.detail}
            for c in checks
        ],
        "checks": sum(p.count for (m, _), pts in probes.items() if m == "backend_up" for p in pts),
        "up_share": _mean(probes, "backend_up"),
    }


def _host(url: str) -> str:
    """A backend by its host and port: a report travels (mail, chat), and a URL's path or
    query may hold a credential."""
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


def _weighted(points: Sequence[ProbePoint]) -> tuple[float | None, int]:
    count = sum(p.count for p in points)
    return (sum(p.mean * p.count for p in points) / count if count else None), count


def _mean(probes: Mapping[tuple[str, str], Sequence[ProbePoint]], metric: str) -> float | None:
    """The metric's mean over the window and all its targets, each sample weighing one."""
    points = [p for (m, _), pts in probes.items() if m == metric for p in pts]
    return _weighted(points)[0]


def _sum(probes: Mapping[tuple[str, str], Sequence[ProbePoint]], metric: str) -> float | None:
    points = [p for (m, _), pts in probes.items() if m == metric for p in pts]
    return sum(p.mean * p.count for p in points) if points else None


def _stats(
    probes: Mapping[tuple[str, str], Sequence[ProbePoint]], metric: str, target: str | None = None
) -> dict[str, float | None] | None:
    points = [
        p for (m, t), pts in probes.items() if m == metric and target in (None, t) for p in pts
    ]
    if not points:
        return None
    return {
        "mean": _weighted(points)[0],
        "min": min(p.minimum for p in points),
        "max": max(p.maximum for p in points),
    }


def _current(alert: store.ActiveAlert) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "severity": alert.severity,
        "message": alert.description,
        "value": alert.value,
        "threshold": alert.threshold,
        "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
        "fingerprint": alert.fingerprint,
        "acknowledged_by": alert.acknowledged_by,
    }


def _fired(alert: store.FiredAlert) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "severity": alert.severity,
        "state": alert.state,
        "fingerprint": alert.fingerprint,
        "fired_at": alert.fired_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "value": alert.value,
        "threshold": alert.threshold,
    }


def _problem(p: store.FailedDelivery) -> dict[str, Any]:
    return {
        "receiver": p.receiver,
        "rule": p.rule,
        "kind": p.kind,
        "status": p.status,
        "attempts": p.attempts,
        "last_status": p.last_status,
        "last_error": p.last_error,
        "created_at": p.created_at.isoformat(),
    }


def _notes() -> dict[str, str]:
    within = f"within one histogram bucket (about {100 * BUCKET_ERROR:.0f} %) of the exact value"
    return {
        "exact": "counts, sums, success rate and means (response time, tokens/s, memory, "
        "quality) are exact",
        "estimated": f"percentiles (p50, p95, p99, TTFT) are estimated from rollups, {within}",
        "success_rate": "ok over requests the backend was asked to serve (ok and "
        "backend_error), a fraction in 0..1",
        "response_time": "seconds; averages and percentiles over successful (ok) requests, "
        "as avg_tokens_per_second",
        "memory": "avg_memory_usage is the window's mean process memory from probe samples; a "
        "performance_metrics entry holds the latest sample at or before the request (at most "
        "5 minutes old)",
        "quality": "relevance, coherence, safety and factual accuracy are the heuristic "
        "scorer's; user_satisfaction is user feedback (POST /v1/feedback); scores are of the "
        "window by when they were recorded, one quality_metrics entry per request and moment",
        "performance_metrics": "one entry per stored request of the window; raw records past "
        "retention are no longer listed, while the summary (from rollups) still counts them; "
        "with sampling (sampling.share below 1) an entry stands for sample_weight requests, "
        "and the summary counts each entry that many times",
    }
