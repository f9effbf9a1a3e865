"""`Leadership` inside the monitoring workers: SQLite is one process (and says so), on Postgres
one of two `Monitoring`s leads, a follower can store no alert step, and a leader that stops
hands over at its next tick instead of after a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from monitor.config import Settings
from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.leader_lock import NotLeader
from monitor.upstream.backend import BackendClient
from monitor.workers.background import Monitoring
from tests.support.databases import postgres_schema, render, sqlite_url


def settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        database_url=url,
        spool_dir=str(tmp_path / "spool"),
        probes={"enabled": False},
        health={"enabled": False},
        rollups={"enabled": False},
        alerts={"interval_s": 0.1, "default_rules": False},
        leader={"interval_s": 0.05},
    )


def running(monitoring: Monitoring) -> set[str]:
    return {w["name"] for w in monitoring.worker_states() if w["running"]}


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_sqlite_is_one_process_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    config = settings(tmp_path, url)
    monitoring = Monitoring.from_settings(config, engine, BackendClient(config))
    caplog.set_level(logging.INFO, logger="monitor.workers.leader")
    await monitoring.start()
    try:
        state = monitoring.leadership.state()
        assert state["role"] == "single" and state["leader"] is True
        assert {"alerts", "retention"} <= running(monitoring)
        assert monitoring.leadership.fence() is None  # nothing to fence on one process
        said = [r.message for r in caplog.records if "SQLite is one process" in r.message]
        assert len(said) == 1
    finally:
        await monitoring.stop()
        engine.dispose()


@pytest.fixture
def postgres() -> Iterator[tuple[str, Engine]]:
    with postgres_schema() as url:
        migrate.upgrade(render(url))
        engine = make_engine(url)
        yield render(url), engine
        engine.dispose()


@pytest.mark.postgres
async def test_one_of_two_leads_and_a_stopping_leader_hands_over(
    tmp_path: Path, postgres: tuple[str, Engine]
) -> None:
    url, engine = postgres
    config = settings(tmp_path, url)
    first = Monitoring.from_settings(config, engine, BackendClient(config))
    second = Monitoring.from_settings(config, engine, BackendClient(config))
    await first.start()
    await until(lambda: first.leadership.is_leader)
    await second.start()
    try:
        await asyncio.sleep(0.3)  # several ticks: the follower stays a follower
        assert not second.leadership.is_leader
        assert "alerts" in running(first) and "alerts" not in running(second)
        assert second.leadership.state()["role"] == "follower"
        with pytest.raises(NotLeader):
            second.leadership.fence()  # a follower's alert step stores nothing
        assert second.alerts is not None
        with pytest.raises(NotLeader):
            await second.alerts.step()

        stopped_at = time.monotonic()
        await first.stop()  # gives the lock up
        await until(lambda: second.leadership.is_leader)
        handover_s = time.monotonic() - stopped_at
        assert "alerts" in running(second)
        assert second.leadership.elections_total == 1
        print(f"\nhandover after a clean stop: {handover_s:.3f} s")
    finally:
        await second.stop()
        await first.stop()
