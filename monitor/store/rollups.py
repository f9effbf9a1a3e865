"""Reading windows of any length from the rollups: series and totals for the dashboard and reports.

Every function takes the half-open window `since <= t < until` (aware UTC datetimes). A
series has one point per `step` from `since` (the last step may be shorter, ending at
`until`). Each step is read from the cheapest exact source:

    |-raw-|----minute rollups----|=========hour rollups=========|--minutes--|-raw-|--raw tail--|
    since  first whole minute     first whole hour (long windows) ...          watermark   until

hour rollups only for whole hours inside a step of a window of three hours or more, minute
rollups for the rest of the whole minutes the watermark has sealed, raw rows for the partial
minutes at the edges and for the minutes not sealed yet. The figures are the same whichever
source a minute comes from (histograms merge exactly). A series whose steps are whole hours
from a whole hour (a dashboard rounding its window) reads hour rollups for nearly all of it.

Definitions:
- `latency_ms`, `ttft_ms`, `itl_ms` and `tokens_per_s` histograms count the `ok` requests
  (as `monitor.store.summaries` does: a refusal or a backend error is not a response time);
  `timed_outcomes` chooses others. `guard_ms` counts every request that spent time in guards.
- tokens are summed over every request, a missing count taken as 0.
- the principal of a request without one is "".
- quality scores are placed by when they were scored, probe values by when they were sampled,
  verdicts by their request's time.

The rollups are built by `rollup_build` (rebuild, the worker's `seal_step`), described by
`rollup_kinds` (tables, how rows merge) and read through `rollup_reads` (the plan above).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.engine import Engine

from monitor.store.histogram import Histogram
from monitor.store.rollup_build import SealResult, rebuild, seal_step, sealed_until
from monitor.store.rollup_kinds import PRINCIPALS, PROBES, QUALITY, REQUESTS, SCORE_BINS, VERDICTS
from monitor.store.rollup_reads import aligned_since, gather, plan, step_starts

__all__ = [
    "Dimensions", "PrincipalTotal", "ProbePoint", "QualityPoint", "RequestSlice", "SealResult",
    "VerdictSlice", "aligned_since", "dimensions", "plan", "principal_totals", "probe_series",
    "quality_series", "rebuild", "request_series", "request_totals", "score_distribution",
    "seal_step", "sealed_until", "step_starts", "verdict_series",
]  # fmt: skip

_VERDICT_KEYS: Final = ("stage", "policy", "action", "category", "rule")
_TIMED: Final = (
    "latency_ms", "latency_ms_sum", "ttft_ms", "ttft_ms_sum", "itl_ms", "itl_ms_sum",
    "tokens_per_s", "tokens_per_s_sum",
)  # fmt: skip
_UNTIMED: Final = (
    "requests", "streams", "prompt_tokens", "completion_tokens", "guard_ms", "guard_ms_sum",
)  # fmt: skip


# -- results ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestSlice:
    """The requests of one step of a window, merged."""

    start: datetime
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: Histogram = field(default_factory=Histogram)
    ttft_ms: Histogram = field(default_factory=Histogram)
    itl_ms: Histogram = field(default_factory=Histogram)
    tokens_per_s: Histogram = field(default_factory=Histogram)
    guard_ms: Histogram = field(default_factory=Histogram)

    @property
    def success_rate(self) -> float | None:
        """`ok` over the requests the backend was asked to serve (`ok`, `backend_error`)."""
        ok = self.outcomes.get("ok", 0)
        served = ok + self.outcomes.get("backend_error", 0)
        return ok / served if served else None

    @property
    def error_rate(self) -> float | None:
        """`backend_error` over the requests the backend was asked to serve."""
        rate = self.success_rate
        return None if rate is None else 1.0 - rate

    @property
    def blocked(self) -> int:
        return self.outcomes.get("blocked_input", 0) + self.outcomes.get("blocked_output", 0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


VerdictKey = tuple[str, str, str, str, str]  # stage, action, category, rule, policy


@dataclass(slots=True)
class VerdictSlice:
    start: datetime
    counts: dict[VerdictKey, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProbePoint:
    start: datetime
    mean: float
    minimum: float
    maximum: float
    count: int


@dataclass(frozen=True, slots=True)
class QualityPoint:
    start: datetime
    mean: float
    count: int


@dataclass(slots=True)
class PrincipalTotal:
    principal: str
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Dimensions:
    models: list[str]
    backends: list[str]


# -- the read API ----------------------------------------------------------------------------


def request_series(
    engine: Engine,
    since: datetime,
    until: datetime,
    step: timedelta,
    *,
    model: str | None = None,
    backend: str | None = None,
    timed_outcomes: Collection[str] = ("ok",),
) -> list[RequestSlice]:
    """One slice per step, empty steps included, in time order."""
    timed = list(timed_outcomes)
    starts, acc = gather(
        engine, REQUESTS, since, until, step, _filters(model, backend),
        # the timed histograms of other outcomes are not read at all
        partial=({"outcome": timed}, _TIMED, _UNTIMED), keep=("outcome",),
    )  # fmt: skip
    slices = [RequestSlice(start) for start in starts]
    for (index, outcome), values in acc.groups.items():
        requests, streams, prompt, completion, latency, ttft, itl, tps, guard = values
        s = slices[index]
        s.requests += requests
        s.outcomes[outcome] = s.outcomes.get(outcome, 0) + requests
        s.streams += streams
        s.prompt_tokens += prompt
        s.completion_tokens += completion
        if outcome in timed_outcomes:
            _merge(s.latency_ms, latency)
            _merge(s.ttft_ms, ttft)
            _merge(s.itl_ms, itl)
            _merge(s.tokens_per_s, tps)
        _merge(s.guard_ms, guard)
    return slices


def request_totals(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    model: str | None = None,
    backend: str | None = None,
    timed_outcomes: Collection[str] = ("ok",),
) -> RequestSlice:
    """The whole window as one slice."""
    series = request_series(
        engine, since, until, _whole(since, until),
        model=model, backend=backend, timed_outcomes=timed_outcomes,
    )  # fmt: skip
    return series[0] if series else RequestSlice(since)


def verdict_series(
    engine: Engine,
    since: datetime,
    until: datetime,
    step: timedelta,
    *,
    model: str | None = None,
    backend: str | None = None,
) -> list[VerdictSlice]:
    """Verdicts per step, counted by (stage, action, category, rule, policy); empty steps too."""
    starts, acc = gather(
        engine, VERDICTS, since, until, step, _filters(model, backend), keep=_VERDICT_KEYS
    )
    slices = [VerdictSlice(start) for start in starts]
    for (index, stage, policy, action, category, rule), values in acc.groups.items():
        key = (stage, action, category, rule, policy)
        counts = slices[index].counts
        counts[key] = counts.get(key, 0) + values[0]
    return slices


def score_distribution(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    model: str | None = None,
    backend: str | None = None,
) -> list[tuple[float, float, int]]:
    """Classifier scores (a verdict's highest) in 20 bins of [0, 1]: `(low, high, count)`."""
    _, acc = gather(
        engine, VERDICTS, since, until, _whole(since, until), _filters(model, backend),
        keep=(), columns=("scores",),
    )  # fmt: skip
    counts = [0] * SCORE_BINS
    for values in acc.groups.values():
        for index, n in values[1].items():
            counts[index] += n
    return [(i / SCORE_BINS, (i + 1) / SCORE_BINS, n) for i, n in enumerate(counts)]


def probe_series(
    engine: Engine,
    since: datetime,
    until: datetime,
    step: timedelta,
    metrics: Sequence[str] | None = None,
) -> dict[tuple[str, str], list[ProbePoint]]:
    """(metric, target) → a point per step that has samples, in time order."""
    filters = {"metric": list(metrics)} if metrics is not None else {}
    starts, acc = gather(engine, PROBES, since, until, step, filters, keep=("metric", "target"))
    merged: dict[tuple[str, str, int], list[Any]] = {}
    for (index, metric, target), (count, total, low, high) in acc.groups.items():
        if not count:
            continue
        key = (metric, target, index)
        found = merged.get(key)
        if found is None:
            merged[key] = [count, total, low, high]
        else:
            found[0] += count
            found[1] += total
            found[2], found[3] = min(found[2], low), max(found[3], high)
    out: dict[tuple[str, str], list[ProbePoint]] = {}
    for (metric, target, index), (count, total, low, high) in sorted(merged.items()):
        point = ProbePoint(starts[index], total / count, low, high, count)
        out.setdefault((metric, target), []).append(point)
    return out


def quality_series(
    engine: Engine, since: datetime, until: datetime, step: timedelta
) -> dict[tuple[str, str], list[QualityPoint]]:
    """(scorer, metric) → a point per step that has scores, in time order."""
    starts, acc = gather(engine, QUALITY, since, until, step, {})
    out: dict[tuple[str, str], list[QualityPoint]] = {}
    for (index, scorer, metric), (count, total) in sorted(acc.groups.items()):
        if count:
            out.setdefault((scorer, metric), []).append(
                QualityPoint(starts[index], total / count, count)
            )
    return out


def principal_totals(
    engine: Engine, since: datetime, until: datetime, *, limit: int = 50
) -> list[PrincipalTotal]:
    """Requests and tokens per principal, most requests first (at most `limit`)."""
    _, acc = gather(
        engine, PRINCIPALS, since, until, _whole(since, until), {}, keep=("principal", "outcome")
    )
    totals: dict[str, PrincipalTotal] = {}
    for (_index, principal, outcome), (requests, prompt, completion) in acc.groups.items():
        total = totals.get(principal)
        if total is None:
            total = totals[principal] = PrincipalTotal(principal)
        total.requests += requests
        total.outcomes[outcome] = total.outcomes.get(outcome, 0) + requests
        total.prompt_tokens += prompt
        total.completion_tokens += completion
    ranked = sorted(totals.values(), key=lambda t: (-t.requests, t.principal))
    return ranked[:limit]


def dimensions(engine: Engine, since: datetime, until: datetime) -> Dimensions:
    """The models and backends requests of the window named."""
    _, acc = gather(
        engine, REQUESTS, since, until, _whole(since, until), {}, columns=(),
        keep=("model", "backend"),
    )  # fmt: skip
    models = {key[1] for key in acc.groups} - {""}
    backends = {key[2] for key in acc.groups} - {""}
    return Dimensions(sorted(models), sorted(backends))


# -- planning and gathering ------------------------------------------------------------------


def _filters(model: str | None, backend: str | None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if model is not None:
        filters["model"] = model
    if backend is not None:
        filters["backend"] = backend
    return filters


def _whole(since: datetime, until: datetime) -> timedelta:
    return max(until - since, timedelta(microseconds=1))


def _merge(histogram: Histogram, value: list[Any]) -> None:
    counts, total = value
    if counts:
        mine = histogram.counts
        for index, n in counts.items():
            mine[index] = mine.get(index, 0) + n
            histogram.count += n
        histogram.total += total
