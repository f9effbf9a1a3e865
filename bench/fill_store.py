"""Fill a store with a month of realistic traffic (`synthetic.py`), then build its rollups.

    .venv/bin/python bench/fill_store.py --database-url postgresql://postgres@127.0.0.1/gm_bench
    .venv/bin/python bench/fill_store.py --database-url sqlite:///bench.db --records 1000000
    .venv/bin/python bench/fill_store.py --database-url sqlite:///small.db --records 5000 --days 2

The database is migrated first (`gemma-monitor db upgrade`); it should be empty, as request ids
are random and nothing is cleared. The span ends at the current minute. Rows go in large batches:
COPY on Postgres, one executemany per batch on SQLite. Rollups are then rebuilt over the span
(`monitor.store.rollups.rebuild`), as the migration's back-fill does for an existing store.
Prints rows/s per table and the time of each phase.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from operations import alert_rows, probe_rows
from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Engine
from synthetic import Row, Traffic, plan

from monitor.store import migrate, rollups
from monitor.store.engine import make_engine
from monitor.store.models import (
    alert_deliveries_table,
    alert_events_table,
    alerts_table,
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
)

BATCH = 50_000


class Writer:
    """Bulk inserts, with a running count per table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def write(self, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        if self.engine.dialect.name == "postgresql":
            self._copy(table, rows)
        else:
            with self.engine.begin() as conn:
                conn.execute(insert(table), rows)
        self.seconds[table.name] = self.seconds.get(table.name, 0.0) + time.perf_counter() - started
        self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)

    def _copy(self, table: Table, rows: list[Row]) -> None:
        from psycopg.types.json import Jsonb

        names = list(rows[0])
        json_at = [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]
        statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
        with self.engine.begin() as conn:
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    values = [row[name] for name in names]
                    for i in json_at:
                        if values[i] is not None:
                            values[i] = Jsonb(values[i])
                    copy.write_row(values)


def fill(engine: Engine, records: int, days: float, seed: int, probe_interval_s: float) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    month = plan(end - timedelta(days=days), days)
    traffic = Traffic(month, records, seed)
    writer = Writer(engine)
    print(
        f"filling {month.start:%Y-%m-%d %H:%M} .. {month.end:%Y-%m-%d %H:%M} UTC, "
        f"{records:,} requests, seed {seed}"
    )

    started = time.perf_counter()
    for rows, verdicts in traffic.requests(BATCH):
        writer.write(requests_table, rows)
        writer.write(guard_verdicts_table, verdicts)
        _progress("requests", writer.counts["requests"], records, started)
    _done("requests", writer, started, ("requests", "guard_verdicts"))

    started = time.perf_counter()
    for chunk in _chunks(traffic.quality, BATCH):
        writer.write(quality_scores_table, chunk)
    _done("quality scores", writer, started, ("quality_scores",))

    started = time.perf_counter()
    for rows in probe_rows(month, traffic.rng, probe_interval_s, BATCH * 2):
        writer.write(probe_samples_table, rows)
        _progress("probe samples", writer.counts["probe_samples"], None, started)
    _done("probe samples", writer, started, ("probe_samples",))

    started = time.perf_counter()
    alerts, events, deliveries = alert_rows(month, traffic.rng)
    writer.write(alerts_table, alerts)
    writer.write(alert_events_table, events)
    writer.write(alert_deliveries_table, deliveries)
    _done("alerts", writer, started, ("alerts", "alert_events", "alert_deliveries"))

    build_rollups(engine, month.start, month.end + timedelta(minutes=1))


def build_rollups(engine: Engine, since: datetime, until: datetime) -> None:
    """Rebuild the rollups a day at a time (one transaction each), with progress."""
    started = time.perf_counter()
    day = since
    while day < until:
        end = min(day + timedelta(days=1), until)
        rollups.rebuild(engine, day, end)
        done = (end - since) / (until - since)
        print(f"  rollups: {done:.0%} after {time.perf_counter() - started:.1f} s", flush=True)
        day = end
    print(f"rollups rebuilt in {time.perf_counter() - started:.1f} s", flush=True)


def _chunks(rows: list[Row], size: int) -> Iterable[list[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _progress(what: str, done: int, total: int | None, started: float) -> None:
    elapsed = time.perf_counter() - started
    share = f" ({done / total:.0%})" if total else ""
    print(f"  {what}: {done:,}{share}, {done / max(elapsed, 1e-9):,.0f} rows/s", flush=True)


def _done(what: str, writer: Writer, started: float, tables: tuple[str, ...]) -> None:
    elapsed = time.perf_counter() - started
    rows = sum(writer.counts.get(t, 0) for t in tables)
    parts = ", ".join(f"{writer.counts.get(t, 0):,} {t}" for t in tables)
    print(
        f"{what}: {parts} in {elapsed:.1f} s ({rows / max(elapsed, 1e-9):,.0f} rows/s)", flush=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True, help="a Postgres or SQLite URL")
    parser.add_argument("--records", type=int, default=1_000_000, help="requests to write")
    parser.add_argument("--days", type=float, default=30.0, help="the span, ending now")
    parser.add_argument("--seed", type=int, default=9, help="the same seed gives the same data")
    parser.add_argument(
        "--probe-interval", type=float, default=10.0, help="seconds between probe samples"
    )
    args = parser.parse_args(argv)
    engine = make_engine(args.database_url)
    try:
        started = time.perf_counter()
        migrate.upgrade(engine)
        fill(engine, args.records, args.days, args.seed, args.probe_interval)
        print(f"total {time.perf_counter() - started:.1f} s")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
