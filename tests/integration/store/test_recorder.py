"""The recorder against real databases: batches, exactly once, spooling, restarts, overflow."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.inserts import (
    CHUNK_SIZES,
    fixed_chunks,
    insert_isolating,
    insert_rows,
    record_row,
    verdict_rows,
)
from monitor.store.models import guard_verdicts_table, requests_table
from monitor.store.queries import count_requests, request_ids
from monitor.store.recorder import Recorder
from monitor.store.spool import REJECTED_FILE, Spool
from tests.support.databases import (
    make_records,
    sqlite_url,
    wait_until,
)


@pytest.fixture
def unmigrated_sqlite(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite database with no tables: every write fails, as in an outage."""
    engine = make_engine(sqlite_url(tmp_path / "db"))
    yield engine
    engine.dispose()


def _recorder(
    engine: Engine, spool_dir: Path, *, queue_size: int = 10_000, retry_interval_s: float = 0.05
) -> Recorder:
    return Recorder(
        engine,
        Spool(spool_dir),
        queue_size=queue_size,
        batch_size=100,
        flush_interval_s=0.01,
        retry_interval_s=retry_interval_s,
    )


async def test_writes_every_record_exactly_once(engine: Engine, tmp_path: Path) -> None:
    records = make_records(1_000)
    recorder = _recorder(engine, tmp_path / "spool")
    await recorder.start()
    for record in records:
        recorder.submit(record)
    await recorder.flush()
    assert recorder.queue_depth == 0
    await recorder.stop()

    assert request_ids(engine) == {r.id for r in records}
    assert count_requests(engine) == 1_000
    assert recorder.records_written_total == 1_000
    assert recorder.records_spooled_total == 0
    assert recorder.write_errors_total == 0
    assert recorder.last_error is None


def test_write_batch_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    rows = [r.to_row() for r in make_records(50)]
    recorder = _recorder(engine, tmp_path / "spool")
    recorder.write_batch(rows)
    recorder.write_batch(rows[10:20])  # a replay of rows already stored
    assert count_requests(engine) == 50


def test_sqlite_takes_a_batch_in_inserts_of_many_rows_of_a_few_sizes(tmp_path: Path) -> None:
    """Not an executemany: that steps SQLite once per row, and the driver gives up and takes
    back the interpreter lock around every step, a hand-over with the event loop per row.
    And not one statement per batch size: SQLite keeps each statement text compiled, and a
    statement of hundreds of rows compiles to megabytes. The statements are seen as SQLite
    runs them (its trace, with the values in place): the rows go to the driver directly."""
    url = sqlite_url(tmp_path / "db")
    migrate.upgrade(url)
    engine = make_engine(url)
    inserts: list[str] = []

    def trace(dbapi_connection: Any, _record: Any) -> None:
        def seen(sql: str) -> None:
            if sql.lstrip().upper().startswith("INSERT INTO REQUESTS"):
                inserts.append(sql)

        dbapi_connection.set_trace_callback(seen)

    event.listen(engine, "connect", trace)
    recorder = _recorder(engine, tmp_path / "spool")
    records = make_records(2500)
    recorder.write_batch([r.to_row() for r in records])
    # 2,500 rows: 4 x 512, 256, 128, 64, 4, each statement with its own rows' values
    in_statement = [re.findall(r"'(r-\d{6})'", sql) for sql in inserts]
    assert [len(ids) for ids in in_statement] == [512] * 4 + [256, 128, 64, 4]
    assert [i for ids in in_statement for i in ids] == [r.id for r in records]
    sizes = random.Random(3).sample(range(1, 700), 60)
    for i, size in enumerate(sizes):
        before = len(inserts)
        recorder.write_batch([r.to_row() for r in make_records(size, prefix=f"b{i}")])
        # as many statements as the size has bits set: one text per chunk size, at most ten
        assert len(inserts) - before == size // 512 + bin(size % 512).count("1")
    engine.dispose()
    assert count_requests(engine) == 2500 + sum(sizes)


def test_sqlite_rows_are_stored_as_sqlalchemys_insert_stores_them(tmp_path: Path) -> None:
    """The rows go to the driver without SQLAlchemy's insert, each value through its column
    type's bind processor: the stored values and their SQLite types are the same as that
    insert's, read back without any type conversion."""
    records = make_records(40, verdicts=True)
    records[1].ts = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=timezone(timedelta(hours=-5)))
    records[2].ts = datetime(2026, 3, 4, 5, 6, 7)  # naive: taken as UTC
    records[3].extra = {"nested": {"list": [1, 2.5, None, "é"]}, "flag": True}
    records[4].prompt_text, records[4].response_text = "a prompt ✓", "a reply\n"
    records[5].latency_ms, records[5].tokens_estimated = None, True
    stored = {}
    for name, write in (
        ("sqlalchemy", lambda engine, rows: _sqlalchemy_insert(engine, rows)),
        ("direct", insert_rows),
    ):
        url = sqlite_url(tmp_path / f"{name}.db")
        migrate.upgrade(url)
        engine = make_engine(url)
        write(engine, [record_row(r) for r in records])
        engine.dispose()
        with closing(sqlite3.connect(tmp_path / f"{name}.db" / "monitor.db")) as raw:
            rows = raw.execute("SELECT * FROM requests ORDER BY id").fetchall()
            kinds = raw.execute(
                "SELECT "
                + ", ".join(f"typeof({c.name})" for c in requests_table.columns)
                + " FROM requests ORDER BY id"
            ).fetchall()
            verdicts = raw.execute(
                "SELECT request_id, ts, stage, action, findings FROM guard_verdicts "
                "ORDER BY request_id, stage"
            ).fetchall()
        stored[name] = (rows, kinds, verdicts)
    assert len(stored["direct"][0]) == 40
    assert stored["direct"][2]  # the records' verdicts, stored beside them
    assert stored["direct"] == stored["sqlalchemy"]


def _sqlalchemy_insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """The insert the store made through SQLAlchemy before (many rows a statement)."""
    statement = sqlite_insert(requests_table).on_conflict_do_nothing(index_elements=["id"])
    with engine.begin() as conn:
        inserted = set(conn.execute(statement.returning(requests_table.c.id), rows).scalars())
        conn.execute(insert(guard_verdicts_table), verdict_rows(rows, inserted))


def test_a_value_no_column_type_takes_is_a_row_error(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "db")
    migrate.upgrade(url)
    engine = make_engine(url)
    rows = [r.to_row() for r in make_records(5)]
    rows[2]["extra"] = {"big": 2**70}  # past JSON's 64-bit integers: no serializer takes it
    rejected = insert_isolating(engine, rows)
    assert [row["id"] for row, _ in rejected] == [rows[2]["id"]]
    assert "cannot be stored" in rejected[0][1]
    assert request_ids(engine) == {row["id"] for row in rows} - {rows[2]["id"]}
    engine.dispose()


def test_fixed_chunks_keep_every_row_in_order() -> None:
    for count in (*range(0, 300), 1000, 1023, 1024, 2500):
        rows = [{"id": str(i)} for i in range(count)]
        chunks = list(fixed_chunks(rows))
        assert [row for chunk in chunks for row in chunk] == rows
        sizes = [len(chunk) for chunk in chunks]
        assert all(size in CHUNK_SIZES for size in sizes)
        assert sizes == sorted(sizes, reverse=True)
        assert len(chunks) == count // 512 + bin(count % 512).count("1")  # one per bit set


def test_a_refused_row_is_set_aside_and_the_rest_written(engine: Engine, tmp_path: Path) -> None:
    rows = [r.to_row() for r in make_records(10)]
    rows[3]["route"] = None  # NOT NULL: the database refuses this row, on every retry
    recorder = _recorder(engine, tmp_path / "spool")
    recorder.write_batch(rows)

    assert request_ids(engine) == {row["id"] for row in rows} - {rows[3]["id"]}
    assert recorder.records_rejected_total == 1
    assert recorder.records_spooled_total == 0
    assert rows[3]["id"].encode() in (tmp_path / "spool" / REJECTED_FILE).read_bytes()


async def test_a_dead_database_spools_then_replays_in_order(
    unmigrated_sqlite: Engine, tmp_path: Path
) -> None:
    engine = unmigrated_sqlite
    records = make_records(300)
    recorder = _recorder(engine, tmp_path / "spool")
    await recorder.start()
    for record in records[:150]:
        recorder.submit(record)
    await recorder.flush()
    assert recorder.database_down
    assert recorder.spool_records == 150
    assert recorder.write_errors_total >= 1
    assert "no such table" in (recorder.last_error or "")

    migrate.upgrade(engine)  # the database "returns"
    for record in records[150:]:
        recorder.submit(record)
    await recorder.flush()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()

    assert not recorder.database_down
    assert recorder.records_spooled_total >= 150
    with engine.connect() as conn:
        stored = list(conn.execute(text("SELECT id FROM requests ORDER BY rowid")).scalars())
    assert stored == [r.id for r in records]  # insertion order is submission order


async def test_the_spool_survives_a_restart(unmigrated_sqlite: Engine, tmp_path: Path) -> None:
    engine = unmigrated_sqlite
    records = make_records(120)
    first = _recorder(engine, tmp_path / "spool")
    await first.start()
    for record in records:
        first.submit(record)
    await first.stop()  # the database is still down: everything is on disk
    assert first.records_spooled_total == 120

    migrate.upgrade(engine)
    second = _recorder(engine, tmp_path / "spool", retry_interval_s=5.0)
    assert second.spool_records == 120
    await second.start()  # replays at once, not after retry_interval_s
    await wait_until(lambda: not second.spool, within_s=3.0)
    await second.stop()

    assert request_ids(engine) == {r.id for r in records}
    assert second.records_written_total == 120


async def test_a_full_queue_spills_to_the_spool_and_loses_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    records = make_records(200)
    recorder = _recorder(engine, tmp_path / "spool", queue_size=1)
    await recorder.start()
    for record in records:  # no await in between: the writer cannot run, the queue stays full
        recorder.submit(record)
    assert recorder.records_spooled_total == 199
    await recorder.flush()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()

    assert request_ids(engine) == {r.id for r in records}
    assert count_requests(engine) == 200


async def test_records_submitted_after_stop_are_kept(engine: Engine, tmp_path: Path) -> None:
    recorder = _recorder(engine, tmp_path / "spool")
    await recorder.start()
    await recorder.stop()
    late = make_records(3, "late")
    for record in late:
        recorder.submit(record)  # never raises
    assert recorder.spool_records == 3

    again = _recorder(engine, tmp_path / "spool")
    await again.start()
    await wait_until(lambda: not again.spool)
    await again.stop()
    assert request_ids(engine) == {r.id for r in late}


def test_during_an_outage_the_step_retries_only_every_retry_interval(
    unmigrated_sqlite: Engine, tmp_path: Path
) -> None:
    now = [0.0]
    recorder = Recorder(
        unmigrated_sqlite, Spool(tmp_path / "spool"), retry_interval_s=2.0, clock=lambda: now[0]
    )
    batches = [[r.to_row() for r in make_records(10, f"b{n}")] for n in range(4)]

    recorder.write_batch(batches[0])  # fails: the outage starts
    assert (recorder.database_down, recorder.write_errors_total) == (True, 1)
    recorder.write_batch(batches[1])  # straight to the spool, no new attempt
    assert recorder.write_errors_total == 1
    now[0] = 2.5
    recorder.write_batch(batches[2])  # retry due: tried, failed again
    assert recorder.write_errors_total == 2
    assert recorder.spool_records == 30

    migrate.upgrade(unmigrated_sqlite)
    now[0] = 5.0
    recorder.write_batch(batches[3])  # retry due: the spool is replayed, then this batch written
    assert not recorder.database_down
    assert not recorder.spool
    with unmigrated_sqlite.connect() as conn:
        stored = list(conn.execute(text("SELECT id FROM requests ORDER BY rowid")).scalars())
    assert stored == [row["id"] for batch in batches for row in batch]


def test_a_segment_that_disappears_does_not_wedge_replay(
    unmigrated_sqlite: Engine, tmp_path: Path
) -> None:
    now = [0.0]
    recorder = Recorder(
        unmigrated_sqlite, Spool(tmp_path / "spool"), retry_interval_s=2.0, clock=lambda: now[0]
    )
    batches = [[r.to_row() for r in make_records(10, f"b{n}")] for n in range(3)]
    recorder.write_batch(batches[0])  # the outage starts: to the first segment
    list(recorder.spool.segments_to_replay())  # rotate
    recorder.write_batch(batches[1])  # to a second segment
    (tmp_path / "spool" / "segment-000000000001.jsonl").unlink()  # removed by hand

    migrate.upgrade(unmigrated_sqlite)
    now[0] = 5.0
    recorder.write_batch(batches[2])  # replay: the missing segment is gone, not an outage
    assert not recorder.database_down
    assert not recorder.spool
    assert request_ids(unmigrated_sqlite) == {row["id"] for row in batches[1] + batches[2]}


async def test_a_full_spool_drops_records_counted_and_said_once(
    unmigrated_sqlite: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 20_000  # about 25 rows
    recorder = Recorder(
        unmigrated_sqlite,
        Spool(tmp_path / "spool", max_bytes=cap),
        batch_size=10,
        flush_interval_s=0.01,
        retry_interval_s=60.0,
    )
    await recorder.start()
    with caplog.at_level(logging.INFO, logger="monitor.store.recorder"):
        for record in make_records(200):
            recorder.submit(record)
        await recorder.flush()
        await recorder.stop()

    assert 0 < recorder.spool_bytes <= cap
    assert recorder.records_dropped_total == recorder.records_dropped_spool_full_total > 150
    assert recorder.records_spooled_total + recorder.records_dropped_total == 200
    said = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].levelno == logging.ERROR and said[0].exc_info is None  # no traceback
    assert "records_dropped_total" in said[0].getMessage()


async def test_the_queue_is_bounded_in_bytes_too(engine: Engine, tmp_path: Path) -> None:
    records = make_records(30)
    for record in records:  # as with content_storage=full
        record.prompt_text = "x" * 20_000
    recorder = Recorder(
        engine, Spool(tmp_path / "spool"), queue_bytes=100_000, batch_size=100,
        flush_interval_s=0.01, retry_interval_s=0.05,
    )  # fmt: skip
    await recorder.start()
    for record in records:  # no await in between: the writer cannot run
        recorder.submit(record)
    assert recorder.queue_depth == 4  # 4 x ~21 KB fit in 100 KB, a fifth does not
    assert recorder.records_spooled_total == 26
    await recorder.flush()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()
    assert request_ids(engine) == {r.id for r in records}


async def test_records_are_written_while_the_default_executor_is_saturated(
    engine: Engine, tmp_path: Path
) -> None:
    recorder = _recorder(engine, tmp_path / "spool")
    await recorder.start()
    release = threading.Event()
    # every thread of asyncio's default executor busy (health pings, feedback, a slow
    # webhook...), with more work queued behind them
    busy = [asyncio.create_task(asyncio.to_thread(release.wait, 30)) for _ in range(64)]
    try:
        await asyncio.sleep(0.05)
        records = make_records(50)
        for record in records:
            recorder.submit(record)
        started = time.monotonic()
        await asyncio.wait_for(recorder.flush(), 5.0)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        await asyncio.gather(*busy)
    await recorder.stop()
    assert elapsed < 1.0
    assert request_ids(engine) == {r.id for r in records}
