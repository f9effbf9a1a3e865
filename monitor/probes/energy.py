"""Energy per request and per 1k tokens, from GPU power samples.

Power between two samples is taken as the straight line between them (the trapezoid rule), and
read off that line where a request starts or ends between samples. At every instant the energy
drawn goes in equal shares to the requests active then: two concurrent requests each get half,
and energy drawn while no request runs (idle) goes to none of them. A request's joules are the
sum over the GPUs passed in: pass the GPUs the backend runs on.

Power is not extrapolated: before the first sample, after the last, or across a gap between
samples longer than `max_gap_s`, it is unknown and nothing is counted; `coverage` says which part
of a request's lifetime (in GPU-seconds) had known power, so a caller can ignore thin estimates.
Times are seconds on one clock for both the power samples and the requests (epoch seconds from
`GpuSample.ts` and `RequestRecord.ts` plus its latency, for instance).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple


class PowerSample(NamedTuple):
    t: float  # seconds
    watts: float


@dataclass(frozen=True, slots=True)
class RequestSpan:
    id: str
    start: float  # seconds, on the power samples' clock
    end: float
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RequestEnergy:
    id: str
    joules: float
    coverage: float  # share of the request's GPU-seconds with known power, 0..1 (1 if instant)
    completion_tokens: int | None

    @property
    def joules_per_1k_tokens(self) -> float | None:
        if not self.completion_tokens:
            return None
        return 1000.0 * self.joules / self.completion_tokens


Segment = tuple[PowerSample, PowerSample]


def _segments(series: Sequence[PowerSample], max_gap_s: float | None) -> list[Segment]:
    """Consecutive pairs of samples in time order (the last of equal times kept), gaps left out."""
    by_time = {s.t: s for s in sorted(series, key=lambda s: s.t)}
    ordered = list(by_time.values())
    return [(a, b) for a, b in pairwise(ordered) if max_gap_s is None or b.t - a.t <= max_gap_s]


def _watts_at(segment: Segment, t: float) -> float:
    a, b = segment
    return a.watts + (b.watts - a.watts) * (t - a.t) / (b.t - a.t)


def energy_between(
    series: Sequence[PowerSample], start: float, end: float, *, max_gap_s: float | None = None
) -> float:
    """Joules one GPU drew over [start, end], counting only where power is known."""
    joules = 0.0
    for segment in _segments(series, max_gap_s):
        a, b = max(start, segment[0].t), min(end, segment[1].t)
        if a < b:
            joules += (_watts_at(segment, a) + _watts_at(segment, b)) / 2 * (b - a)
    return joules


def request_energy(
    power: Mapping[str, Sequence[PowerSample]],
    requests: Sequence[RequestSpan],
    *,
    max_gap_s: float | None = None,
) -> list[RequestEnergy]:
    """The energy of each request (in the order given), summed over the GPUs in `power`."""
    for request in requests:
        if request.end < request.start:
            raise ValueError(f"request {request.id} ends before it starts")
    joules = [0.0] * len(requests)
    covered = [0.0] * len(requests)
    for series in power.values():
        _share_series(_segments(series, max_gap_s), requests, joules, covered)
    results = []
    for i, request in enumerate(requests):
        gpu_seconds = (request.end - request.start) * len(power)
        results.append(
            RequestEnergy(
                id=request.id,
                joules=joules[i],
                coverage=min(1.0, covered[i] / gpu_seconds) if gpu_seconds > 0 else 1.0,
                completion_tokens=request.completion_tokens,
            )
        )
    return results


def _share_series(
    segments: list[Segment],
    requests: Sequence[RequestSpan],
    joules: list[float],
    covered: list[float],
) -> None:
    """Add one GPU's energy to `joules` (and its known seconds to `covered`), shared per instant.

    Every sample time, start and end is a cut, so between two consecutive cuts the power is one
    straight line and the set of active requests does not change. One sweep forward in time.
    """
    edges = sorted({r.start for r in requests} | {r.end for r in requests})
    by_start = sorted(range(len(requests)), key=lambda i: requests[i].start)
    ending: list[tuple[float, int]] = []  # heap of (end, index) of the requests started so far
    active: set[int] = set()
    started = 0
    for segment in segments:
        low, high = segment[0].t, segment[1].t
        inner = edges[bisect.bisect_right(edges, low) : bisect.bisect_left(edges, high)]
        cuts = [low, *inner, high]
        for a, b in pairwise(cuts):
            while started < len(by_start) and requests[by_start[started]].start <= a:
                i = by_start[started]
                heapq.heappush(ending, (requests[i].end, i))
                active.add(i)
                started += 1
            while ending and ending[0][0] <= a:  # every end is a cut: end > a means end >= b
                active.discard(heapq.heappop(ending)[1])
            if not active:
                continue
            share = (_watts_at(segment, a) + _watts_at(segment, b)) / 2 * (b - a) / len(active)
            for i in active:
                joules[i] += share
                covered[i] += b - a


def joules_per_1k_tokens(estimates: Iterable[RequestEnergy]) -> float | None:
    """Total joules per 1000 completion tokens, over the requests that report tokens."""
    total_joules = 0.0
    total_tokens = 0
    for estimate in estimates:
        if estimate.completion_tokens:
            total_joules += estimate.joules
            total_tokens += estimate.completion_tokens
    return 1000.0 * total_joules / total_tokens if total_tokens else None
