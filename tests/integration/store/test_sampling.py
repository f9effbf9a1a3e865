"""Record sampling on real SQLite and Postgres: the same seeded traffic, stored whole in one
database and sampled at 10 % in another, gives the same figures within their statistical
error through the summaries (alerts), the rollups (dashboard) and the health report; every
non-success and every flagged success is stored.

Bounds. Sampling keeps one plain success in each block of N consecutive ones (at a random
place), weight N, so a count is off by less than N. A percentile p of the n plain successes
kept is a sample percentile: its rank in the whole traffic is within 4 standard errors,
4 * sqrt(p (1 - p) / n), of p (blocks are strata, whose error is at most a simple random
sample's). A mean is within 4 standard errors, 4 * sd / sqrt(n). Rollup histograms add one
bucket's width (9 %) either way. With the weights ignored (each stored row counted once),
every count below is off by thousands and the test fails.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from monitor.reports.build import build_report
from monitor.store import migrate, rollups
from monitor.store.engine import make_engine
from monitor.store.histogram import GROWTH
from monitor.store.models import requests_table
from monitor.store.reports import outcome_counts
from monitor.store.rollup_kinds import HOUR, floor_to
from monitor.store.sampling import Sampler
from monitor.store.summaries import summarize
from monitor.store.views import search_requests
from tests.integration.store.sampling_traffic import Traffic, make_traffic, quantile, store_traffic
from tests.support.databases import BOTH_DATABASES, database_url

N = 10  # sampling.share = 0.1
COUNT = 15_000
SEED = 20270210
UNTIL = floor_to(datetime.now(UTC), HOUR) - HOUR  # sealed by the migration's watermark
SINCE = UNTIL - timedelta(hours=3)  # three hours: the rollups read hour rows


@contextmanager
def _engine(kind: str, directory: Path) -> Iterator[Engine]:
    with database_url(kind, directory) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return make_traffic(SEED, COUNT, SINCE, UNTIL)


@pytest.fixture(scope="module", params=BOTH_DATABASES)
def stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, traffic: Traffic
) -> Iterator[tuple[Engine, Engine]]:
    """(every record stored, one plain success in N stored), the same traffic in both."""
    kind = request.param
    full_dir, sampled_dir = (tmp_path_factory.mktemp(f"{kind}-{name}") for name in ("a", "b"))
    with _engine(kind, full_dir) as full, _engine(kind, sampled_dir) as sampled:
        store_traffic(full, full_dir / "spool", traffic, Sampler())
        store_traffic(sampled, sampled_dir / "spool", traffic, Sampler(N, rng=random.Random(SEED)))
        for engine in (full, sampled):
            rollups.rebuild(engine, SINCE, UNTIL)
        yield full, sampled


def _stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(requests_table.c.id, requests_table.c.weight))
        return {request_id: weight for request_id, weight in rows}


def _kept_plain(traffic: Traffic) -> int:
    return traffic.plain_successes // N


def _rank_bounds(traffic: Traffic, q: float, *, bucket: bool = False) -> tuple[float, float]:
    """Where the sampled q-quantile may fall: the whole traffic's quantiles 4 standard errors
    of rank either side (a bucket's width further for histograms)."""
    delta = 4 * math.sqrt(q * (1 - q) / _kept_plain(traffic))
    low, high = quantile(traffic.ok_latencies, q - delta), quantile(traffic.ok_latencies, q + delta)
    return (low / GROWTH, high * GROWTH) if bucket else (low, high)


def test_every_non_success_and_flagged_success_is_stored_and_one_success_in_n(
    stores: tuple[Engine, Engine], traffic: Traffic
) -> None:
    full, sampled = _stored(stores[0]), _stored(stores[1])
    assert len(full) == COUNT and set(full.values()) == {1}
    by_id = {r.id: r for r in traffic.records}
    must = {r.id for r in traffic.records
            if r.outcome != "ok" or any(v["action"] != "allow" for v in r.verdicts)}  # fmt: skip
    assert must <= sampled.keys()
    assert all(sampled[i] == 1 for i in must)
    plain = {i: w for i, w in sampled.items() if i not in must}
    assert set(plain.values()) == {N}
    assert all(by_id[i].outcome == "ok" for i in plain)
    assert abs(len(plain) * N - traffic.plain_successes) < N
    saved = 1 - len(sampled) / len(full)
    assert saved > 0.6  # what the store no longer takes: about 70 % of the rows here


def test_the_summary_is_the_same_within_its_statistical_error(
    stores: tuple[Engine, Engine], traffic: Traffic
) -> None:
    full = summarize(stores[0], SINCE, UNTIL, baseline=None).fields
    sampled = summarize(stores[1], SINCE, UNTIL, baseline=None).fields
    assert full["total_requests"] == COUNT
    assert full["successful_requests"] == traffic.count("ok")
    for name in ("total_requests", "successful_requests"):
        assert abs(sampled[name] - full[name]) < N, name  # type: ignore[operator]
    for name in ("success_rate", "blocked_rate"):
        assert sampled[name] == pytest.approx(full[name], abs=N / COUNT), name
    latencies = traffic.ok_latencies
    for p in (50, 95):
        low, high = _rank_bounds(traffic, p / 100)
        assert low / 1000 <= sampled[f"p{p}_response_time_s"] <= high / 1000, p  # type: ignore[operator]
    error = 4 * statistics.stdev(latencies) / math.sqrt(_kept_plain(traffic)) / 1000
    assert sampled["mean_response_time_s"] == pytest.approx(full["mean_response_time_s"], abs=error)
    tokens = [(r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in traffic.records]
    error = 4 * statistics.stdev(tokens) * math.sqrt(N * traffic.plain_successes) + N * max(tokens)
    assert sampled["total_tokens"] == pytest.approx(full["total_tokens"], abs=error)
    # without sampling the summary is the exact one: the weighted percentiles reduce to it
    assert full["p95_response_time_s"] == pytest.approx(quantile(latencies, 0.95) / 1000)
    assert full["p50_response_time_s"] == pytest.approx(quantile(latencies, 0.50) / 1000)


def test_rollups_count_every_request_and_their_histograms_agree(
    stores: tuple[Engine, Engine], traffic: Traffic
) -> None:
    full = rollups.request_totals(stores[0], SINCE, UNTIL)
    sampled = rollups.request_totals(stores[1], SINCE, UNTIL)
    assert full.requests == COUNT
    assert abs(sampled.requests - full.requests) < N
    for outcome, count in full.outcomes.items():
        assert abs(sampled.outcomes[outcome] - count) < (N if outcome == "ok" else 1), outcome
    assert sampled.latency_ms.count == sampled.outcomes["ok"]  # whole numbers, weights summed
    assert sampled.error_rate == pytest.approx(full.error_rate, abs=N / COUNT)
    for q in (0.5, 0.95):
        low, high = _rank_bounds(traffic, q, bucket=True)
        assert low <= (sampled.latency_ms.quantile(q) or 0) <= high, q
    streams_error = 4 * math.sqrt(N * traffic.plain_successes / 4) + N
    assert abs(sampled.streams - full.streams) < streams_error
    # the same figures from the raw rows: a series of minutes not sealed reads them
    assert outcome_counts(stores[1], SINCE, UNTIL) == sampled.outcomes
    # verdicts weigh as their request: every flag and block exactly, allows within error
    full_v = _verdict_counts(stores[0])
    sampled_v = _verdict_counts(stores[1])
    for action in ("flag", "block"):
        assert sampled_v[action] == full_v[action], action
    allows = full_v["allow"]
    assert abs(sampled_v["allow"] - allows) < 4 * math.sqrt(allows * N) + N
    per_principal = rollups.principal_totals(stores[1], SINCE, UNTIL, limit=100)
    assert sum(p.requests for p in per_principal) == sampled.requests


def _verdict_counts(engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in rollups.verdict_series(engine, SINCE, UNTIL, UNTIL - SINCE):
        for (_stage, action, *_), n in s.counts.items():
            counts[action] = counts.get(action, 0) + n
    return counts


def test_the_report_is_the_same_within_its_statistical_error(
    stores: tuple[Engine, Engine], traffic: Traffic
) -> None:
    full = build_report(stores[0], SINCE, UNTIL)
    sampled = build_report(stores[1], SINCE, UNTIL)
    f, s = full.performance_summary, sampled.performance_summary
    assert f["total_requests"] == COUNT
    assert abs(s["total_requests"] - f["total_requests"]) < N
    assert abs(s["successful_requests"] - f["successful_requests"]) < N
    assert s["success_rate"] == pytest.approx(f["success_rate"], abs=N / COUNT)
    low, high = _rank_bounds(traffic, 0.95, bucket=True)
    assert low / 1000 <= s["p95_response_time"] <= high / 1000
    low, high = _rank_bounds(traffic, 0.5, bucket=True)
    assert low / 1000 <= sampled.requests["p50_response_time"] <= high / 1000
    assert sampled.requests["error_rate"] == pytest.approx(
        full.requests["error_rate"], abs=N / COUNT
    )
    # blocked and flagged requests are all stored, with weight 1: their counts are exact
    for name in ("blocked_requests", "blocked_input", "blocked_output"):
        assert sampled.safety[name] == full.safety[name] == traffic.count(name) or (
            name == "blocked_requests"
        )
    assert sampled.safety["by_stage"]["output"]["flag"] == full.safety["by_stage"]["output"]["flag"]


def test_the_request_list_says_how_many_requests_its_records_stand_for(
    stores: tuple[Engine, Engine], traffic: Traffic
) -> None:
    full = search_requests(stores[0], since=SINCE, until=UNTIL, page_size=5)
    sampled = search_requests(stores[1], since=SINCE, until=UNTIL, page_size=5)
    assert full.total == full.represented == COUNT
    assert sampled.total < COUNT and abs(sampled.represented - COUNT) < N
    with stores[1].connect() as conn:
        assert conn.execute(select(func.sum(requests_table.c.weight))).scalar() == (
            sampled.represented
        )
