"""What the pages show, computed: plain functions from the store's results to table rows and
headline numbers. No Streamlit here, so tests call them directly.

Rates are percentages (0..100), latencies milliseconds, and a figure the window has no data
for is None (shown as "-"), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.reports.model import seed_thresholds as report_thresholds

if TYPE_CHECKING:
    from monitor.store.histogram import Histogram
    from monitor.store.rollups import ProbePoint, QualityPoint, RequestSlice, VerdictSlice

Row = dict[str, Any]


# --- thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    value: float  # in the unit the chart draws
    label: str


def seed_thresholds() -> dict[str, Threshold]:
    """The seed's thresholds (the report's: from the built-in alert rules) in chart units: mean
    response time (ms), process memory (MB), tokens/s, success rate (%)."""
    scale = {"mean_response_time_s": 1000.0, "success_rate": 100.0}
    return {
        metric: Threshold(seed.value * scale.get(metric, 1.0), seed.description or seed.rule)
        for metric, seed in report_thresholds().items()
    }


# --- requests -------------------------------------------------------------------------------


def percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def quantile(histogram: Histogram, q: float) -> float | None:
    return histogram.quantile(q) if histogram.count else None


def headline(total: RequestSlice) -> dict[str, float | None]:
    """The window's headline numbers, from `rollups.request_totals`."""
    return {
        "requests": float(total.requests),
        "success_rate": percent(total.success_rate),
        "error_rate": percent(total.error_rate),
        "blocked": float(total.blocked),
        "latency_p50": quantile(total.latency_ms, 0.50),
        "latency_p95": quantile(total.latency_ms, 0.95),
        "latency_p99": quantile(total.latency_ms, 0.99),
        "latency_mean": total.latency_ms.mean(),
        "ttft_p95": quantile(total.ttft_ms, 0.95),
        "tokens_per_s": total.tokens_per_s.mean(),
        "completion_tokens": float(total.completion_tokens),
    }


def request_rows(slices: Sequence[RequestSlice], step: timedelta) -> list[Row]:
    """One row per step: rates, percentiles and means, for the time charts."""
    per_minute = 60.0 / step.total_seconds()
    return [
        {
            "time": s.start,
            "requests/min": s.requests * per_minute,
            "success rate %": percent(s.success_rate),
            "error rate %": percent(s.error_rate),
            "blocked": s.blocked,
            "p50 ms": quantile(s.latency_ms, 0.50),
            "p95 ms": quantile(s.latency_ms, 0.95),
            "p99 ms": quantile(s.latency_ms, 0.99),
            "mean ms": s.latency_ms.mean(),
            "TTFT p50 ms": quantile(s.ttft_ms, 0.50),
            "TTFT p95 ms": quantile(s.ttft_ms, 0.95),
            "ITL p50 ms": quantile(s.itl_ms, 0.50),
            "ITL p95 ms": quantile(s.itl_ms, 0.95),
            "tokens/s": s.tokens_per_s.mean(),
        }
        for s in slices
    ]


def outcome_rows(total: RequestSlice) -> list[Row]:
    return [
        {"outcome": outcome, "requests": count}
        for outcome, count in sorted(total.outcomes.items(), key=lambda kv: -kv[1])
        if count
    ]


def histogram_rows(histogram: Histogram) -> list[Row]:
    """A histogram's non-empty buckets, for a bar chart."""
    return [
        {"from ms": low, "to ms": high, "requests": count}
        for low, high, count in histogram.buckets()
        if count
    ]


# --- safety ---------------------------------------------------------------------------------


def verdict_rows(slices: Sequence[VerdictSlice]) -> list[Row]:
    """Long form: one row per step and (stage, action, category, rule, policy) that is not an
    allow, for charts and breakdowns."""
    rows = []
    for s in slices:
        for (stage, action, category, rule, policy), count in s.counts.items():
            if action != "allow" and count:
                rows.append({"time": s.start, "stage": stage, "action": action,
                             "category": category or "-", "rule": rule or "-",
                             "policy": policy, "verdicts": count})  # fmt: skip
    return rows


def verdict_totals(rows: Iterable[Row], by: Sequence[str]) -> list[Row]:
    """`verdict_rows` summed over time, grouped by the columns `by`, largest first."""
    sums: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = tuple(row[c] for c in by)
        sums[key] = sums.get(key, 0) + int(row["verdicts"])
    return [
        {**dict(zip(by, key, strict=True)), "verdicts": n}
        for key, n in sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def action_counts(rows: Iterable[Row]) -> dict[str, int]:
    """Blocked on input, blocked on output, redacted, flagged: verdicts in the window."""
    counts = {"blocked input": 0, "blocked output": 0, "redacted": 0, "flagged": 0}
    for row in rows:
        if row["action"] == "block":
            counts[f"blocked {row['stage']}"] = (
                counts.get(f"blocked {row['stage']}", 0) + row["verdicts"]
            )
        elif row["action"] == "redact":
            counts["redacted"] += row["verdicts"]
        elif row["action"] == "flag":
            counts["flagged"] += row["verdicts"]
    return counts


def content(text: str | None, digest: str | None, content_storage: str) -> str:
    """What the dashboard shows of a prompt or response: the text where the settings store
    content (and it was stored), else its hash."""
    if content_storage == "full" and text is not None:
        return text
    return f"sha256:{digest[:16]}…" if digest else "-"


# --- probes and quality ---------------------------------------------------------------------


def probe_rows(series: Mapping[tuple[str, str], Sequence[ProbePoint]]) -> list[Row]:
    """Long form: one row per (metric, target) and step."""
    return [
        {"time": p.start, "metric": metric, "target": target, "mean": p.mean,
         "min": p.minimum, "max": p.maximum, "series": f"{metric} {target}".strip()}
        for (metric, target), points in sorted(series.items())
        for p in points
    ]  # fmt: skip


def probe_mean(series: Mapping[tuple[str, str], Sequence[ProbePoint]], metric: str) -> float | None:
    """The mean of `metric` over the window, every target and sample weighted alike."""
    total = count = 0.0
    for (name, _), points in series.items():
        if name == metric:
            for p in points:
                total += p.mean * p.count
                count += p.count
    return total / count if count else None


def probe_sum(series: Mapping[tuple[str, str], Sequence[ProbePoint]], metric: str) -> float | None:
    found = [p.mean * p.count for (m, _), pts in series.items() if m == metric for p in pts]
    return sum(found) if found else None


def energy_per_1k_tokens(series: Mapping[tuple[str, str], Sequence[ProbePoint]]) -> float | None:
    joules, tokens = probe_sum(series, "energy_j"), probe_sum(series, "energy_tokens")
    return 1000.0 * joules / tokens if joules is not None and tokens else None


def quality_rows(series: Mapping[tuple[str, str], Sequence[QualityPoint]]) -> list[Row]:
    return [
        {"time": p.start, "score": f"{scorer}.{metric}", "mean": p.mean, "scored": p.count}
        for (scorer, metric), points in sorted(series.items())
        for p in points
    ]


def quality_means(series: Mapping[tuple[str, str], Sequence[QualityPoint]]) -> dict[str, float]:
    """Each score's mean over the window (weighted by the number scored), by "scorer.metric"."""
    means = {}
    for (scorer, metric), points in sorted(series.items()):
        count = sum(p.count for p in points)
        if count:
            means[f"{scorer}.{metric}"] = sum(p.mean * p.count for p in points) / count
    return means


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    """A headline number as text: "-" for no data."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def duration(ms: float | None) -> str:
    """A latency as text that fits a headline tile: "850 ms" under a second, "10.96 s" above."""
    if ms is None:
        return "-"
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:,.2f} s"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"
