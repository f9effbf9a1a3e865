"""Migration 0005 (`requests.weight`) on real SQLite and Postgres: rows stored before it weigh
1, the 0004 back-fill still rolls up a store that predates both, and down again keeps every
row and verdict (no table copy cascading to `guard_verdicts`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, inspect, text

from monitor.store import migrate, rollups
from monitor.store.engine import make_engine
from monitor.store.models import UTCDateTime
from tests.support.databases import BOTH_DATABASES, database_url

ROWS = 30
_TS = bindparam("ts", type_=UTCDateTime())  # stored as the store stores times, SQLite too
OLD = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


@pytest.fixture(params=BOTH_DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("requests")}
    finally:
        engine.dispose()


def _insert_before_weights(url: str) -> None:
    """Rows as a store at revision 0003 holds them: requests, each with one verdict."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(ROWS):
                ts = OLD + timedelta(seconds=i)
                conn.execute(
                    text(
                        "INSERT INTO requests (id, ts, route, protocol, stream, outcome, "
                        "http_status, latency_ms, tokens_estimated, extra) VALUES (:id, :ts, "
                        "'/v1/chat/completions', 'openai', :stream, :outcome, 200, :ms, :f, '{}')"
                    ).bindparams(_TS),
                    {"id": f"old-{i}", "ts": ts, "stream": False, "f": False, "ms": 100.0 + i,
                     "outcome": "ok" if i % 3 else "backend_error"},
                )  # fmt: skip
                conn.execute(
                    text(
                        "INSERT INTO guard_verdicts (request_id, ts, stage, policy, action, "
                        "classifier, latency_us, findings, skipped) VALUES (:id, :ts, 'input', "
                        "'default', 'allow', 'rules', 5, '[]', '[]')"
                    ).bindparams(_TS),
                    {"id": f"old-{i}", "ts": ts},
                )
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> object:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def test_rows_before_sampling_weigh_one_and_down_keeps_them(db_url: str) -> None:
    migrate.upgrade(db_url, "0003")
    _insert_before_weights(db_url)

    migrate.upgrade(db_url, "0005")  # 0004 rolls up the old rows (unweighted), 0005 weighs
    assert migrate.current_revision(db_url) == "0005"
    assert "weight" in _columns(db_url)
    assert _scalar(db_url, "SELECT COUNT(*) FROM requests WHERE weight = 1") == ROWS
    engine = make_engine(db_url)
    try:
        totals = rollups.request_totals(engine, OLD, OLD + timedelta(minutes=1))
        assert totals.requests == ROWS and totals.outcomes == {"ok": 20, "backend_error": 10}
    finally:
        engine.dispose()

    migrate.downgrade(db_url, "0004")
    assert "weight" not in _columns(db_url)
    assert _scalar(db_url, "SELECT COUNT(*) FROM requests") == ROWS
    assert _scalar(db_url, "SELECT COUNT(*) FROM guard_verdicts") == ROWS

    migrate.upgrade(db_url)
    assert _scalar(db_url, "SELECT SUM(weight) FROM requests") == ROWS
    assert _scalar(db_url, "SELECT COUNT(*) FROM guard_verdicts") == ROWS
