"""The read side of the request and verdict tables, for the admin API, the dashboard, reports
and tests.

Plain functions over an `Engine`: each opens its own short connection. Filters are keyword
arguments with the same meaning everywhere: `outcome`, `model`, `principal`, `backend`,
`action`, `stage`, and a half-open time range `since <= ts < until` (aware datetimes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.engine import Connection, Engine, RowMapping

from monitor.record import RequestRecord
from monitor.store.models import guard_verdicts_table, requests_table

_t = requests_table.c
_v = guard_verdicts_table.c


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
    """How many stored records match every filter given: rows, not requests (with sampling a
    row may stand for several; `summaries` and `rollups` count requests by weight)."""
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
        records = [_record(row) for row in conn.execute(query).mappings()]
        _attach_verdicts(conn, records)
    return records


def get_request(engine: Engine, request_id: str) -> RequestRecord | None:
    """The stored request with this id, with its verdicts, or None."""
    query = select(requests_table).where(_t.id == request_id)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        record = _record(row)
        _attach_verdicts(conn, [record])
    return record


def request_exists(engine: Engine, request_id: str) -> bool:
    """Whether a request with this id is stored."""
    with engine.connect() as conn:
        return conn.execute(select(_t.id).where(_t.id == request_id)).first() is not None


def request_ids(engine: Engine) -> set[str]:
    """Every stored request id (for tests and consistency checks on small tables)."""
    with engine.connect() as conn:
        return set(conn.execute(select(_t.id)).scalars())


def verdicts_for(engine: Engine, request_id: str) -> list[dict[str, Any]]:
    """The verdicts stored with a request, in the order the record held them, each in the
    form it was recorded in (`Verdict.as_dict()`); an empty list for an unknown request."""
    query = select(*_VERDICT_FIELDS).where(_v.request_id == request_id).order_by(_v.id)
    with engine.connect() as conn:
        return [_verdict(row) for row in conn.execute(query).mappings()]


def count_verdicts(
    engine: Engine,
    *,
    action: str | None = None,
    stage: str | None = None,
    since: datetime | None = None,
) -> int:
    """How many stored verdicts match every filter given (`since` on the request's time)."""
    query = select(func.count()).select_from(guard_verdicts_table)
    if action is not None:
        query = query.where(_v.action == action)
    if stage is not None:
        query = query.where(_v.stage == stage)
    if since is not None:
        query = query.where(_v.ts >= since)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


# A verdict as recorded (`Verdict.as_dict()`); the other columns are derived from it.
_VERDICT_FIELDS = (
    _v.stage,
    _v.policy,
    _v.action,
    _v.findings,
    _v.latency_us,
    _v.classifier,
    _v.skipped,
    _v.findings_omitted,
)


def _verdict(row: Any) -> dict[str, Any]:
    """A stored verdict in its recorded form: `findings_omitted` only when some were."""
    verdict = dict(row)
    if not verdict.get("findings_omitted"):
        verdict.pop("findings_omitted", None)
    return verdict


def _attach_verdicts(conn: Connection, records: list[RequestRecord]) -> None:
    """Fill in each record's verdicts, for the whole page in one query."""
    if not records:
        return
    by_id = {record.id: record for record in records}
    query = (
        select(_v.request_id, *_VERDICT_FIELDS)
        .where(_v.request_id.in_(by_id))
        .order_by(_v.request_id, _v.id)
    )
    for row in conn.execute(query).mappings():
        verdict = _verdict(row)
        by_id[verdict.pop("request_id")].verdicts.append(verdict)


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
