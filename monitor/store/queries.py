"""The read side of the request table, for the admin API, the dashboard, reports and tests.

Plain functions over an `Engine`: each opens its own short connection. Filters are keyword
arguments with the same meaning everywhere: `outcome`, `model`, `principal`, `backend`, and a
half-open time range `since <= ts < until` (aware datetimes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.engine import Engine, RowMapping

from monitor.record import RequestRecord
from monitor.store.models import requests_table

_t = requests_table.c


def count_requests(
    engine: Engine,
    *,
    outcome: str | None = None,
    model: str | None = None,
    principal: str | None = None,
    backend: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many stored requests match every filter given."""
    query = select(func.count()).select_from(requests_table)
    query = query.where(
        *_conditions(
            outcome=outcome,
            model=model,
            principal=principal,
            backend=backend,
            since=since,
            until=until,
        )
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def recent_requests(
    engine: Engine,
    limit: int = 100,
    *,
    outcome: str | None = None,
    model: str | None = None,
    principal: str | None = None,
    backend: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RequestRecord]:
    """The newest matching requests, newest first (ties broken by id, so pages are stable)."""
    query: Select[Any] = (
        select(requests_table)
        .where(
            *_conditions(
                outcome=outcome,
                model=model,
                principal=principal,
                backend=backend,
                since=since,
                until=until,
            )
        )
        .order_by(_t.ts.desc(), _t.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(query).mappings()]


def get_request(engine: Engine, request_id: str) -> RequestRecord | None:
    """The stored request with this id, or None."""
    query = select(requests_table).where(_t.id == request_id)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _record(row) if row is not None else None


def request_ids(engine: Engine) -> set[str]:
    """Every stored request id (for tests and consistency checks on small tables)."""
    with engine.connect() as conn:
        return set(conn.execute(select(_t.id)).scalars())


def _conditions(
    *,
    outcome: str | None,
    model: str | None,
    principal: str | None,
    backend: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    equal = {"outcome": outcome, "model": model, "principal": principal, "backend": backend}
    for name, value in equal.items():
        if value is not None:
            conditions.append(_t[name] == value)
    if since is not None:
        conditions.append(_t.ts >= since)
    if until is not None:
        conditions.append(_t.ts < until)
    return conditions


def _record(row: RowMapping) -> RequestRecord:
    return RequestRecord.from_row(dict(row))
