"""Idempotent bulk inserts of request rows, and telling an outage from a bad row.

Every write is `INSERT ... ON CONFLICT (id) DO NOTHING`: a batch that reached the database but
whose acknowledgement was lost (connection cut at commit) is spooled and replayed, and the
replay then adds only what is missing. Each record is stored exactly once.

A record's guard verdicts (`row["verdicts"]`) go to `guard_verdicts` in the same transaction,
for the requests that insert reported as new (`RETURNING id`) and for no other: a request
already stored has its verdicts stored with it, so a replay adds none. A batch without verdicts
(the common case) skips all of that and costs what it did before there were verdicts.

Errors fall in two kinds. A *row error* (a value the schema refuses: too long, NULL where it
may not be, not serializable) will fail again on every retry, so the row is set aside. Anything
else (connection refused or dropped, timeouts, a missing table, locks) is an *outage*: the rows
are kept and retried later.

Also here: turning records into rows fast, rows read back from the spool into full rows, and a
record's verdicts into `guard_verdicts` rows. Both kinds of row are made storable on the way
(`monitor.store.storable`): a client's odd values are cleaned, never a reason to refuse a row.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import sqlite3
from collections.abc import Iterator
from typing import Any, Final, TypeVar

from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from monitor.record import RequestRecord
from monitor.store.models import guard_verdicts_table, requests_table
from monitor.store.storable import make_storable

Row = dict[str, Any]
T = TypeVar("T")


def upsert_insert(table: Table, dialect_name: str) -> Any:
    """An insert into `table` that can take ON CONFLICT clauses, for Postgres or SQLite (the
    databases the store supports)."""
    if dialect_name == "postgresql":
        return postgresql_insert(table)
    if dialect_name == "sqlite":
        return sqlite_insert(table)
    raise ValueError(f"unsupported database {dialect_name!r}: use Postgres or SQLite")


def insert_rows(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert rows in one transaction: on Postgres through COPY, on SQLite as INSERTs of many
    rows each, sent to the driver as they are (`_sqlite_rows`)."""
    if not rows:
        return
    if engine.dialect.name == "postgresql":
        _copy_rows(engine, rows)
        return
    with engine.begin() as conn:
        inserted = _sqlite_rows(conn, rows, returning=_any_verdicts(rows))
        if inserted is None:
            return
        verdicts = verdict_rows(rows, inserted)
        if verdicts:
            conn.execute(_INSERT_VERDICT, verdicts)


# The sizes of the chunks an INSERT of many rows takes. A statement of N rows is a text of its
# own, and SQLite keeps each text it saw compiled (Python's driver: the last 128 per
# connection): with batches of any size from 1 to 600 the recorder's connections held 130 MB
# of them. In chunks of the powers of two up to 512, a connection compiles at most ten texts,
# and a batch is as many statements as its size has bits set (1,000 rows: six).
CHUNK_SIZES: Final = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def fixed_chunks(rows: list[T], largest: int = CHUNK_SIZES[0]) -> Iterator[list[T]]:
    """`rows` in order, in chunks of the sizes of `CHUNK_SIZES` up to `largest`, largest
    first."""
    start = 0
    for size in CHUNK_SIZES:
        if size > largest:
            continue
        while len(rows) - start >= size:
            yield rows[start : start + size]
            start += size


_COLUMNS: Final = tuple(column.name for column in requests_table.columns)
_COLUMN_LIST: Final = ", ".join(_COLUMNS)
_STAGING = "requests_incoming"
_CREATE_STAGING: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE requests INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY: Final = f"COPY {_STAGING} ({_COLUMN_LIST}) FROM STDIN"
_MERGE: Final = (
    f"INSERT INTO requests ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGING} "
    "ON CONFLICT (id) DO NOTHING"
)
_MERGE_RETURNING: Final = f"{_MERGE} RETURNING id"
_VERDICT_COLUMNS: Final = tuple(c.name for c in guard_verdicts_table.columns if c.name != "id")
_JSON_VERDICT_COLUMNS: Final = ("findings", "skipped")
_COPY_VERDICTS: Final = f"COPY guard_verdicts ({', '.join(_VERDICT_COLUMNS)}) FROM STDIN"
_INSERT_VERDICT: Final = insert(guard_verdicts_table)


def _copy_rows(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """COPY into a per-connection staging table, then one INSERT ... ON CONFLICT DO NOTHING.

    COPY costs the proxy a third of the CPU of an executemany per row (measured: 15 against
    35-45 µs), and the staging table keeps the insert idempotent, which COPY alone is not.
    Driver errors are raised as SQLAlchemy's, so row errors and outages are told apart as
    for every other write.
    """
    import psycopg
    from psycopg.types.json import Jsonb

    with engine.begin() as conn:
        raw: Any = conn.connection.driver_connection
        statement = _COPY
        try:
            with raw.cursor() as cursor:
                cursor.execute(_CREATE_STAGING)
                with cursor.copy(_COPY) as copy:
                    for row in rows:
                        extra = row.get("extra")
                        values = [row.get(name) for name in _COLUMNS]
                        if extra is not None:
                            values[_EXTRA_INDEX] = Jsonb(extra)
                        copy.write_row(values)
                if not _any_verdicts(rows):
                    statement = _MERGE
                    cursor.execute(_MERGE)
                    return
                statement = _MERGE_RETURNING
                cursor.execute(_MERGE_RETURNING)
                verdicts = verdict_rows(rows, {request_id for (request_id,) in cursor})
                if not verdicts:
                    return
                # The requests are new, so are their verdicts: straight into the table.
                statement = _COPY_VERDICTS
                with cursor.copy(_COPY_VERDICTS) as copy:
                    for verdict in verdicts:
                        for name in _JSON_VERDICT_COLUMNS:
                            verdict[name] = Jsonb(verdict[name])
                        copy.write_row([verdict[name] for name in _VERDICT_COLUMNS])
        except psycopg.Error as exc:
            raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


_EXTRA_INDEX: Final = _COLUMNS.index("extra")


# -- SQLite: INSERTs of many rows, handed to the driver as they are --------------------------


def _sqlite_rows(conn: Connection, rows: list[Row], *, returning: bool) -> set[str] | None:
    """Insert `rows` into `requests` on SQLite in the transaction of `conn`, skipping ids
    already stored: INSERTs of many rows each, in chunks of `CHUNK_SIZES`. Returns the ids
    inserted when `returning` (for their verdicts), else None.

    Why INSERTs of many rows, not an executemany: an executemany steps SQLite once per row,
    and Python's driver lets go of the interpreter lock around each step and takes it back
    after, so the recorder's thread asks the event loop's thread for the lock once per row.
    On a busy proxy each ask waits for the loop's switch interval and then forces a hand-over:
    at 4,200 requests a second the recorder took 55-59 µs of CPU a request that way, and
    27-32 µs with INSERTs of many rows, and the event loop's thread 4 % less.

    Why straight to the driver, not through SQLAlchemy's insert ("insertmanyvalues", which
    builds the same statements): SQLAlchemy spent more of the recorder's CPU turning each row
    into parameters than SQLite spent storing it. Here each value still goes through its
    column type's own bind processor, so what is stored is what SQLAlchemy's insert stores
    (a test compares them column by column). Errors come out as SQLAlchemy's: a value no
    processor takes as a `StatementError`, the database's refusals as its `DBAPIError` kinds,
    so row errors and outages are told apart as for every other write.
    """
    raw: Any = conn.connection.driver_connection
    largest = _largest_chunk(raw)
    converters = _sqlite_converters(conn.dialect)
    values: list[list[Any]] = []
    for row in rows:
        value = [row.get(name) for name in _COLUMNS]
        try:
            for index, process in converters:
                value[index] = process(value[index])
        except Exception as exc:  # what SQLAlchemy raises for a value its type cannot bind
            raise StatementError(
                f"request {row.get('id')!r}: a value cannot be stored ({exc})", None, None, exc
            ) from exc
        values.append(value)
    inserted: set[str] = set()
    statement = ""
    cursor = raw.cursor()
    try:
        for chunk in fixed_chunks(values, largest):
            statement = _sqlite_insert_text(len(chunk), returning)
            cursor.execute(statement, [v for value in chunk for v in value])
            if returning:
                inserted.update(request_id for (request_id,) in cursor.fetchall())
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()
    return inserted if returning else None


@functools.cache
def _sqlite_converters(dialect: Dialect) -> tuple[tuple[int, Any], ...]:
    """(column index, bind processor) of each `requests` column whose type converts values on
    the way in (timestamps to text, booleans to integers, JSON to text), for `dialect`."""
    converters = []
    for index, column in enumerate(requests_table.columns):
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            converters.append((index, process))
    return tuple(converters)


@functools.cache
def _sqlite_insert_text(count: int, returning: bool) -> str:
    row = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    text = f"INSERT INTO requests ({_COLUMN_LIST}) VALUES {', '.join([row] * count)} "
    text += "ON CONFLICT (id) DO NOTHING"
    return text + " RETURNING id" if returning else text


def _largest_chunk(raw: Any) -> int:
    """The largest of `CHUNK_SIZES` whose statement stays within this connection's limit of
    parameters (250,000 in Debian's SQLite, 32,766 by default, 999 before SQLite 3.32)."""
    try:
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except (AttributeError, sqlite3.Error):  # Python before 3.11: assume the oldest limit
        limit = 999
    return next((size for size in CHUNK_SIZES if size * len(_COLUMNS) <= limit), 1)


def insert_isolating(
    engine: Engine, rows: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], str]]:
    """Insert rows; when one is refused, insert the others and return the refused with why.

    Raises on an outage (see `is_row_error`): then none, some or all rows may be stored, and
    the caller keeps all of them for a later (idempotent) retry.
    """
    try:
        insert_rows(engine, rows)
        return []
    except StatementError as exc:
        if not is_row_error(exc):
            raise
    rejected: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        try:
            insert_rows(engine, [row])
        except StatementError as exc:
            if not is_row_error(exc):
                raise
            rejected.append((row, describe_error(exc)))
    return rejected


def is_row_error(exc: BaseException) -> bool:
    """Whether the database refused the data itself (so retrying the same row cannot help)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    # A StatementError that is not a DBAPIError failed before reaching the database: a value
    # the column type could not convert.
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


_FIELDS: Final = tuple(field.name for field in dataclasses.fields(RequestRecord))
_get_fields: Final = operator.attrgetter(*_FIELDS)


def record_row(record: RequestRecord) -> Row:
    """`record.to_row()`, made storable, without looking the fields up again for every record
    (hot path)."""
    return make_storable(dict(zip(_FIELDS, _get_fields(record), strict=True)))


def verdict_rows(rows: list[Row], inserted: set[str]) -> list[Row]:
    """The `guard_verdicts` rows of the request rows whose id is in `inserted`.

    A request id found twice in `rows` was inserted once: only its first row's verdicts are
    taken. A verdict that is not a `Verdict.as_dict()` raises a `StatementError`, which
    `is_row_error` takes for a row error: its record is set aside, not retried forever.
    """
    pending = set(inserted)
    out: list[Row] = []
    for row in rows:
        verdicts = row.get("verdicts")
        if not verdicts or row.get("id") not in pending:
            continue
        pending.discard(row["id"])
        try:
            out.extend(_verdict_row(row["id"], row.get("ts"), verdict) for verdict in verdicts)
        except (AttributeError, TypeError, ValueError) as exc:
            raise StatementError(
                f"request {row['id']!r}: not a guard verdict ({exc})", None, None, exc
            ) from exc
    return out


def _verdict_row(request_id: str, ts: Any, verdict: dict[str, Any]) -> Row:
    action = verdict.get("action")
    findings = verdict.get("findings") or []
    # The deciding finding, as `Verdict.reason`: the first one whose action is the verdict's.
    deciding = None
    if action != "allow":
        deciding = next((f for f in findings if f.get("action") == action), None)
    scores = [f["score"] for f in findings if f.get("score") is not None]
    return {
        "request_id": request_id,
        "ts": ts,
        "stage": verdict.get("stage"),
        "policy": verdict.get("policy"),
        "action": action,
        "category": deciding.get("category") if deciding else None,
        "rule": deciding.get("rule") if deciding else None,
        "score": max(scores) if scores else None,
        "classifier": verdict.get("classifier"),
        "latency_us": verdict.get("latency_us"),
        "findings": list(findings),
        "skipped": list(verdict.get("skipped") or []),
        "findings_omitted": int(verdict.get("findings_omitted") or 0),
    }


def _any_verdicts(rows: list[Row]) -> bool:
    return any(row.get("verdicts") for row in rows)


def normalize_rows(rows: list[Row]) -> tuple[list[Row], list[tuple[Row, str]]]:
    """Rows with every column and defaults filled in (a spool line may predate a new field),
    and, apart, the rows that are not request records at all, with why."""
    good: list[Row] = []
    bad: list[tuple[Row, str]] = []
    for row in rows:
        try:
            good.append(make_storable(RequestRecord.from_row(row).to_row()))
        except TypeError as exc:
            bad.append((row, f"not a request record: {exc}"))
    return good, bad


def describe_error(exc: BaseException) -> str:
    """One short line for logs and `last_error`: the driver's message, without SQL or params."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first_line}"[:300]
