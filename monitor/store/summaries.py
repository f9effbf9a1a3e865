"""Summaries over a window: the seed's figures, computed from the stored rows (through the
rollups where they hold them: see `_tiers`; the latency percentiles from the raw rows).

`summarize(engine, since, until)` reads the requests, probe samples and quality scores of the
half-open window `since <= ts < until` and returns a `Summary`: the seed's fields (total and
successful requests, success rate, mean and p50/p95/p99 response time, mean tokens/s, total
tokens, mean memory and GPU memory, the quality summary) and what the alert rules read
(`monitor.alerts.rules.SUMMARY_FIELDS`). A value the window has no data for is None, never 0,
so a rule can tell "nothing happened" from "zero".

Definitions:
- success rate: `ok` requests over requests the backend was asked to serve (`ok` and
  `backend_error`); refusals of ours (invalid, rate limited, blocked) and clients that went
  away are not failures of the service. None when there were none.
- successful requests: None when the window saw no request at all (an idle proxy is not an
  outage; the backend health check covers that case).
- blocked rate: requests blocked on input or output over all requests.
- process memory: the backend process's mean RSS when it is probed, else this proxy's.
- GPU memory and temperature: each GPU's mean over the window, then the highest GPU.
- backend up: the latest health check in the window (1 healthy or degraded, 0 unhealthy).
- energy: GPU joules attributed to the requests measured in the window, per request and per
  1000 completion tokens (None without a GPU).

Every request figure weighs a row by its `weight` (record sampling stores one plain success
in N with weight N, see `monitor.store.sampling`): counts are sums of weights, means are
weighted means, and percentiles are those of the rows with each row taken `weight` times,
so they estimate the figures of every request served, not only of the stored ones. With no
sampling every weight is 1 and the figures are exactly the unweighted ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import BigInteger, ColumnElement, Float, Text, case, cast, func, select
from sqlalchemy.engine import Connection, Engine

from monitor.store.models import (
    probe_samples_table,
    quality_scores_table,
    requests_table,
    rollup_quality_table,
    rollup_requests_table,
)
from monitor.store.rollup_build import sealed_until
from monitor.store.rollup_kinds import HOUR_S, MINUTE_S
from monitor.store.rollup_reads import Ranges, plan

_r = requests_table.c
_p = probe_samples_table.c
_q = quality_scores_table.c

BASELINE = timedelta(hours=24)
PERCENTILES = (50, 95, 99)
_SERVED = ("ok", "backend_error")
_BLOCKED = ("blocked_input", "blocked_output")


@dataclass(frozen=True, slots=True)
class Summary:
    since: datetime
    until: datetime
    fields: dict[str, float | None]
    quality: dict[str, float] = field(default_factory=dict)  # "scorer.metric" → mean

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            **self.fields,
            "quality": self.quality,
        }


def summarize(
    engine: Engine, since: datetime, until: datetime, *, baseline: timedelta | None = BASELINE
) -> Summary:
    """The summary of `since <= ts < until`; with `baseline`, the `*_baseline` fields too
    (the same figures over `baseline` ending at `until`)."""
    with engine.connect() as conn:
        sealed = sealed_until(conn)
        base = {}
        if baseline is not None:
            base = _baseline(conn, _tiers(until - baseline, until, sealed))
        return _summary(conn, since, until, base, _tiers(since, until, sealed))


def summarize_windows(
    engine: Engine,
    windows: Iterable[float] | Mapping[float, Collection[str]],
    until: datetime,
    *,
    baseline: timedelta = BASELINE,
) -> dict[float, Summary]:
    """A summary per window (seconds) ending at `until`, as `summarize` gives each, with the
    baseline read once for all of them (the alert worker's step).

    Given a mapping of each window to the fields wanted of it (the alert worker's rules'
    metrics and baselines), a window's summary holds those fields, and only the queries that
    give them run: each reads every row of its window, and the worker runs them every few
    seconds. With the default rules no window needs the latency percentiles (a sort of the
    window's successful requests), the one-minute window only the health checks, the hour only
    the quality scores. A field no query is known to give (a misspelt metric) makes its window
    read everything."""
    wanted = (
        {w: _groups(names) for w, names in windows.items()}
        if isinstance(windows, Mapping)
        else dict.fromkeys(windows, GROUPS)
    )
    with engine.connect() as conn:
        asked = frozenset().union(*wanted.values()) if wanted else frozenset()
        sealed = sealed_until(conn)
        starts = {w: until - timedelta(seconds=w) for w in wanted}
        tiers = {w: _tiers(since, until, sealed) for w, since in starts.items()}
        base_tiers = _tiers(until - baseline, until, sealed)
        # Every window ends at `until`: they share the minutes not rolled up yet, read once
        raw = _RawSums(conn, _raw_bounds([*tiers.values(), base_tiers]))
        base = _baseline(conn, base_tiers, asked, raw)
        return {
            w: _summary(conn, starts[w], until, base, tiers[w], groups, raw)
            for w, groups in wanted.items()
        }


# The queries of a summary, and the fields each gives (`summarize_windows` runs those asked).
REQUESTS, PERCENTILES_OF, PROBES, QUALITY = "requests", "percentiles", "probes", "quality"
BLOCKED_BASELINE, QUALITY_BASELINE = "blocked_rate_baseline", "quality_overall_baseline"
GROUPS: Final = frozenset(
    {REQUESTS, PERCENTILES_OF, PROBES, QUALITY, BLOCKED_BASELINE, QUALITY_BASELINE}
)
_FIELDS: Final = {
    REQUESTS: (
        "total_requests", "successful_requests", "success_rate", "blocked_rate",
        "mean_response_time_s", "mean_tokens_per_s", "total_tokens",
    ),
    PERCENTILES_OF: tuple(f"p{p}_response_time_s" for p in PERCENTILES),
    PROBES: (
        "process_memory_mb", "mean_memory_mb", "mean_cpu_percent", "mean_gpu_memory_mb",
        "gpu_memory_pct", "gpu_temperature_c", "backend_up", "energy_j_per_request",
        "energy_j_per_1k_tokens",
    ),
    QUALITY: ("quality_overall",),
    BLOCKED_BASELINE: (BLOCKED_BASELINE,),
    QUALITY_BASELINE: (QUALITY_BASELINE,),
}  # fmt: skip
_GROUP_OF: Final = {name: group for group, names in _FIELDS.items() for name in names}


def _groups(names: Collection[str]) -> frozenset[str]:
    """The queries that give the fields `names` (all of them for a name none gives)."""
    found = {_GROUP_OF.get(name) for name in names}
    return GROUPS if None in found else frozenset(g for g in found if g is not None)


def _summary(
    conn: Connection,
    since: datetime,
    until: datetime,
    base: dict[str, float | None],
    tiers: dict[str, Ranges],
    groups: frozenset[str] = GROUPS,
    raw: _RawSums | None = None,
) -> Summary:
    """The summary of `since <= ts < until`, whose parts `tiers` says where to read."""
    fields: dict[str, float | None] = {}
    if REQUESTS in groups:
        fields.update(_requests(conn, tiers, raw))
    if PERCENTILES_OF in groups:
        latencies = _percentiles(conn, since, until)
        for pct in PERCENTILES:
            value = latencies.get(pct)
            fields[f"p{pct}_response_time_s"] = value / 1000.0 if value is not None else None
    if PROBES in groups:
        fields.update(_probes(conn, since, until))
    quality = _quality_means(conn, tiers) if QUALITY in groups else {}
    if QUALITY in groups:
        fields["quality_overall"] = _overall(quality)
    fields.update((k, v) for k, v in base.items() if k in groups)
    return Summary(since, until, fields, {f"{s}.{m}": v for (s, m), v in quality.items()})


def _baseline(
    conn: Connection,
    tiers: dict[str, Ranges],
    groups: frozenset[str] = GROUPS,
    raw: _RawSums | None = None,
) -> dict[str, float | None]:
    """The `*_baseline` fields asked for in `groups`: blocked rate and overall quality over
    the baseline's span, whose parts `tiers` says where to read."""
    out: dict[str, float | None] = {}
    if BLOCKED_BASELINE in groups:
        sums = _request_sums(conn, tiers, raw)
        out[BLOCKED_BASELINE] = sums.blocked / sums.total if sums.total else None
    if QUALITY_BASELINE in groups:
        out[QUALITY_BASELINE] = _overall(_quality_means(conn, tiers))
    return out


# The alert worker reads its windows and the day-long baseline every few seconds, and a window
# holds every request of its span: the minutes and hours the rollups hold are read from them (a
# few rows each), the rest from the raw rows (a window's ragged first minute, and the minutes
# not rolled up yet: `rollups.lag_s` and what follows), each summed in the database. The
# figures are those of the raw rows: rollups count and sum exactly (a record written into a
# minute already rolled up counts once the rollup worker rolls that minute up again). The
# latency percentiles are the exception: they are read from the raw rows (exact, and only
# for a rule that compares one).
_TIERS: Final = (("hour", HOUR_S), ("minute", MINUTE_S))
_ru = rollup_requests_table.c
_rq = rollup_quality_table.c


def _tiers(since: datetime, until: datetime, sealed: datetime) -> dict[str, Ranges]:
    """Where each part of the window is read from: rollups (minute, hour) or raw rows, the
    rollups holding the minutes before `sealed` (the watermark)."""
    return plan([since], until, sealed, hours=True)


@dataclass(slots=True)
class _Sums:
    """What the request figures are made of, each request counted `weight` times."""

    total: int = 0
    ok: int = 0
    served: int = 0  # ok and backend_error
    blocked: int = 0
    tokens: int = 0
    latency_sum: float = 0.0  # of the ok requests with a latency
    latency_count: int = 0
    tps_sum: float = 0.0  # of the ok requests with a generation speed
    tps_count: int = 0


def _request_sums(conn: Connection, tiers: dict[str, Ranges], raw: _RawSums | None = None) -> _Sums:
    """The sums of the requests in the ranges of `tiers` (`plan`): rollups where it says,
    raw rows elsewhere (through `raw`, which reads each piece once, when given)."""
    sums = _Sums()
    for tier, resolution_s in _TIERS:
        for lo, hi in tiers[tier]:
            in_range = (_ru.resolution_s == resolution_s, _ru.bucket >= lo, _ru.bucket < hi)
            for outcome, requests, prompt, completion in conn.execute(
                select(
                    _ru.outcome,
                    func.sum(_ru.requests),
                    func.sum(_ru.prompt_tokens),
                    func.sum(_ru.completion_tokens),
                )
                .where(*in_range)
                .group_by(_ru.outcome)
            ):
                requests = int(requests or 0)
                sums.total += requests
                sums.ok += requests if outcome == "ok" else 0
                sums.served += requests if outcome in _SERVED else 0
                sums.blocked += requests if outcome in _BLOCKED else 0
                sums.tokens += int(prompt or 0) + int(completion or 0)
            # the timed histograms count the ok requests (see `monitor.store.rollups`)
            for latency, latency_sum, tps, tps_sum in conn.execute(
                select(
                    cast(_ru.latency_ms, Text),
                    _ru.latency_ms_sum,
                    cast(_ru.tokens_per_s, Text),
                    _ru.tokens_per_s_sum,
                ).where(*in_range, _ru.outcome == "ok")
            ):
                sums.latency_count += _count(latency)
                sums.latency_sum += float(latency_sum or 0.0)
                sums.tps_count += _count(tps)
                sums.tps_sum += float(tps_sum or 0.0)
    raw = raw if raw is not None else _RawSums(conn)
    for lo, hi in tiers["raw"]:
        for row in raw(lo, hi):
            sums.total += int(row[0] or 0)
            sums.ok += int(row[1] or 0)
            sums.served += int(row[2] or 0)
            sums.blocked += int(row[3] or 0)
            sums.tokens += int(row[4] or 0)
            sums.latency_sum += float(row[5] or 0.0)
            sums.latency_count += int(row[6] or 0)
            sums.tps_sum += float(row[7] or 0.0)
            sums.tps_count += int(row[8] or 0)
    return sums


class _RawSums:
    """The request sums of raw rows in time ranges, each piece between two of `bounds` read
    from the database once. The alert worker's windows all end now: each reads the minutes
    not rolled up yet (two to three at the rollups' lag) from the raw rows, and the one-minute
    window lies within them. Cut at every window's raw bounds, those minutes are read once
    per step instead of once per window and again for the baseline."""

    def __init__(self, conn: Connection, bounds: Iterable[datetime] = ()) -> None:
        self.conn = conn
        self.bounds = sorted(set(bounds))
        self.pieces: dict[tuple[datetime, datetime], Any] = {}

    def __call__(self, lo: datetime, hi: datetime) -> list[Any]:
        """The sums of each piece of `lo <= ts < hi` (a row of `_RAW_SUMS` each)."""
        cuts = [lo, *(t for t in self.bounds if lo < t < hi), hi]
        rows = []
        for piece in itertools.pairwise(cuts):
            row = self.pieces.get(piece)
            if row is None:
                row = self.pieces[piece] = self.conn.execute(
                    _RAW_SUMS.where(_r.ts >= piece[0], _r.ts < piece[1])
                ).one()
            rows.append(row)
        return rows


def _raw_bounds(plans: Iterable[dict[str, Ranges]]) -> list[datetime]:
    """The ends of the raw ranges of each of `plans` (`_tiers`)."""
    return [t for tiers in plans for lo, hi in tiers["raw"] for t in (lo, hi)]


def _count(histogram: str | None) -> int:
    """The values a stored histogram (`{"bucket index": count}`) counts."""
    return sum(orjson.loads(histogram).values()) if histogram else 0


def _quality_means(conn: Connection, tiers: dict[str, Ranges]) -> dict[tuple[str, str], float]:
    """The mean of each (scorer, metric) over the ranges of `tiers`."""
    sums: dict[tuple[str, str], list[float]] = {}

    def add(rows: Iterable[Any]) -> None:
        for scorer, metric, count, value_sum in rows:
            if count:
                acc = sums.setdefault((scorer, metric), [0.0, 0.0])
                acc[0] += float(count)
                acc[1] += float(value_sum or 0.0)

    for tier, resolution_s in _TIERS:
        for lo, hi in tiers[tier]:
            add(
                conn.execute(
                    select(_rq.scorer, _rq.metric, func.sum(_rq.scores), func.sum(_rq.value_sum))
                    .where(_rq.resolution_s == resolution_s, _rq.bucket >= lo, _rq.bucket < hi)
                    .group_by(_rq.scorer, _rq.metric)
                )
            )
    for lo, hi in tiers["raw"]:
        add(
            conn.execute(
                select(_q.scorer, _q.metric, func.count(_q.value), func.sum(_q.value))
                .where(_q.ts >= lo, _q.ts < hi)
                .group_by(_q.scorer, _q.metric)
            )
        )
    return {key: value_sum / count for key, (count, value_sum) in sums.items()}


def _weighed(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """The weights of the rows meeting `condition`, summed (0 when none do)."""
    return func.coalesce(func.sum(case((condition, _r.weight), else_=0)), 0)


_OK = _r.outcome == "ok"
_TIMED = _OK & _r.latency_ms.is_not(None)
_SPEED = _OK & _r.tokens_per_s.is_not(None)
# What `_Sums` is made of, summed over raw rows (a `where` on `ts` added per range)
_RAW_SUMS: Final = select(
    func.coalesce(func.sum(_r.weight), 0),
    _weighed(_OK),
    _weighed(_r.outcome.in_(_SERVED)),
    _weighed(_r.outcome.in_(_BLOCKED)),
    func.sum(  # in 64 bits: tokens times a sampling weight can pass a 32-bit integer
        cast(
            func.coalesce(_r.prompt_tokens, 0) + func.coalesce(_r.completion_tokens, 0), BigInteger
        )
        * _r.weight
    ),
    func.sum(case((_TIMED, cast(_r.latency_ms, Float) * _r.weight))),
    _weighed(_TIMED),
    func.sum(case((_SPEED, cast(_r.tokens_per_s, Float) * _r.weight))),
    _weighed(_SPEED),
)


def _requests(
    conn: Connection, tiers: dict[str, Ranges], raw: _RawSums | None = None
) -> dict[str, float | None]:
    """The request figures of the window: from the rollups where they hold it and from the
    raw rows elsewhere, as the baseline is read (an alert window of ten minutes reads the
    raw rows of its last two or three only)."""
    sums = _request_sums(conn, tiers, raw)
    total = sums.total
    return {
        "total_requests": float(total),
        "successful_requests": float(sums.ok) if total else None,
        "success_rate": sums.ok / sums.served if sums.served else None,
        "blocked_rate": sums.blocked / total if total else None,
        "mean_response_time_s": (
            sums.latency_sum / sums.latency_count / 1000.0 if sums.latency_count else None
        ),
        "mean_tokens_per_s": sums.tps_sum / sums.tps_count if sums.tps_count else None,
        "total_tokens": float(sums.tokens),
    }


def _percentiles(conn: Connection, since: datetime, until: datetime) -> dict[int, float]:
    """Latency percentiles (ms) of the window's successful requests, each row taken `weight`
    times, computed in the database: `percentile_cont` on Postgres when every row weighs 1;
    otherwise (and always on SQLite, which has no percentile function) the ranks are found
    along the running sum of weights. Never the window's rows in Python: an hour-long rule
    window holds a million rows at a few hundred requests per second."""
    where = (_r.ts >= since, _r.ts < until, _r.outcome == "ok", _r.latency_ms.is_not(None))
    if conn.dialect.name != "postgresql":
        count, weight = conn.execute(select(func.count(), func.sum(_r.weight)).where(*where)).one()
        return _ranked_in_database(conn, where, int(weight)) if count else {}
    columns = [func.percentile_cont(p / 100.0).within_group(_r.latency_ms) for p in PERCENTILES]
    count, weight, heaviest, *values = conn.execute(
        select(func.count(), func.sum(_r.weight), func.max(_r.weight), *columns).where(*where)
    ).one()
    if not count:
        return {}
    if heaviest == 1:  # no sampling in the window: the plain percentiles
        return {p: float(v) for p, v in zip(PERCENTILES, values, strict=True)}
    return _ranked_in_database(conn, where, int(weight))


def _ranks(weight: int) -> dict[int, tuple[int, int, float]]:
    """Per percentile, the 0-based ranks (low, high) among `weight` values it interpolates
    between, and how far between, as `percentile_cont` does."""
    out: dict[int, tuple[int, int, float]] = {}
    for p in PERCENTILES:
        position = p / 100.0 * (weight - 1)
        low = int(position)
        out[p] = (low, min(low + 1, weight - 1), position - low)
    return out


def _ranked_in_database(conn: Connection, where: Any, weight: int) -> dict[int, float]:
    """The value at each rank along the running sum of weights: the smallest value whose
    running sum passes the rank."""
    running = (
        select(
            _r.latency_ms.label("v"),
            func.sum(_r.weight).over(order_by=(_r.latency_ms, _r.id)).label("upto"),
        )
        .where(*where)
        .subquery()
    )
    ranks = _ranks(weight)
    wanted = sorted({rank for low, high, _ in ranks.values() for rank in (low, high)})
    columns = [func.min(running.c.v).filter(running.c.upto > rank) for rank in wanted]
    found = dict(zip(wanted, conn.execute(select(*columns)).one(), strict=True))
    return {
        p: float(found[low]) + (float(found[high]) - float(found[low])) * frac
        for p, (low, high, frac) in ranks.items()
    }


def _probes(conn: Connection, since: datetime, until: datetime) -> dict[str, float | None]:
    in_window = (_p.ts >= since, _p.ts < until)
    means = {
        (metric, target): float(mean)
        for metric, target, mean in conn.execute(
            select(_p.metric, _p.target, func.avg(cast(_p.value, Float)))
            .where(*in_window, _p.value.is_not(None))
            .group_by(_p.metric, _p.target)
        )
    }

    def mean_of(metric: str) -> float | None:
        found = [v for (m, _), v in means.items() if m == metric]
        return sum(found) / len(found) if found else None

    def highest(metric: str) -> float | None:
        found = [v for (m, _), v in means.items() if m == metric]
        return max(found) if found else None

    sums = dict(
        conn.execute(
            select(_p.metric, func.sum(_p.value))
            .where(*in_window, _p.metric.in_(("energy_j", "energy_requests", "energy_tokens")))
            .group_by(_p.metric)
        ).all()
    )
    joules, measured, tokens = (sums.get(k) for k in ("energy_j", "energy_requests",
                                                        "energy_tokens"))  # fmt: skip
    backend_rss = mean_of("backend_rss_mb")
    latest_health = conn.execute(
        select(_p.value)
        .where(*in_window, _p.metric == "backend_up")
        .order_by(_p.ts.desc(), _p.id.desc())
        .limit(1)
    ).scalar()
    return {
        "process_memory_mb": backend_rss if backend_rss is not None else mean_of("proxy_rss_mb"),
        "mean_memory_mb": mean_of("host_memory_used_mb"),
        "mean_cpu_percent": mean_of("host_cpu_percent"),
        "mean_gpu_memory_mb": mean_of("gpu_memory_used_mb"),
        "gpu_memory_pct": highest("gpu_memory_pct"),
        "gpu_temperature_c": highest("gpu_temperature_c"),
        "backend_up": float(latest_health) if latest_health is not None else None,
        "energy_j_per_request": joules / measured if joules is not None and measured else None,
        "energy_j_per_1k_tokens": 1000 * joules / tokens if joules is not None and tokens else None,
    }


def _overall(quality: dict[tuple[str, str], float]) -> float | None:
    """The mean of every scorer's `overall` score in the window."""
    overall = [v for (_, metric), v in quality.items() if metric == "overall"]
    return sum(overall) / len(overall) if overall else None
