"""A populated store and the dashboard on it, through Streamlit's AppTest.

The store holds recent records (the last 40 minutes: inside the default window, the last
hour) with verdicts, quality scores, a health check and a firing alert; its rollups are rebuilt
as the worker would. The app reads the database URL and the password from the environment, as
`gemma-monitor dashboard` gives them to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from monitor.dashboard import auth
from monitor.dashboard.shell import ENTRY
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from monitor.alerts.rules import default_rules
from monitor.alerts.state import Alert, fingerprint
from monitor.config import Settings
from monitor.record import RequestRecord
from monitor.store import migrate
from monitor.store.alerts import save_step
from monitor.store.engine import make_engine
from monitor.store.inserts import insert_rows
from monitor.store.rollups import rebuild
from monitor.store.samples import ProbeValue, QualityScore, write_probe_values, write_quality_scores
from tests.support.databases import BOTH_DATABASES, database_url, make_records

PASSWORD = "correct horse battery staple"


@dataclass
class Store:
    url: str
    engine: Engine
    now: datetime
    records: list[RequestRecord]
    scores: list[QualityScore]


@pytest.fixture(params=BOTH_DATABASES)
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        yield Store(url, engine, datetime.now(UTC), [], [])
        engine.dispose()


@pytest.fixture
def store(empty_store: Store) -> Store:
    now = empty_store.now
    start = now - timedelta(minutes=40)
    records = make_records(120, start=start, verdicts=True)
    for i, record in enumerate(records):
        record.ts = start + timedelta(seconds=19 * i)
        record.ttft_ms = 5.0 + i % 10 if record.stream else None
    insert_rows(empty_store.engine, [r.to_row() for r in records])
    scores = [
        QualityScore(r.id, r.ts, "heuristic", "overall", round(0.5 + (i % 5) / 10, 2))
        for i, r in enumerate(records)
        if r.outcome == "ok"
    ]
    write_quality_scores(empty_store.engine, scores)
    write_probe_values(
        empty_store.engine,
        [ProbeValue(now - timedelta(minutes=1), "health", "backend_up", 1.0,
                    "http://127.0.0.1:8080", "healthy")],
    )  # fmt: skip
    rule = next(r for r in default_rules() if r.name == "low_success_rate")
    alert = Alert(
        fingerprint(rule.name, {}), rule, {}, "firing", pending_since=now - timedelta(minutes=5),
        value=0.75, threshold=0.95, fired_at=now - timedelta(minutes=4),
    )  # fmt: skip
    save_step(empty_store.engine, [alert], [], [], now)
    rebuild(empty_store.engine, now - timedelta(hours=2), now + timedelta(minutes=1))
    empty_store.records, empty_store.scores = records, scores
    return empty_store


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The engine cache and the login throttle are per process: none leaks between tests."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def app_for(url: str, monkeypatch: pytest.MonkeyPatch, *, signed_in: bool = True) -> AppTest:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", PASSWORD)
    at = AppTest.from_file(ENTRY, default_timeout=60)
    if signed_in:
        key = auth.signing_key(Settings(dashboard_password=PASSWORD))
        assert key is not None
        at.query_params[auth.TOKEN_PARAM] = auth.issue_token(key, time.time(), 600)
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}
