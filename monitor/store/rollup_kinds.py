"""What the rollups hold, and how rows of each kind are read and merged.

A `Kind` is one rollup table: its key columns and its value columns, each with how two rows
merge (`sum`, `min`, `max`, `hist`: a log-bucket histogram, JSON, with its sum beside it,
`bins`: the 20 linear bins of classifier scores). An `Accumulator` builds rollup rows from raw
rows (`add_raw`) or merges stored rollup rows (`add_rollup`); `RAW` says where each kind's raw
rows come from. Both the builder (`rollup_build`) and the readers (`rollups`) use them.

Raw request rows carry a weight (record sampling: one stored success stands for N, see
`monitor.store.sampling`); verdicts take their request's. A raw row adds its weight where it
would add 1 (counts, histogram buckets, score bins) and its values times its weight to sums,
so a rollup holds the figures of every request, stored or not, and stays whole numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Connection

from monitor.store.histogram import bucket_index
from monitor.store.models import (
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
    rollup_principals_table,
    rollup_probes_table,
    rollup_quality_table,
    rollup_requests_table,
    rollup_verdicts_table,
)

MINUTE: Final = timedelta(minutes=1)
HOUR: Final = timedelta(hours=1)
MINUTE_S: Final = 60
HOUR_S: Final = 3600
SCORE_BINS: Final = 20
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def floor_to(t: datetime, size: timedelta) -> datetime:
    """`t` rounded down to a multiple of `size` since the epoch (UTC)."""
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    if size == MINUTE:  # the common case, once per raw row: 4x faster than the arithmetic
        return t.replace(second=0, microsecond=0)
    if size == HOUR:
        return t.replace(minute=0, second=0, microsecond=0)
    return t - (t - EPOCH) % size


def ceil_to(t: datetime, size: timedelta) -> datetime:
    floor = floor_to(t, size)
    return floor if floor == t else floor + size


# -- what a rollup row holds, and how rows merge -------------------------------------------------
# ops: "sum" adds; "min"/"max"; "hist" a log-bucket histogram (JSON column plus `<name>_sum`);
# "bins" the 20 linear score bins of [0, 1] (a JSON column, no sum).


@dataclass(frozen=True, slots=True)
class Kind:
    table: Table
    keys: tuple[str, ...]
    values: tuple[tuple[str, str], ...]  # (column, op)

    def columns(self) -> list[str]:
        out: list[str] = []
        for name, op in self.values:
            out.append(name)
            if op == "hist":
                out.append(f"{name}_sum")
        return out


REQUESTS: Final = Kind(
    rollup_requests_table,
    ("model", "backend", "outcome"),
    (
        ("requests", "sum"),
        ("streams", "sum"),
        ("prompt_tokens", "sum"),
        ("completion_tokens", "sum"),
        ("latency_ms", "hist"),
        ("ttft_ms", "hist"),
        ("itl_ms", "hist"),
        ("tokens_per_s", "hist"),
        ("guard_ms", "hist"),
    ),
)
PRINCIPALS: Final = Kind(
    rollup_principals_table,
    ("principal", "route", "outcome"),
    (("requests", "sum"), ("prompt_tokens", "sum"), ("completion_tokens", "sum")),
)
VERDICTS: Final = Kind(
    rollup_verdicts_table,
    ("model", "backend", "stage", "policy", "action", "category", "rule"),
    (("verdicts", "sum"), ("scores", "bins")),
)
PROBES: Final = Kind(
    rollup_probes_table,
    ("probe", "metric", "target"),
    (("samples", "sum"), ("value_sum", "sum"), ("value_min", "min"), ("value_max", "max")),
)
QUALITY: Final = Kind(
    rollup_quality_table, ("scorer", "metric"), (("scores", "sum"), ("value_sum", "sum"))
)
KINDS: Final = (REQUESTS, PRINCIPALS, VERDICTS, PROBES, QUALITY)
# Kinds whose raw rows the database can sum exactly: integer sums only (`add_raw_minutes`).
SQL_SUMS: Final = frozenset({PRINCIPALS})


def score_bin(score: float) -> int:
    """The score bin (0..19) of a classifier score in [0, 1]."""
    return min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)


class Accumulator:
    """Rollup rows being built: `(bucket, *keys)` → values, in the order of `kind.values`
    (a histogram as `[{index: count}, sum]`)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.groups: dict[tuple[Any, ...], list[Any]] = {}
        self._ops = [op for _, op in kind.values]

    def _group(self, key: tuple[Any, ...]) -> list[Any]:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = [_empty(op) for op in self._ops]
        return group

    def add_raw(self, key: tuple[Any, ...], values: Sequence[Any], weight: int = 1) -> None:
        """One raw row standing for `weight` rows: a count of 1, plain numbers, a histogram's
        value (None: not counted), each counted `weight` times."""
        group = self._group(key)
        for i, op in enumerate(self._ops):
            value = values[i]
            if value is None:
                continue
            if op == "sum":
                group[i] += value * weight
            elif op == "hist":
                if value == value:  # not NaN
                    counts, index = group[i][0], bucket_index(value)
                    counts[index] = counts.get(index, 0) + weight
                    group[i][1] += value * weight
            elif op == "bins":
                counts, index = group[i], score_bin(value)
                counts[index] = counts.get(index, 0) + weight
            elif op == "min":
                group[i] = value if group[i] is None else min(group[i], value)
            else:  # max
                group[i] = value if group[i] is None else max(group[i], value)

    def add_rollup(self, key: tuple[Any, ...], values: Sequence[Any]) -> None:
        """One stored rollup row's values, in `kind.columns()` order."""
        group = self._group(key)
        column = 0
        for i, op in enumerate(self._ops):
            value = values[column]
            column += 1
            if op == "hist":
                _merge_counts(group[i][0], value)
                group[i][1] += values[column] or 0.0
                column += 1
            elif op == "bins":
                _merge_counts(group[i], value)
            elif value is None:
                continue
            elif op == "sum":
                group[i] += value
            elif op == "min":
                group[i] = value if group[i] is None else min(group[i], value)
            else:
                group[i] = value if group[i] is None else max(group[i], value)

    def rows(self, resolution_s: int) -> Iterator[dict[str, Any]]:
        names = ("bucket", *self.kind.keys)
        for key, group in self.groups.items():
            row = dict(zip(names, key, strict=True))
            row["resolution_s"] = resolution_s
            for (name, op), value in zip(self.kind.values, group, strict=True):
                if op == "hist":
                    row[name] = {str(i): n for i, n in sorted(value[0].items())}
                    row[f"{name}_sum"] = value[1]
                elif op == "bins":
                    row[name] = {str(i): n for i, n in sorted(value.items())}
                else:
                    row[name] = value
            yield row


def _empty(op: str) -> Any:
    if op == "hist":
        return [{}, 0.0]
    if op == "bins":
        return {}
    return 0 if op == "sum" else None


def _merge_counts(counts: dict[int, int], data: dict[str, int] | str | None) -> None:
    parsed: dict[str, int] = orjson.loads(data) if isinstance(data, str) else (data or {})
    for key, n in parsed.items():
        index = int(key)
        counts[index] = counts.get(index, 0) + n


# -- raw rows --------------------------------------------------------------------------------

_r = requests_table.c
_v = guard_verdicts_table.c
_p = probe_samples_table.c
_q = quality_scores_table.c
_STREAM_ROWS: Final = 5000


def stream_rows(conn: Connection, query: Any) -> Iterator[Any]:
    result = conn.execute(query.execution_options(yield_per=_STREAM_ROWS))
    try:
        yield from result
    finally:
        result.close()


@dataclass(frozen=True, slots=True)
class RawSource:
    """Where a kind's raw rows come from: `query` selects `ts, *keys, *values` (without the
    leading count of 1, which every row adds), `ts` is the time column, `columns` the raw
    column of each key a reader may filter on, `weight` the requests a row stands for (None:
    each row is one)."""

    query: Select[Any]
    ts: ColumnElement[datetime]
    columns: dict[str, ColumnElement[Any]]
    weight: ColumnElement[int] | None = None


RAW: Final[dict[Kind, RawSource]] = {
    REQUESTS: RawSource(
        select(
            _r.ts,
            func.coalesce(_r.model, ""),
            func.coalesce(_r.backend, ""),
            _r.outcome,
            case((_r.stream, 1), else_=0),
            func.coalesce(_r.prompt_tokens, 0),
            func.coalesce(_r.completion_tokens, 0),
            _r.latency_ms,
            _r.ttft_ms,
            _r.itl_ms,
            _r.tokens_per_s,
            _r.guard_ms,
        ),
        _r.ts,
        {"model": _r.model, "backend": _r.backend, "outcome": _r.outcome},
        _r.weight,
    ),
    PRINCIPALS: RawSource(
        select(
            _r.ts,
            func.coalesce(_r.principal, ""),
            _r.route,
            _r.outcome,
            func.coalesce(_r.prompt_tokens, 0),
            func.coalesce(_r.completion_tokens, 0),
        ),
        _r.ts,
        {"principal": _r.principal},
        _r.weight,
    ),
    VERDICTS: RawSource(
        select(
            _v.ts,
            func.coalesce(_r.model, ""),
            func.coalesce(_r.backend, ""),
            _v.stage,
            _v.policy,
            _v.action,
            func.coalesce(_v.category, ""),
            func.coalesce(_v.rule, ""),
            _v.score,
        ).join_from(guard_verdicts_table, requests_table, _v.request_id == _r.id),
        _v.ts,
        {"model": _r.model, "backend": _r.backend},
        _r.weight,
    ),
    PROBES: RawSource(
        select(_p.ts, _p.probe, _p.metric, _p.target, _p.value, _p.value, _p.value).where(
            _p.value.is_not(None)
        ),
        _p.ts,
        {"metric": _p.metric},
    ),
    QUALITY: RawSource(
        select(_q.ts, _q.scorer, _q.metric, _q.value),
        _q.ts,
        {"scorer": _q.scorer, "metric": _q.metric},
    ),
}


def add_raw_rows(
    conn: Connection,
    accumulator: Accumulator,
    where: Callable[[ColumnElement[datetime]], ColumnElement[bool]],
    cut: Callable[[datetime], Any],
    filters: dict[str, Any] | None = None,
    keep: Sequence[str] | None = None,
    *,
    weighted: bool = True,
) -> None:
    """Aggregate the kind's raw rows matching `where(ts)` (and `filters`: key → value, or a
    list of values) into `accumulator`, their time replaced by `cut(ts)`, their keys by the
    `keep` ones (all by default), each counted as many times as its request's weight
    (`weighted=False`: once, for a schema before the weight column, migration 0005)."""
    kind = accumulator.kind
    source = RAW[kind]
    weight = source.weight if weighted and source.weight is not None else literal(1)
    query = source.query.add_columns(weight).where(where(source.ts))
    for name, value in (filters or {}).items():
        column = source.columns[name]
        query = query.where(column.in_(value) if isinstance(value, list) else column == value)
    width = 1 + len(kind.keys)
    add = accumulator.add_raw
    if keep is None:
        for row in stream_rows(conn, query):
            add((cut(row[0]), *row[1:width]), (1, *row[width:-1]), row[-1])
        return
    positions = [1 + kind.keys.index(name) for name in keep]
    for row in stream_rows(conn, query):
        add((cut(row[0]), *(row[i] for i in positions)), (1, *row[width:-1]), row[-1])


# -- raw rows by the minute, for the rollup builder -----------------------------------------


def minute_of(ts: ColumnElement[datetime], dialect_name: str) -> ColumnElement[Any]:
    """The minute `ts` falls in, worked out by the database: on SQLite the first 16 characters
    of the stored text (`YYYY-MM-DD HH:MM`; timestamps are stored in UTC), on Postgres the
    timestamp in UTC truncated to its minute."""
    if dialect_name == "postgresql":
        return func.date_trunc("minute", func.timezone("UTC", ts))
    return func.substr(ts, 1, 16)


def _sum64(value: ColumnElement[Any]) -> ColumnElement[int]:
    """SUM as a 64-bit integer (Postgres sums a bigint into a numeric, which the driver gives
    as a Decimal)."""
    return cast(func.sum(value), BigInteger)


def _minutes() -> Callable[[Any], datetime]:
    """A minute as `minute_of` gives it → an aware UTC datetime, each distinct one worked out
    once (a minute's thousands of rows share it)."""
    seen: dict[Any, datetime] = {}

    def cut(value: Any) -> datetime:
        minute = seen.get(value)
        if minute is None:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
            minute = seen[value] = parsed.replace(tzinfo=UTC)
        return minute

    return cut


def add_raw_minutes(
    conn: Connection,
    accumulator: Accumulator,
    since: datetime,
    until: datetime,
    *,
    weighted: bool = True,
) -> None:
    """Aggregate the kind's raw rows of `since <= ts < until` into `accumulator` by the minute:
    what `add_raw_rows` does with a minute's floor for `cut`, for less work on each row.

    The database gives each row's minute, so Python neither parses nor floors a timestamp
    per row. A kind of integer sums only (`SQL_SUMS`: requests by principal, the requests
    table's second pass) is summed by the database, grouped by minute and keys, and taken
    as rollup rows: the sums are exact, so the rows are those of the raw path."""
    kind = accumulator.kind
    source = RAW[kind]
    weight = source.weight if weighted and source.weight is not None else literal(1)
    columns = list(source.query.selected_columns)
    minute = minute_of(source.ts, conn.dialect.name)
    width = 1 + len(kind.keys)
    keys, values = columns[1:width], columns[width:]
    where = and_(source.ts >= since, source.ts < until)
    cut = _minutes()
    if kind in SQL_SUMS:
        # in 64 bits: a token count times a sampling weight can pass a 32-bit integer
        sums = [_sum64(weight), *(_sum64(value * cast(weight, BigInteger)) for value in values)]
        query = source.query.with_only_columns(minute, *keys, *sums).where(where)
        for row in conn.execute(query.group_by(minute, *keys)):
            accumulator.add_rollup((cut(row[0]), *row[1:width]), row[width:])
        return
    query = source.query.with_only_columns(minute, *keys, *values, weight).where(where)
    add = accumulator.add_raw
    for row in stream_rows(conn, query):
        add((cut(row[0]), *row[1:width]), (1, *row[width:-1]), row[-1])
