"""The rollup worker's step on real databases: sealing minute by minute builds what one
rebuild builds, replicas take turns, and records written late end up in the rollups."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from monitor.store import rollups
from monitor.store.inserts import insert_rows, record_row
from monitor.store.models import rollup_requests_table, rollup_state_table
from monitor.store.recorder import Recorder
from monitor.store.rollup_build import read_state
from monitor.store.rollup_kinds import KINDS
from monitor.store.spool import Spool
from monitor.workers.rollups import RollupWorker
from tests.integration.store.test_rollups import random_records

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LAG = timedelta(minutes=2)


def set_watermark(engine: Engine, watermark: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=watermark))


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row, sorted, floats rounded (sums may add up in another order)."""

    def normal(value: Any) -> Any:
        return round(value, 6) if isinstance(value, float) else value

    out = {}
    with engine.connect() as conn:
        for kind in KINDS:
            rows = conn.execute(select(kind.table)).all()
            out[kind.table.name] = sorted((tuple(normal(v) for v in row) for row in rows), key=repr)
    return out


def test_sealing_step_by_step_equals_one_rebuild(engine: Engine) -> None:
    rng = random.Random(4)
    records = random_records(rng, 1500, START, timedelta(hours=3))
    insert_rows(engine, [record_row(r) for r in records])
    set_watermark(engine, START)
    end = START + timedelta(hours=3)
    now = end + LAG + timedelta(seconds=25)
    steps = []
    while True:
        result = rollups.seal_step(engine, now, LAG, max_span=timedelta(minutes=37))
        steps.append(result.sealed)
        if result.sealed is None:
            break
        assert result.sealed[1] - result.sealed[0] <= timedelta(minutes=37)
    assert len(steps) == 6  # 3 h in 37-minute steps, then nothing left
    assert result.sealed_until == end  # never past now - lag
    incremental = snapshot(engine)
    assert incremental["rollup_requests"]

    rollups.rebuild(engine, START, end)
    assert snapshot(engine) == incremental
    total = rollups.request_totals(engine, START, end)
    assert total.requests == len(records)


@pytest.mark.parametrize("replicas", [3])
def test_replicas_sealing_at_once_take_turns(engine: Engine, replicas: int) -> None:
    rng = random.Random(5)
    records = random_records(rng, 600, START, timedelta(hours=2))
    insert_rows(engine, [record_row(r) for r in records])
    set_watermark(engine, START)
    now = START + timedelta(hours=2) + LAG
    barrier = threading.Barrier(replicas)
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            barrier.wait()
            for _ in range(4):
                rollups.seal_step(engine, now, LAG, max_span=timedelta(minutes=30))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert read_state(conn) is not None
        assert rollups.sealed_until(conn) == START + timedelta(hours=2)
        c = rollup_requests_table.c
        minute_total = sum(conn.execute(select(c.requests).where(c.resolution_s == 60)).scalars())
    assert minute_total == len(records)  # each minute rolled up once, none twice


def spool_and_replay(engine: Engine, directory: Path, rows: list[dict[str, Any]]) -> None:
    spool = Spool(directory)
    try:
        spool.append(rows)
        recorder = Recorder(engine, spool, late_after_s=60.0)
        assert recorder.replay_spool(force=True)
        assert recorder.records_written_total == len(rows)
    finally:
        spool.close()


def test_records_replayed_from_the_spool_end_up_in_the_rollups(
    engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(6)
    on_time = random_records(rng, 300, START, timedelta(hours=1), prefix="on-time")
    insert_rows(engine, [record_row(r) for r in on_time])
    set_watermark(engine, START)
    now = START + timedelta(hours=1) + LAG
    while rollups.seal_step(engine, now, LAG).sealed is not None:
        pass
    window: tuple[datetime, datetime] = (START, START + timedelta(hours=1))
    assert rollups.request_totals(engine, *window).requests == 300

    # a database outage: these waited in the spool and arrive with their old timestamps
    late = random_records(rng, 120, START + timedelta(minutes=20), timedelta(minutes=9), "late")
    spool_and_replay(engine, tmp_path / "spool", [record_row(r) for r in late])
    with engine.connect() as conn:
        state = read_state(conn)
    assert state is not None and state.dirty_since is not None
    assert state.dirty_since == min(r.ts for r in late)
    # sealed minutes are read from the rollups, which do not have them yet ...
    assert rollups.request_totals(engine, *window).requests == 300

    result = rollups.seal_step(engine, now + timedelta(seconds=30), LAG)
    assert result.late is not None
    assert result.late[0] <= min(r.ts for r in late) and max(r.ts for r in late) < result.late[1]
    # ... and are once the next step rolled them up again, in both tiers
    assert rollups.request_totals(engine, *window).requests == 420
    hourly = rollups.request_series(engine, START, START + timedelta(hours=3), timedelta(hours=1))
    assert hourly[0].requests == 420
    with engine.connect() as conn:
        state = read_state(conn)
    assert state is not None and state.dirty_since is None


def test_records_written_ahead_of_the_watermark_are_not_marked(
    engine: Engine, tmp_path: Path
) -> None:
    set_watermark(engine, START)
    fresh = random_records(random.Random(7), 10, START + timedelta(minutes=5), timedelta(minutes=1))
    spool_and_replay(engine, tmp_path / "spool", [record_row(r) for r in fresh])
    with engine.connect() as conn:
        state = read_state(conn)
    assert state is not None and state.dirty_since is None
    # not sealed yet: read from the raw rows
    assert rollups.request_totals(engine, START, START + timedelta(hours=1)).requests == 10


async def test_worker_step_seals_in_a_thread(engine: Engine) -> None:
    set_watermark(engine, START)
    insert_rows(engine, [record_row(r) for r in random_records(
        random.Random(8), 50, START, timedelta(minutes=30))])  # fmt: skip
    clock: Callable[[], datetime] = lambda: START + timedelta(minutes=40)  # noqa: E731
    worker = RollupWorker(engine, lag_s=120, now=clock)
    result = await worker.step()
    assert result.sealed == (START, START + timedelta(minutes=38))
    with engine.connect() as conn:
        c = rollup_requests_table.c
        stored = sum(conn.execute(select(c.requests).where(c.resolution_s == 3600)).scalars())
    assert stored == 50


@pytest.mark.parametrize("enabled", [True, False])
def test_serve_runs_the_rollup_and_retention_workers(
    engine: Engine, tmp_path: Path, enabled: bool
) -> None:
    from monitor.config import Settings
    from monitor.upstream.backend import BackendClient
    from monitor.workers.background import Monitoring

    settings = Settings(
        spool_dir=str(tmp_path / "spool"),
        probes={"enabled": False},
        health={"enabled": False},
        rollups={"enabled": enabled, "interval_s": 7},
        retention={"enabled": enabled, "interval_s": 600, "raw_days": 7, "rollup_days": 90},
    )
    monitoring = Monitoring.from_settings(settings, engine, BackendClient(settings))
    intervals = {w.name: w.interval_s for w in monitoring.workers}
    if enabled:
        assert intervals["rollups"] == 7 and intervals["retention"] == 600
    else:
        assert "rollups" not in intervals and "retention" not in intervals
