"""The leader lock and its fence on the real Postgres: one holder per schema, a lock that goes
with its session, and a deposed leader that can store nothing, even when it passed its own
check before the new leader took over."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from monitor.alerts.state import Alert
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.config_types import AlertRule
from monitor.store import alerts as alert_store
from monitor.store import migrate
from monitor.store.alerts import Enqueued
from monitor.store.engine import make_engine
from monitor.store.leader_lock import SAVE_CLASS, Fence, LeaderLock, NotLeader
from monitor.store.models import alert_deliveries_table, alerts_table
from tests.support.databases import postgres_schema, render

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RULE = AlertRule(name="errors", metric="success_rate", comparison="<", threshold=0.5)


@pytest.fixture
def engine() -> Iterator[Engine]:
    with postgres_schema() as url:
        migrate.upgrade(render(url))
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def locks(engine: Engine) -> Iterator[list[LeaderLock]]:
    made: list[LeaderLock] = []
    yield made
    for lock in made:
        lock.close()


def new_lock(engine: Engine, made: list[LeaderLock]) -> LeaderLock:
    made.append(LeaderLock(engine))
    return made[-1]


def firing(fingerprint: str) -> tuple[Alert, Enqueued]:
    alert = Alert(fingerprint, RULE, {}, "firing", pending_since=NOW, fired_at=NOW)
    outgoing = OutgoingWebhook("hook", "http://127.0.0.1:9/", b"{}", {}, f"{fingerprint}-firing")
    return alert, Enqueued(outgoing, fingerprint, RULE.name, "firing")


def save(engine: Engine, fingerprint: str, fence: Fence) -> None:
    alert, enqueued = firing(fingerprint)
    alert_store.save_step(engine, [alert], [], [enqueued], NOW, fence)


def stored(engine: Engine) -> tuple[set[str], int]:
    with engine.connect() as conn:
        fingerprints = set(conn.execute(select(alerts_table.c.fingerprint)).scalars())
        outbox = conn.execute(select(func.count()).select_from(alert_deliveries_table)).scalar()
    return fingerprints, int(outbox or 0)


def terminate(engine: Engine, pid: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def take_over(lock: LeaderLock, within_s: float = 10.0) -> Fence:
    """Poll `try_acquire` until it wins (the terminated session lets go a moment later)."""
    deadline = time.monotonic() + within_s
    while (fence := lock.try_acquire()) is None:
        assert time.monotonic() < deadline, "the lock was not freed"
        time.sleep(0.02)
    return fence


def test_one_holder_per_schema_until_it_lets_go(engine: Engine, locks: list[LeaderLock]) -> None:
    first, second = new_lock(engine, locks), new_lock(engine, locks)
    fence = first.try_acquire()
    assert fence is not None
    assert second.try_acquire() is None
    assert first.try_acquire() == fence  # asking again keeps the term
    first.check()
    with postgres_schema() as other_url:  # another schema elects its own leader
        other = make_engine(other_url)
        try:
            elsewhere = new_lock(other, locks)
            other_fence = elsewhere.try_acquire()
            assert other_fence is not None and other_fence.key != fence.key
            elsewhere.release()
        finally:
            other.dispose()
    first.release()
    with pytest.raises(NotLeader):
        first.check()
    assert second.try_acquire() is not None


def test_a_deposed_leader_stores_nothing(engine: Engine, locks: list[LeaderLock]) -> None:
    old, new = new_lock(engine, locks), new_lock(engine, locks)
    old_fence = old.try_acquire()
    assert old_fence is not None
    save(engine, "before", old_fence)
    assert stored(engine) == ({"before"}, 1)

    terminate(engine, old_fence.pid)  # its database connection drops
    new_fence = take_over(new)
    assert new_fence.pid != old_fence.pid
    with pytest.raises(Exception):  # noqa: B017 - the driver's error for a dead session
        old.check()
    with pytest.raises(NotLeader):
        save(engine, "deposed", old_fence)
    with pytest.raises(NotLeader):
        alert_store.active_snapshots(engine, old_fence)
    assert stored(engine) == ({"before"}, 1)  # rolled back: no alert, no notification

    assert [s["fingerprint"] for s in alert_store.active_snapshots(engine, new_fence)] == ["before"]
    save(engine, "after", new_fence)
    assert stored(engine) == ({"before", "after"}, 2)


def test_a_write_that_passed_the_lock_waits_and_then_fails(
    engine: Engine, locks: list[LeaderLock]
) -> None:
    """The race the save lock closes: the old leader's write starts while it still holds the
    lock, is held up (here by a transaction holding the save lock, as a new leader's restore
    would), the old leader is deposed meanwhile; when the write gets the save lock its check
    sees the new term, and it stores nothing."""
    old, new = new_lock(engine, locks), new_lock(engine, locks)
    old_fence = old.try_acquire()
    assert old_fence is not None
    outcome: list[BaseException | None] = []
    with engine.connect() as blocker:
        blocker.begin()
        blocker.execute(
            text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": SAVE_CLASS, "k": old_fence.key}
        )

        def write() -> None:
            try:
                save(engine, "late", old_fence)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        assert not outcome, "the write should wait for the save lock"
        terminate(engine, old_fence.pid)
        take_over(new)
        blocker.rollback()
    writer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], NotLeader)
    assert stored(engine) == (set(), 0)
