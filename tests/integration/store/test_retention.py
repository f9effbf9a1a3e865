"""Retention on real databases: raw rows go in bounded batches, the rollups (and so the long
series) stay, and nothing the rollups have not sealed is touched."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import Engine

from monitor.store import rollups
from monitor.store.models import (
    alert_deliveries_table,
    alert_events_table,
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
    rollup_requests_table,
    rollup_state_table,
)
from monitor.store.retention import prune
from monitor.workers.rollups import RetentionWorker
from tests.integration.store.test_rollups import DAYS, START, fill, seal

END = START + timedelta(days=DAYS)
RAW_TABLES = (requests_table, guard_verdicts_table, quality_scores_table, probe_samples_table)


def add_alert_rows(engine: Engine) -> None:
    """Alert events and outbox rows on the first and the last day, in every status."""
    events, deliveries = [], []
    for day, at in enumerate((START + timedelta(hours=1), END - timedelta(hours=1))):
        events.append({"fingerprint": "f" * 16, "rule": "r", "kind": "firing", "at": at})
        for status in ("delivered", "failed", "pending"):
            deliveries.append({
                "key": f"{day}-{status}", "receiver": "hook", "fingerprint": "f" * 16,
                "rule": "r", "kind": "firing", "url": "http://127.0.0.1:9/", "body": "{}",
                "headers": {}, "status": status, "attempts": 1, "created_at": at,
            })  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(alert_events_table), events)
        conn.execute(insert(alert_deliveries_table), deliveries)


def count(engine: Engine, table: Any, before: datetime | None = None) -> int:
    column = table.c.get("ts", table.c.get("at", table.c.get("created_at")))
    query = select(func.count()).select_from(table)
    if before is not None:
        query = query.where(column < before)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


@pytest.fixture
def store(engine: Engine) -> Engine:
    fill(engine)
    seal(engine, END)
    add_alert_rows(engine)
    return engine


def deleted_per_statement(engine: Engine) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM"):
            seen.append((statement.split()[2], cursor.rowcount))

    return seen


def test_pruning_keeps_the_rollups_and_the_long_series(store: Engine) -> None:
    engine = store
    series_before = rollups.request_series(engine, START, END, timedelta(hours=6))
    totals_before = rollups.request_totals(engine, START, END)
    raw_cut = START + timedelta(days=1)
    kept = {t.name: count(engine, t) - count(engine, t, raw_cut) for t in RAW_TABLES}
    assert all(count(engine, t, raw_cut) for t in RAW_TABLES)  # something to prune
    statements = deleted_per_statement(engine)

    result = prune(engine, END + timedelta(days=1), timedelta(days=DAYS), timedelta(days=365),
                   batch=100)  # fmt: skip

    assert result.raw_cut == raw_cut and result.done
    for table in RAW_TABLES:
        assert count(engine, table, raw_cut) == 0, table.name
        assert count(engine, table) == kept[table.name], table.name
    # raw batches are bounded: no statement deleted more than a batch
    raw_names = {t.name for t in (*RAW_TABLES, alert_events_table, alert_deliveries_table)}
    raw_deletes = [n for name, n in statements if name in raw_names]
    assert raw_deletes and max(raw_deletes) <= 100
    assert result.deleted["requests"] > 100  # so it took several batches
    # the outbox keeps what is still to be delivered
    with engine.connect() as conn:
        outbox = conn.execute(select(alert_deliveries_table.c.key)).scalars().all()
    assert sorted(outbox) == ["0-pending", "1-delivered", "1-failed", "1-pending"]
    assert count(engine, alert_events_table) == 1
    # minute rollups went with the raw rows, hour rollups stay: the long series is unchanged
    with engine.connect() as conn:
        c = rollup_requests_table.c
        oldest_minute = conn.execute(
            select(func.min(c.bucket)).where(c.resolution_s == 60)
        ).scalar_one()
        oldest_hour = conn.execute(
            select(func.min(c.bucket)).where(c.resolution_s == 3600)
        ).scalar_one()
        pruned_until = conn.execute(select(rollup_state_table.c.raw_pruned_until)).scalar_one()
    assert oldest_minute >= raw_cut and oldest_hour < raw_cut
    assert pruned_until == raw_cut
    series_after = rollups.request_series(engine, START, END, timedelta(hours=6))
    assert [(s.requests, s.outcomes, s.total_tokens) for s in series_after] == [
        (s.requests, s.outcomes, s.total_tokens) for s in series_before
    ]
    totals_after = rollups.request_totals(engine, START, END)
    assert totals_after.latency_ms == totals_before.latency_ms
    # a rebuild over the pruned span leaves its rollups alone (their raw rows are gone)
    rollups.rebuild(engine, START, END)
    assert rollups.request_totals(engine, START, END).requests == totals_before.requests


def test_hour_rollups_go_after_the_rollup_age(store: Engine) -> None:
    result = prune(store, END + timedelta(days=10), timedelta(days=3), timedelta(days=11))
    assert result.rollup_cut == START + timedelta(days=2) - timedelta(hours=0)
    with store.connect() as conn:
        c = rollup_requests_table.c
        buckets = conn.execute(select(c.bucket).where(c.resolution_s == 3600)).scalars().all()
    assert buckets and min(buckets) >= START + timedelta(days=2)
    assert count(store, requests_table) == 0  # all raw rows were past 3 days


def test_nothing_unsealed_is_pruned(store: Engine) -> None:
    sealed = START + timedelta(days=1, hours=7, minutes=30)
    with store.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=sealed))
    cut = START + timedelta(days=1, hours=7)  # the sealed whole hours
    from_cut = count(store, requests_table) - count(store, requests_table, cut)
    result = prune(store, END + timedelta(days=30), timedelta(days=1), timedelta(days=365))
    assert result.raw_cut == cut
    assert count(store, requests_table, cut) == 0
    assert count(store, requests_table) == from_cut


def test_a_span_waiting_to_be_rolled_up_again_is_kept(store: Engine) -> None:
    late = START + timedelta(hours=5, minutes=12)
    with store.begin() as conn:
        conn.execute(update(rollup_state_table).values(dirty_since=late, dirty_until=END))
    result = prune(store, END + timedelta(days=30), timedelta(days=1), timedelta(days=365))
    assert result.raw_cut == START + timedelta(hours=5)


def test_max_batches_spreads_a_large_prune_over_steps(store: Engine) -> None:
    now, raw_age = END + timedelta(days=1), timedelta(days=DAYS)
    first = prune(store, now, raw_age, timedelta(days=365), batch=50, max_batches=3)
    assert not first.done and first.batches == 3
    assert sum(first.deleted.values()) <= 150
    steps = 1
    while not prune(store, now, raw_age, timedelta(days=365), batch=50, max_batches=3).done:
        steps += 1
        assert steps < 200
    assert count(store, requests_table, START + timedelta(days=1)) == 0


async def test_worker_step_prunes(store: Engine) -> None:
    worker = RetentionWorker(
        store, raw_days=DAYS, rollup_days=365, batch_size=1000,
        now=lambda: END + timedelta(days=1),
    )  # fmt: skip
    result = await worker.step()
    assert result.done and worker.deleted_total == sum(result.deleted.values()) > 0
    assert count(store, requests_table, START + timedelta(days=1)) == 0
