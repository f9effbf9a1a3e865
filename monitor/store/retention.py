"""Retention: raw rows go after `raw_age`, minute rollups with them, hour rollups after
`rollup_age`; in small batches, each its own short transaction, so no lock is held for long.

    raw rows, minute rollups  ─────────────x│ raw cut: now - raw_age (whole hours), and never
    hour rollups              ──x│          │          past what the rollups have sealed
                               rollup cut: now - rollup_age

Raw rows are `requests` (and their `guard_verdicts`), `quality_scores`, `probe_samples`,
`alert_events`, and the outbox rows that are done with (`delivered` or `failed`). A batch is
`DELETE ... WHERE id IN (SELECT id ... WHERE ts < cut LIMIT n)`: the time index finds the rows,
and a batch touches at most `batch` rows of one table. The raw cut is written to the rollup
state (`raw_pruned_until`) before anything is deleted, so a rebuild never recomputes an hour
whose raw rows are half gone.

Batched deletes rather than time partitions on Postgres: partitioning `requests` by time would
put `ts` into its primary key, and the recorder's idempotent `ON CONFLICT (id)` insert needs
`id` alone to be unique. Deleting a day of a million-record month is a few seconds of batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Table, delete, func, select, update
from sqlalchemy.engine import Connection, Engine

from monitor.store.models import (
    alert_deliveries_table,
    alert_events_table,
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
    rollup_state_table,
)
from monitor.store.rollup_build import STATE_NAME, read_state
from monitor.store.rollup_kinds import HOUR, HOUR_S, KINDS, MINUTE_S, floor_to

DEFAULT_BATCH: Final = 5000
_ROLLUP_SLICE: Final = {MINUTE_S: timedelta(hours=1), HOUR_S: timedelta(days=1)}


@dataclass(slots=True)
class PruneResult:
    raw_cut: datetime | None  # raw rows and minute rollups before this are gone
    rollup_cut: datetime  # hour rollups before this are gone
    deleted: dict[str, int] = field(default_factory=dict)  # table → rows
    batches: int = 0  # transactions that deleted rows
    done: bool = True  # False when `max_batches` stopped it: the next call goes on


def _raw_tables() -> list[tuple[Table, Any, ColumnElement[bool] | None]]:
    """(table, its time column, an extra condition) in the order rows are deleted."""
    d = alert_deliveries_table.c
    return [
        (guard_verdicts_table, guard_verdicts_table.c.ts, None),  # before their requests
        (requests_table, requests_table.c.ts, None),
        (quality_scores_table, quality_scores_table.c.ts, None),
        (probe_samples_table, probe_samples_table.c.ts, None),
        (alert_events_table, alert_events_table.c.at, None),
        (alert_deliveries_table, d.created_at, d.status.in_(("delivered", "failed"))),
    ]


def raw_cut(conn: Connection, now: datetime, raw_age: timedelta) -> datetime | None:
    """Where raw rows may be pruned up to: `now - raw_age` rounded down to the hour, and never
    past the sealed minutes or a span waiting to be rolled up again (None: nothing may go)."""
    state = read_state(conn)
    if state is None:
        return None
    cut = min(floor_to(now - raw_age, HOUR), floor_to(state.sealed_until, HOUR))
    if state.dirty_since is not None:
        cut = min(cut, floor_to(state.dirty_since, HOUR))
    return cut


def prune(
    engine: Engine,
    now: datetime,
    raw_age: timedelta,
    rollup_age: timedelta,
    *,
    batch: int = DEFAULT_BATCH,
    max_batches: int | None = None,
) -> PruneResult:
    """Delete what retention lets go, `batch` rows per transaction; at most `max_batches`
    transactions when given (the worker's step stays short; the next step goes on)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    with engine.begin() as conn:
        cut = raw_cut(conn, now, raw_age)
        if cut is not None:
            pruned = read_state(conn)
            previous = pruned.raw_pruned_until if pruned is not None else None
            if previous is None or previous < cut:
                conn.execute(
                    update(rollup_state_table)
                    .where(rollup_state_table.c.name == STATE_NAME)
                    .values(raw_pruned_until=cut)
                )
    result = PruneResult(cut, floor_to(now - rollup_age, HOUR))

    def budget_left() -> bool:
        return max_batches is None or result.batches < max_batches

    if cut is not None:
        for table, ts, condition in _raw_tables():
            while budget_left():
                deleted = _delete_batch(engine, table, ts, cut, condition, batch)
                if deleted:  # an empty table costs one query, not a batch of the budget
                    result.batches += 1
                    result.deleted[table.name] = result.deleted.get(table.name, 0) + deleted
                if deleted < batch:
                    break
            else:
                result.done = False
                return result
    for resolution_s, until in ((MINUTE_S, cut), (HOUR_S, result.rollup_cut)):
        if until is None:
            continue
        for kind in KINDS:
            if not _prune_rollups(engine, kind.table, resolution_s, until, result, budget_left):
                result.done = False
                return result
    return result


def _delete_batch(
    engine: Engine,
    table: Table,
    ts: Any,
    cut: datetime,
    condition: ColumnElement[bool] | None,
    batch: int,
) -> int:
    ids = select(table.c.id).where(ts < cut)
    if condition is not None:
        ids = ids.where(condition)
    with engine.begin() as conn:
        deleted = conn.execute(
            delete(table).where(table.c.id.in_(ids.limit(batch).scalar_subquery()))
        )
        return int(deleted.rowcount or 0)


def _prune_rollups(
    engine: Engine,
    table: Table,
    resolution_s: int,
    until: datetime,
    result: PruneResult,
    budget_left: Any,
) -> bool:
    """Delete one tier's rollups before `until`, a slice of time per transaction; False when
    the batch budget ran out first."""
    c = table.c
    with engine.connect() as conn:
        oldest = conn.execute(
            select(func.min(c.bucket)).where(c.resolution_s == resolution_s)
        ).scalar()
    if oldest is None:
        return True
    start, step = oldest, _ROLLUP_SLICE[resolution_s]
    while start < until:
        if not budget_left():
            return False
        end = min(start + step, until)
        with engine.begin() as conn:
            deleted = conn.execute(
                delete(table).where(c.resolution_s == resolution_s, c.bucket < end)
            )
        if deleted.rowcount:
            result.batches += 1
            name = f"{table.name}/{'minute' if resolution_s == MINUTE_S else 'hour'}"
            result.deleted[name] = result.deleted.get(name, 0) + int(deleted.rowcount)
        start = end
    return True
