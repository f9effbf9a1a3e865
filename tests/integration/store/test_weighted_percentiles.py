"""The alert summaries' latency percentiles, on SQLite and Postgres, equal `percentile_cont`
of the values each taken `weight` times: computed in the database along the running sum of
weights (and by `percentile_cont` itself on Postgres when no row is sampled)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from monitor.record import RequestRecord
from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.inserts import insert_rows, record_row
from monitor.store.models import requests_table
from monitor.store.summaries import PERCENTILES, _percentiles
from tests.support.databases import BOTH_DATABASES, database_url

T0 = datetime(2027, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=BOTH_DATABASES)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    directory: Path = tmp_path_factory.mktemp("percentiles")
    with database_url(request.param, directory) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def expanded_percentile(values: list[float], q: float) -> float:
    """percentile_cont of a plain list."""
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _store(engine: Engine, pairs: list[tuple[float, int]], outcome_of: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(requests_table))
    rows = [
        record_row(
            RequestRecord(
                id=f"r{i}", ts=T0 + timedelta(seconds=i), route="/v1/chat/completions",
                protocol="openai", outcome=outcome, latency_ms=value, weight=weight,
            )  # type: ignore[arg-type]
        )
        for i, ((value, weight), outcome) in enumerate(zip(pairs, outcome_of, strict=True))
    ]  # fmt: skip
    insert_rows(engine, rows)


@pytest.mark.parametrize("seed", range(12))
def test_percentiles_are_those_of_each_value_taken_weight_times(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randint(1, 40)
    pairs = [(round(rng.lognormvariate(5, 1), 1), rng.choice((1, 1, 10))) for _ in range(size)]
    if seed % 3 == 0:
        pairs = [(value, 1) for value, _ in pairs]  # unsampled: Postgres' percentile_cont
    outcomes = [rng.choice(("ok", "ok", "ok", "backend_error")) for _ in pairs]
    _store(engine, pairs, outcomes)
    expanded = [v for (v, w), o in zip(pairs, outcomes, strict=True) if o == "ok" for _ in range(w)]
    with engine.connect() as conn:
        found = _percentiles(conn, T0, T0 + timedelta(hours=1))
    if not expanded:
        assert found == {}
        return
    for p in PERCENTILES:
        assert found[p] == pytest.approx(expanded_percentile(expanded, p / 100))
