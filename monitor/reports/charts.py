"""The report's charts: one `Chart` per figure over the window, from the rollups' series.

Every value is rounded once, to six significant digits (`rounded`), so the JSON export's
`series` and the HTML page's SVG hold the very same numbers. Thresholds are the seed's, from
the built-in alert rules, in each chart's unit (the success rate is drawn in %).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.reports.model import Chart, Series, Threshold

if TYPE_CHECKING:
    from monitor.store.rollups import ProbePoint, QualityPoint, RequestSlice, VerdictSlice

QUALITY_CHARTED = (
    ("heuristic", "overall"), ("guard", "safety"), ("user", "satisfaction"),
    ("judge", "overall"), ("embedding", "similarity"),
)  # fmt: skip


def build_charts(
    slices: Sequence[RequestSlice],
    verdicts: Sequence[VerdictSlice],
    probes: Mapping[tuple[str, str], Sequence[ProbePoint]],
    quality: Mapping[tuple[str, str], Sequence[QualityPoint]],
    thresholds: Mapping[str, Threshold],
    step: timedelta,
) -> tuple[Chart, ...]:
    """Latency percentiles, throughput, generation speed, success rate, outcomes, blocked
    requests, memory, GPU and quality: one point per step of the series given."""
    starts = [s.start for s in slices]

    def line(name: str, values: Iterable[float | None]) -> Series:
        return Series(name, tuple(zip(starts, (rounded(v) for v in values), strict=True)))

    def from_points(name: str, points: Sequence[Any], scale: float = 1.0) -> Series:
        by_start = {p.start: p.mean * scale for p in points}
        return line(name, (by_start.get(t) for t in starts))

    def seconds(s: RequestSlice, q: float) -> float | None:
        value = s.latency_ms.quantile(q)
        return None if value is None else value / 1000

    def mean_s(s: RequestSlice) -> float | None:
        value = s.latency_ms.mean()
        return None if value is None else value / 1000

    def rate(s: RequestSlice) -> float | None:
        return None if s.success_rate is None else 100 * s.success_rate

    def mark(metric: str, scale: float = 1.0) -> dict[str, Any]:
        t = thresholds.get(metric)
        if t is None:
            return {}
        return {"threshold": t.value * scale, "threshold_label": t.description or t.rule}

    actions: dict[str, dict[datetime, int]] = {"redact": {}, "flag": {}}
    for piece in verdicts:
        for (_, action, _, _, _), count in piece.counts.items():
            if action in actions:
                actions[action][piece.start] = actions[action].get(piece.start, 0) + count
    outcomes = sorted({o for s in slices for o, n in s.outcomes.items() if n})
    step_name = _step_name(step)
    memory = [
        from_points(name, points)
        for (metric, target), points in sorted(probes.items())
        if metric in ("backend_rss_mb", "proxy_rss_mb", "host_memory_used_mb")
        for name in [metric if target in ("", "host") else f"{metric} {target}"]
    ]
    gpu_memory = [
        from_points(f"GPU {t}", pts)
        for (m, t), pts in sorted(probes.items())
        if m == "gpu_memory_used_mb"
    ]
    gpu_use = [
        from_points(f"GPU {t}", pts)
        for (m, t), pts in sorted(probes.items())
        if m == "gpu_utilization_percent"
    ]
    no_gpu = "no GPU was sampled in this window"
    return (
        Chart("latency", "Response time", "s", (
            line("p50", (seconds(s, 0.5) for s in slices)),
            line("p95", (seconds(s, 0.95) for s in slices)),
            line("p99", (seconds(s, 0.99) for s in slices)),
            line("mean", (mean_s(s) for s in slices)),
        ), **mark("mean_response_time_s")),
        Chart("throughput", "Requests", f"requests per {step_name}", (
            line("requests", (s.requests for s in slices)),
        )),
        Chart("tokens_per_s", "Generation speed", "tokens/s", (
            line("mean", (s.tokens_per_s.mean() for s in slices)),
        ), **mark("mean_tokens_per_s")),
        Chart("success_rate", "Success rate", "%", (
            line("success rate", (rate(s) for s in slices)),
        ), **mark("success_rate", 100.0)),
        Chart("outcomes", "Outcomes", f"requests per {step_name}", tuple(
            line(o, (s.outcomes.get(o, 0) for s in slices)) for o in outcomes
        )),
        Chart("blocked", "Blocked, redacted and flagged", f"requests per {step_name}", (
            line("blocked_input", (s.outcomes.get("blocked_input", 0) for s in slices)),
            line("blocked_output", (s.outcomes.get("blocked_output", 0) for s in slices)),
            line("redacted", (actions["redact"].get(t, 0) for t in starts)),
            line("flagged", (actions["flag"].get(t, 0) for t in starts)),
        )),
        Chart("memory", "Memory", "MB", tuple(memory), **mark("process_memory_mb"),
              empty="no memory sample in this window"),
        Chart("gpu_memory", "GPU memory used", "MB", tuple(gpu_memory), empty=no_gpu),
        Chart("gpu_utilization", "GPU utilisation", "%", tuple(gpu_use), empty=no_gpu),
        Chart("quality", "Quality", "score (0-1)", tuple(
            from_points(f"{s}.{m}", quality[(s, m)]) for s, m in QUALITY_CHARTED
            if (s, m) in quality
        ), empty="no request was scored in this window"),
    )  # fmt: skip


def _step_name(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return "minute" if seconds == 60 else f"{seconds // 60} minutes"


def rounded(value: float | None) -> float | None:
    """Six significant digits: what the JSON holds and the charts draw, the same number."""
    return None if value is None else float(f"{value:.6g}")
