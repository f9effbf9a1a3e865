"""Rollups on real databases: every figure read through them equals the raw rows' exact figure
(percentiles within one bucket), for short and long windows, from either tier."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from monitor.record import RequestRecord
from monitor.store import rollup_build, rollup_kinds, rollups
from monitor.store.histogram import bucket_index, lower_bound, upper_bound
from monitor.store.inserts import insert_rows, record_row
from monitor.store.models import (
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
    rollup_requests_table,
    rollup_state_table,
)
from monitor.store.samples import (
    ProbeValue,
    QualityScore,
    write_probe_values,
    write_quality_scores,
)
from tests.support.databases import sample_verdicts

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DAYS = 3
MODELS = ("gemma-3-1b", "gemma-3-4b", None)
BACKENDS = ("vllm-a", "ollama-b")
OUTCOMES = ("ok",) * 12 + (
    "backend_error",
    "blocked_input",
    "blocked_output",
    "invalid",
    "rate_limited",
    "client_abort",
)


def random_records(
    rng: random.Random, count: int, start: datetime, span: timedelta, prefix: str = "r"
) -> list[RequestRecord]:
    """Requests spread at random over `span`, with every kind of outcome, some streams,
    verdicts, missing values and heavy-tailed latencies."""
    records = []
    for i in range(count):
        outcome = rng.choice(OUTCOMES)
        ok = outcome == "ok"
        stream = rng.random() < 0.4
        latency = rng.lognormvariate(6.5, 1.0) if ok else rng.uniform(0, 50)
        records.append(
            RequestRecord(
                id=f"{prefix}-{i:06d}",
                ts=start + timedelta(seconds=rng.uniform(0, span.total_seconds())),
                route=rng.choice(("/v1/chat/completions", "/api/chat")),
                protocol="openai",
                model=rng.choice(MODELS),
                backend=rng.choice(BACKENDS),
                principal=rng.choice((None, "a" * 16, "b" * 16, "c" * 16)),
                stream=stream,
                outcome=outcome,
                http_status=200 if ok else 400,
                latency_ms=latency if rng.random() < 0.97 else None,
                ttft_ms=rng.uniform(5, 900) if ok and stream else None,
                itl_ms=rng.expovariate(1 / 30) if ok and stream else None,
                prompt_tokens=rng.randint(1, 900) if rng.random() < 0.9 else None,
                completion_tokens=rng.randint(0, 400) if ok else None,
                tokens_per_s=rng.uniform(2, 90) if ok else None,
                guard_ms=rng.expovariate(1 / 3) if rng.random() < 0.8 else None,
                verdicts=sample_verdicts(rng.choice((0, 0, 1, 2))),
            )
        )
    return records


@dataclass
class Store:
    engine: Engine
    records: list[RequestRecord]


def fill(engine: Engine, seed: int = 9, count: int = 2500) -> Store:
    rng = random.Random(seed)
    span = timedelta(days=DAYS)
    records = random_records(rng, count, START, span)
    insert_rows(engine, [record_row(r) for r in records])
    probes = [
        ProbeValue(
            START + timedelta(seconds=rng.uniform(0, span.total_seconds())),
            "system",
            metric,
            rng.uniform(0, 100),
            target,
        )
        for _ in range(1500)
        for metric, target in [
            rng.choice(
                (("host_cpu_percent", "host"), ("gpu_memory_pct", "0"), ("gpu_memory_pct", "1"))
            )
        ]
    ]
    write_probe_values(engine, probes)
    scores = [
        QualityScore(
            r.id, r.ts + timedelta(seconds=rng.uniform(0, 5)), scorer, metric, rng.random()
        )
        for r in records[:800]
        for scorer, metric in (("heuristic", "relevance"), ("judge", "overall"))
    ]
    write_quality_scores(engine, scores)
    return Store(engine, records)


def seal(engine: Engine, watermark: datetime) -> None:
    """Roll up everything before `watermark` and put the watermark there: later rows are the
    raw tail the readers add themselves."""
    rollups.rebuild(engine, START - timedelta(days=1), watermark)
    with engine.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=watermark))


@pytest.fixture
def store(engine: Engine) -> Store:
    store = fill(engine)
    seal(engine, START + timedelta(days=DAYS - 1, hours=5, minutes=7))
    return store


# -- exact figures, from the raw rows --------------------------------------------------------


def exact_percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def width(value: float) -> float:
    index = bucket_index(value)
    return upper_bound(index) - lower_bound(index)


def raw_requests(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(requests_table)))


def check_slice(got: rollups.RequestSlice, rows: list[Any]) -> None:
    assert got.requests == len(rows)
    assert got.outcomes == dict(Counter(r.outcome for r in rows))
    assert got.streams == sum(1 for r in rows if r.stream)
    assert got.prompt_tokens == sum(r.prompt_tokens or 0 for r in rows)
    assert got.completion_tokens == sum(r.completion_tokens or 0 for r in rows)
    ok = [r for r in rows if r.outcome == "ok"]
    for name, histogram, values in (
        ("latency", got.latency_ms, [r.latency_ms for r in ok]),
        ("ttft", got.ttft_ms, [r.ttft_ms for r in ok]),
        ("itl", got.itl_ms, [r.itl_ms for r in ok]),
        ("tokens/s", got.tokens_per_s, [r.tokens_per_s for r in ok]),
        ("guard", got.guard_ms, [r.guard_ms for r in rows]),
    ):
        present = [v for v in values if v is not None]
        assert histogram.count == len(present), name
        assert histogram.total == pytest.approx(sum(present)), name
        for q in (0.5, 0.95, 0.99):
            estimate = histogram.quantile(q)
            if not present:
                assert estimate is None
                continue
            exact = exact_percentile(present, q)
            assert estimate is not None
            assert abs(estimate - exact) <= max(width(exact), width(estimate)), (name, q)


WINDOWS = {
    "a few minutes": (
        timedelta(hours=30, minutes=2, seconds=13),
        timedelta(minutes=7),
        timedelta(minutes=1),
    ),
    "several hours": (
        timedelta(hours=7, seconds=41),
        timedelta(hours=9, minutes=30),
        timedelta(minutes=45),
    ),
    "several days, hourly steps": (
        timedelta(minutes=3),
        timedelta(days=DAYS, minutes=-3),
        timedelta(hours=6),
    ),
    "hour-aligned days": (timedelta(0), timedelta(days=DAYS), timedelta(hours=1)),
    "across the watermark": (
        timedelta(days=DAYS - 1, hours=2, seconds=30),
        timedelta(hours=6),
        timedelta(minutes=20),
    ),
}


@pytest.mark.parametrize("window", sorted(WINDOWS))
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model": "gemma-3-1b"},
        {"backend": "ollama-b"},
        {"model": "gemma-3-4b", "backend": "vllm-a"},
    ],
    ids=str,
)
def test_request_series_equals_the_raw_rows(
    store: Store, window: str, filters: dict[str, str]
) -> None:
    offset, length, step = WINDOWS[window]
    since = START + offset
    until = since + length
    rows = [
        r for r in raw_requests(store.engine) if all(getattr(r, k) == v for k, v in filters.items())
    ]
    series = rollups.request_series(store.engine, since, until, step, **filters)
    starts = rollups.step_starts(since, until, step)
    assert [s.start for s in series] == starts
    bounds = [*starts, until]
    for got, low, high in zip(series, bounds, bounds[1:], strict=False):
        check_slice(got, [r for r in rows if low <= r.ts < high])
    total = rollups.request_totals(store.engine, since, until, **filters)
    check_slice(total, [r for r in rows if since <= r.ts < until])


def test_hour_and_minute_tiers_agree(store: Store) -> None:
    since, until = START, START + timedelta(days=DAYS - 1)
    with store.engine.connect() as conn:
        c = rollup_requests_table.c
        tiers = {
            resolution: list(
                conn.execute(
                    select(c.requests, c.prompt_tokens, c.latency_ms, c.latency_ms_sum).where(
                        c.resolution_s == resolution, c.bucket >= since, c.bucket < until
                    )
                )
            )
            for resolution in (60, 3600)
        }
    assert len(tiers[3600]) < len(tiers[60])
    for index in (0, 1, 2):
        if index == 2:
            minute, hour = Counter[str](), Counter[str]()
            for row in tiers[60]:
                minute.update(row[2])
            for row in tiers[3600]:
                hour.update(row[2])
            assert minute == hour
        else:
            assert sum(r[index] for r in tiers[60]) == sum(r[index] for r in tiers[3600])
    assert sum(r[3] for r in tiers[60]) == pytest.approx(sum(r[3] for r in tiers[3600]))
    # and a long window read through hours equals it read through minutes only
    by_hours = rollups.request_totals(store.engine, since, until)
    with store.engine.connect() as conn:
        tiers_used = rollups.plan([since], until, rollups.sealed_until(conn), hours=True)
    assert tiers_used["hour"] and not tiers_used["minute"]
    by_minutes = rollups.request_series(store.engine, since, until, timedelta(minutes=59))
    assert by_hours.requests == sum(s.requests for s in by_minutes)
    assert by_hours.latency_ms.count == sum(s.latency_ms.count for s in by_minutes)


def test_long_windows_read_no_raw_rows_before_the_watermark() -> None:
    since = START + timedelta(minutes=10)
    until = START + timedelta(days=2, hours=1)
    starts = rollups.step_starts(since, until, timedelta(hours=6))
    tiers = rollups.plan(starts, until, until + timedelta(hours=1), hours=True)
    assert tiers["raw"] == []
    assert tiers["hour"]  # the hour-aligned part of each step
    tiers = rollups.plan(starts, until, START + timedelta(days=1, seconds=30), hours=True)
    assert tiers["raw"] == [(START + timedelta(days=1), until)]


def test_verdicts_and_scores_equal_the_raw_rows(store: Store) -> None:
    since, until = START + timedelta(hours=2, seconds=5), START + timedelta(days=DAYS)
    step = timedelta(hours=12)
    with store.engine.connect() as conn:
        v, r = guard_verdicts_table.c, requests_table.c
        rows = list(
            conn.execute(
                select(
                    v.ts, v.stage, v.action, v.category, v.rule, v.policy, v.score, r.model
                ).join_from(guard_verdicts_table, requests_table, v.request_id == r.id)
            )
        )
    series = rollups.verdict_series(store.engine, since, until, step, model="gemma-3-1b")
    bounds = [*rollups.step_starts(since, until, step), until]
    for got, low, high in zip(series, bounds, bounds[1:], strict=False):
        expected = Counter(
            (row.stage, row.action, row.category or "", row.rule or "", row.policy)
            for row in rows
            if low <= row.ts < high and row.model == "gemma-3-1b"
        )
        assert got.counts == dict(expected)
    distribution = rollups.score_distribution(store.engine, since, until)
    assert len(distribution) == 20
    scores = [row.score for row in rows if since <= row.ts < until and row.score is not None]
    assert sum(n for _, _, n in distribution) == len(scores)
    for low, high, n in distribution:
        assert n == sum(1 for s in scores if low <= s < high or (high == 1.0 and s == 1.0))


def test_probe_and_quality_series_equal_the_raw_rows(store: Store) -> None:
    since, until = START + timedelta(minutes=1, seconds=1), START + timedelta(days=DAYS)
    step = timedelta(hours=4)
    bounds = [*rollups.step_starts(since, until, step), until]
    with store.engine.connect() as conn:
        probes = list(conn.execute(select(probe_samples_table)))
        quality = list(conn.execute(select(quality_scores_table)))
    got = rollups.probe_series(store.engine, since, until, step, ["gpu_memory_pct"])
    assert set(got) == {("gpu_memory_pct", "0"), ("gpu_memory_pct", "1")}
    for (metric, target), points in got.items():
        for point in points:
            index = bounds.index(point.start)
            values = [
                p.value
                for p in probes
                if p.metric == metric
                and p.target == target
                and bounds[index] <= p.ts < bounds[index + 1]
            ]
            assert point.count == len(values)
            assert point.mean == pytest.approx(sum(values) / len(values))
            assert (point.minimum, point.maximum) == (min(values), max(values))
        assert sum(p.count for p in points) == sum(
            1 for p in probes if p.metric == metric and p.target == target and since <= p.ts < until
        )
    series = rollups.quality_series(store.engine, since, until, step)
    assert set(series) == {("heuristic", "relevance"), ("judge", "overall")}
    for (scorer, metric), points in series.items():
        for point in points:
            index = bounds.index(point.start)
            values = [
                q.value
                for q in quality
                if q.scorer == scorer
                and q.metric == metric
                and bounds[index] <= q.ts < bounds[index + 1]
            ]
            assert point.count == len(values)
            assert point.mean == pytest.approx(sum(values) / len(values))


def test_principal_totals_and_dimensions(store: Store) -> None:
    since, until = START + timedelta(hours=3, seconds=9), START + timedelta(days=DAYS)
    rows = [r for r in raw_requests(store.engine) if since <= r.ts < until]
    totals = rollups.principal_totals(store.engine, since, until)
    expected = Counter(r.principal or "" for r in rows)
    assert [(t.principal, t.requests) for t in totals] == sorted(
        expected.items(), key=lambda item: (-item[1], item[0])
    )
    for total in totals:
        mine = [r for r in rows if (r.principal or "") == total.principal]
        assert total.outcomes == dict(Counter(r.outcome for r in mine))
        assert total.prompt_tokens == sum(r.prompt_tokens or 0 for r in mine)
        assert total.completion_tokens == sum(r.completion_tokens or 0 for r in mine)
    assert len(rollups.principal_totals(store.engine, since, until, limit=2)) == 2
    dims = rollups.dimensions(store.engine, since, until)
    assert dims.models == ["gemma-3-1b", "gemma-3-4b"]
    assert dims.backends == ["ollama-b", "vllm-a"]


def test_empty_window_and_empty_steps(engine: Engine) -> None:
    since = START
    series = rollups.request_series(engine, since, since + timedelta(hours=5), timedelta(hours=1))
    assert [s.requests for s in series] == [0] * 5
    total = rollups.request_totals(engine, since, since + timedelta(days=40))
    assert total.requests == 0 and total.latency_ms.quantile(0.5) is None
    assert total.success_rate is None
    assert rollups.probe_series(engine, since, since + timedelta(days=1), timedelta(hours=1)) == {}
    assert rollups.dimensions(engine, since, since + timedelta(days=1)) == rollups.Dimensions(
        [], []
    )


def test_an_aligned_window_reads_whole_hours_only() -> None:
    until = START + timedelta(days=30, minutes=41)
    step = timedelta(hours=6)
    since = rollups.aligned_since(until, timedelta(days=30), step)
    assert since <= until - timedelta(days=30) and since.hour % 6 == 0 and since.minute == 0
    tiers = rollups.plan(rollups.step_starts(since, until, step), until, until, hours=True)
    assert tiers["hour"] == [(since, until - timedelta(minutes=41))]
    assert tiers["minute"] == [(until - timedelta(minutes=41), until)]
    assert tiers["raw"] == []


def test_the_builders_minutes_equal_the_raw_rows_floored_in_python(engine: Engine) -> None:
    """The builder takes each raw row's minute from the database and has it sum the
    principals' rows: the same rollup rows, kind by kind, as flooring every row's time in
    Python, with weights and verdicts, on Postgres also in a session whose time zone is
    not UTC (half an hour off, so a minute's floor in local time would still be right but
    its hour would not; the minute is taken in UTC)."""
    fill(engine, seed=4, count=1500)
    with engine.begin() as conn:  # sampled successes: some rows stand for several requests
        conn.execute(update(requests_table).where(requests_table.c.id.like("%3")).values(weight=7))
        # a long prompt sampled 1 in 1,000: its token sum passes a 32-bit integer
        conn.execute(
            update(requests_table)
            .where(requests_table.c.id.like("%07"))
            .values(prompt_tokens=3_000_000, weight=1000)
        )
    since, until = START + timedelta(hours=5), START + timedelta(days=1, hours=7)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TIME ZONE 'America/St_Johns'")
        by_minute = rollup_build.aggregate_raw(conn, since, until)
        for kind, accumulator in by_minute.items():
            expected = rollup_kinds.Accumulator(kind)
            rollup_kinds.add_raw_rows(
                conn,
                expected,
                lambda ts: (ts >= since) & (ts < until),
                lambda t: rollup_kinds.floor_to(t, rollup_kinds.MINUTE),
            )
            assert accumulator.groups, kind.table.name  # every kind has rows in the span
            assert accumulator.groups == expected.groups, kind.table.name
