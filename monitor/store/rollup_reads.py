"""Planning and gathering a window's rollups: which tier each part of each step comes from.

`plan` cuts every step of a window into raw, minute and hour ranges (see `monitor.store.rollups`
for the picture); `gather` reads them, from the three sources, into one `Accumulator` keyed by
step, so a reader sees the same figures whichever source a minute came from.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ColumnElement, Text, and_, cast, func, null, or_, select
from sqlalchemy.engine import Connection, Engine

from monitor.store.rollup_build import sealed_until
from monitor.store.rollup_kinds import (
    HOUR,
    HOUR_S,
    MINUTE,
    MINUTE_S,
    Accumulator,
    Kind,
    add_raw_rows,
    ceil_to,
    floor_to,
)

HOURLY_FROM: Final = timedelta(hours=3)  # windows this long or longer read hour rollups
# Time ranges OR-ed in one query. Postgres scans the index once per range (a bitmap OR);
# SQLite does not, and scans the table testing every range on every row, so it gets one
# query per range (a 30-day series from any minute: 5.8 s as one query, 1.6 s as one per range).
_RANGES_PER_QUERY: Final = {"postgresql": 400}


Ranges = list[tuple[datetime, datetime]]


def aligned_since(until: datetime, span: timedelta, step: timedelta) -> datetime:
    """The start of a window of at least `span` ending at `until` whose steps begin at whole
    multiples of `step` (since the epoch, UTC): with whole-hour steps a long series then reads
    hour rollups alone, where a window starting at any minute reads minute rollups for the
    partial hour at every step boundary (several times slower at 30 days)."""
    return floor_to(until - span, step)


def step_starts(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """The start of every step of the window (the last step ends at `until`)."""
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, not {step}")
    starts: list[datetime] = []
    start = since
    while start < until:
        starts.append(start)
        start += step
    return starts


def plan(
    starts: Sequence[datetime], until: datetime, watermark: datetime, *, hours: bool
) -> dict[str, Ranges]:
    """Which source each part of each step is read from: `raw`, `minute` or `hour` ranges, in
    time order, adjacent ranges joined. A rollup range never straddles a step boundary."""
    tiers: dict[str, Ranges] = {"raw": [], "minute": [], "hour": []}

    def put(tier: str, start: datetime, end: datetime) -> None:
        if start >= end:
            return
        ranges = tiers[tier]
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))

    bounds = [*starts, until]
    for start, end in itertools.pairwise(bounds):
        sealed_end = min(end, watermark)
        first, last = ceil_to(start, MINUTE), floor_to(sealed_end, MINUTE)
        if start < sealed_end and first < last:
            put("raw", start, first)
            first_hour, last_hour = ceil_to(first, HOUR), floor_to(last, HOUR)
            if hours and first_hour < last_hour:
                put("minute", first, first_hour)
                put("hour", first_hour, last_hour)
                put("minute", last_hour, last)
            else:
                put("minute", first, last)
            put("raw", last, sealed_end)
        elif start < sealed_end:
            put("raw", start, sealed_end)
        put("raw", max(start, watermark), end)
    return tiers


def gather(
    engine: Engine,
    kind: Kind,
    since: datetime,
    until: datetime,
    step: timedelta,
    filters: dict[str, Any],
    *,
    columns: Collection[str] | None = None,
    partial: tuple[dict[str, Any], Collection[str], Collection[str]] | None = None,
    keep: Sequence[str] | None = None,
) -> tuple[list[datetime], Accumulator]:
    """The kind's rollup values of every step, keyed `(step index, *keys)`.

    Only `columns` of the rollup rows are read (all by default); with `partial`, `(where,
    some, others)`, the columns `some` only of the rows matching `where` (and `others` of
    all). Columns not read count as empty. Keys are only the `keep` ones (all by default):
    the fewer, the fewer groups to merge.
    """
    starts = step_starts(since, until, step)
    accumulator = Accumulator(kind)
    if not starts:
        return starts, accumulator

    def index_of(t: datetime) -> int:
        return bisect.bisect_right(starts, t) - 1

    with engine.connect() as conn:
        tiers = plan(starts, until, sealed_until(conn), hours=until - since >= HOURLY_FROM)
        for resolution_s, tier in ((HOUR_S, "hour"), (MINUTE_S, "minute")):
            for ranges in _batches(tiers[tier], conn.dialect.name):
                if partial is None:
                    _add_rollup_rows(conn, accumulator, resolution_s, ranges, filters, index_of,
                                     columns, keep, single_step=len(starts) == 1)  # fmt: skip
                    continue
                where, some, others = partial
                _add_rollup_rows(conn, accumulator, resolution_s, ranges, filters, index_of,
                                 others, keep)  # fmt: skip
                if all(where.values()):
                    _add_rollup_rows(conn, accumulator, resolution_s, ranges,
                                     {**filters, **where}, index_of, some, keep)  # fmt: skip
        for ranges in _batches(tiers["raw"], conn.dialect.name):
            add_raw_rows(conn, accumulator, functools.partial(_within, ranges=ranges),
                         index_of, filters, keep)  # fmt: skip
    return starts, accumulator


def _add_rollup_rows(
    conn: Connection,
    accumulator: Accumulator,
    resolution_s: int,
    ranges: Ranges,
    filters: dict[str, Any],
    index_of: Any,
    columns: Collection[str] | None,
    keep: Sequence[str] | None,
    *,
    single_step: bool = False,
) -> None:
    kind = accumulator.kind
    c = kind.table.c
    json_columns = {name for name, op in kind.values if op in ("hist", "bins")}

    def read(name: str) -> Any:
        if columns is not None and name not in columns:
            return null()
        if name in json_columns:  # parsed here, by orjson: several times faster
            return cast(c[name], Text)
        return c[name]

    keys = [c[k] for k in (kind.keys if keep is None else keep)]
    query = select(c.bucket, *keys, *map(read, kind.columns())).where(
        c.resolution_s == resolution_s, _within(c.bucket, ranges)
    )
    for name, value in filters.items():
        query = query.where(c[name].in_(value) if isinstance(value, list) else c[name] == value)
    width = 1 + len(keys)
    add = accumulator.add_rollup
    if columns is None and not json_columns and single_step:
        # plain numbers into one step: the database sums them (a 30-day window of a busy
        # store holds hundreds of thousands of hour rows of principals)
        totals = [_aggregate(op, c[name]) for name, op in kind.values]
        query = query.with_only_columns(*keys, *totals).group_by(*keys)
        for row in conn.execute(query):
            add((0, *row[: width - 1]), [_plain(v) for v in row[width - 1 :]])
        return
    for row in conn.execute(query):
        add((index_of(row[0]), *row[1:width]), row[width:])


def _aggregate(op: str, column: Any) -> Any:
    if op == "sum":
        return func.sum(column)
    return func.min(column) if op == "min" else func.max(column)


def _plain(value: Any) -> Any:
    """Postgres sums a BIGINT column as NUMERIC: back to an int."""
    return int(value) if isinstance(value, Decimal) else value


def _within(column: ColumnElement[datetime], ranges: Ranges) -> ColumnElement[bool]:
    return or_(*(and_(column >= start, column < end) for start, end in ranges))


def _batches(ranges: Ranges, dialect: str) -> list[Ranges]:
    size = _RANGES_PER_QUERY.get(dialect, 1)
    return [ranges[i : i + size] for i in range(0, len(ranges), size)]
