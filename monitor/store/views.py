"""The dashboard's read side beside the rollups: alerts and their outbox, the request list and
one record in full, recent verdicts, the lowest-scoring answers, and the latest probe values.

Plain functions over an `Engine`, each in one short connection; what they return is plain
dataclasses, so pages never see a row or a column. `STORE_ERRORS` is what a caller catches to
tell "the database is down" from a bug. Every list is bounded (`limit`, `page_size`): no
function here reads a window's raw rows whole.

Acknowledging writes the alert row and an `acknowledged` event in one transaction. The alert
worker keeps active alerts in memory and rewrites their rows at every step, so it reads the
stored acknowledgements back before each step (`store.alerts.stored_acknowledgements`), and
its row upsert never clears one: an acknowledgement made here survives the next step and
appears in the resolve notification, as one made through the admin API does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.record import RequestRecord
from monitor.store import queries
from monitor.store.alerts import ACTIVE_STATES, Delivery, list_deliveries
from monitor.store.models import (
    alert_deliveries_table,
    alert_events_table,
    alerts_table,
    guard_verdicts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
)
from monitor.store.samples import QualityScore, quality_scores_for

# What a read raises when the database is unreachable or refuses: catch these, not Exception.
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)

_r = requests_table.c
_v = guard_verdicts_table.c
_q = quality_scores_table.c
_p = probe_samples_table.c
_a = alerts_table.c
_e = alert_events_table.c
_d = alert_deliveries_table.c


# --- alerts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert episode as the Alerts page lists it."""

    fingerprint: str
    rule: str
    severity: str
    labels: dict[str, str]
    state: str
    value: float | None
    threshold: float | None
    pending_since: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    description: str


@dataclass(frozen=True, slots=True)
class AlertEventView:
    fingerprint: str
    rule: str
    kind: str
    at: datetime
    value: float | None
    by: str | None


@dataclass(frozen=True, slots=True)
class AlertBoard:
    """Firing and pending alerts (all of them), resolved ones (the newest), recent events."""

    firing: list[AlertView]
    pending: list[AlertView]
    resolved: list[AlertView]
    events: list[AlertEventView]


def alert_board(engine: Engine, *, resolved_limit: int = 50, event_limit: int = 200) -> AlertBoard:
    """Active alerts, the newest resolved ones, and the newest events (newest first)."""
    active = select(alerts_table).where(_a.state.in_(ACTIVE_STATES)).order_by(_a.pending_since)
    resolved = (
        select(alerts_table)
        .where(_a.state == "resolved")
        .order_by(_a.resolved_at.desc(), _a.id.desc())
        .limit(resolved_limit)
    )
    events = select(alert_events_table).order_by(_e.at.desc(), _e.id.desc()).limit(event_limit)
    with engine.connect() as conn:
        active_rows = [_alert_view(row) for row in conn.execute(active).mappings()]
        resolved_rows = [_alert_view(row) for row in conn.execute(resolved).mappings()]
        event_rows = [
            AlertEventView(r.fingerprint, r.rule, r.kind, r.at, r.value, r.by)
            for r in conn.execute(events)
        ]
    return AlertBoard(
        firing=[a for a in active_rows if a.state == "firing"],
        pending=[a for a in active_rows if a.state == "pending"],
        resolved=resolved_rows,
        events=event_rows,
    )


def acknowledge_alert(engine: Engine, fingerprint: str, by: str, now: datetime) -> bool:
    """Acknowledge the active episode of `fingerprint` as `by` at `now`; False when there is
    none, or it is acknowledged already (the first acknowledgement stands)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(_a.id, _a.rule, _a.value, _a.snapshot).where(
                _a.fingerprint == fingerprint,
                _a.state.in_(ACTIVE_STATES),
                _a.acknowledged_at.is_(None),
            )
        ).first()
        if row is None:
            return False
        snapshot = dict(row.snapshot)
        snapshot.update(acknowledged_at=now.isoformat(), acknowledged_by=by)
        changed = conn.execute(
            update(alerts_table)
            .where(_a.id == row.id, _a.acknowledged_at.is_(None))
            .values(acknowledged_at=now, acknowledged_by=by, snapshot=snapshot, updated_at=now)
        ).rowcount
        if not changed:
            return False
        conn.execute(
            insert(alert_events_table).values(
                fingerprint=fingerprint, rule=row.rule, kind="acknowledged", at=now,
                value=row.value, by=by,
            )
        )  # fmt: skip
    return True


@dataclass(frozen=True, slots=True)
class DeliveryBoard:
    """The webhook outbox: rows by status, and the newest rows and failures."""

    counts: dict[str, int]
    recent: list[Delivery]
    failures: list[Delivery]  # failed for good, or pending again after a failed attempt


def delivery_board(engine: Engine, *, limit: int = 50) -> DeliveryBoard:
    with engine.connect() as conn:
        counts = {
            status: int(n)
            for status, n in conn.execute(select(_d.status, func.count()).group_by(_d.status)).all()
        }
    failed = list_deliveries(engine, status="failed", limit=limit)
    retrying = [
        d
        for d in list_deliveries(engine, status="pending", limit=limit)
        if d.last_error is not None or d.last_status is not None
    ]
    failures = sorted(failed + retrying, key=lambda d: d.id, reverse=True)[:limit]
    return DeliveryBoard(counts, list_deliveries(engine, limit=limit), failures)


def _alert_view(row: Any) -> AlertView:
    snapshot = row["snapshot"] or {}
    rule = snapshot.get("rule") or {}
    return AlertView(
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        severity=row["severity"],
        labels=dict(row["labels"]),
        state=row["state"],
        value=row["value"],
        threshold=row["threshold"],
        pending_since=row["pending_since"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        description=str(rule.get("description") or ""),
    )


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of the request list, newest first."""

    records: list[RequestRecord]
    total: int  # matching records, every page
    page: int  # 0-based
    page_size: int
    # the requests those records stand for: `total`, unless sampling stored one success in N
    represented: int = 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def search_requests(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    principal: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    text: str | None = None,
    page: int = 0,
    page_size: int = 50,
) -> RequestPage:
    """Records matching every filter given; `text` matches a substring of the id, route,
    model, principal or error code (case-insensitive). Content is never searched."""
    conditions: list[ColumnElement[bool]] = []
    for column, value in ((_r.outcome, outcome), (_r.principal, principal), (_r.model, model),
                          (_r.backend, backend)):  # fmt: skip
        if value:
            conditions.append(column == value)
    if since is not None:
        conditions.append(_r.ts >= since)
    if until is not None:
        conditions.append(_r.ts < until)
    if text:
        pattern = f"%{_escape_like(text.strip().lower())}%"
        searched = (_r.id, _r.route, _r.model, _r.principal, _r.error_code)
        conditions.append(
            or_(*(func.lower(cast(c, String)).like(pattern, escape="\\") for c in searched))
        )
    page = max(0, page)
    query = (
        select(requests_table)
        .where(*conditions)
        .order_by(_r.ts.desc(), _r.id.desc())
        .offset(page * page_size)
        .limit(page_size)
    )
    counted = select(func.count(), func.coalesce(func.sum(_r.weight), 0)).where(*conditions)
    with engine.connect() as conn:
        total, represented = conn.execute(counted).one()
        records = [RequestRecord.from_row(dict(row)) for row in conn.execute(query).mappings()]
    return RequestPage(records, int(total), page, page_size, int(represented))


@dataclass(frozen=True, slots=True)
class RequestDetail:
    """One record in full: its verdicts (inside `record`) and its quality scores."""

    record: RequestRecord
    scores: list[QualityScore] = field(default_factory=list)


def request_detail(engine: Engine, request_id: str) -> RequestDetail | None:
    record = queries.get_request(engine, request_id)
    if record is None:
        return None
    return RequestDetail(record, quality_scores_for(engine, [request_id]))


# --- verdicts and quality -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictView:
    """One verdict, with what the record it belongs to allows to show of the content."""

    request_id: str
    ts: datetime
    stage: str
    policy: str
    action: str
    category: str | None
    rule: str | None
    score: float | None
    classifier: str
    prompt_hash: str | None
    response_hash: str | None
    prompt_text: str | None
    response_text: str | None


def recent_verdicts(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    actions: tuple[str, ...] = ("block", "redact", "flag"),
    limit: int = 50,
    model: str | None = None,
    backend: str | None = None,
) -> list[VerdictView]:
    """The newest verdicts of the window whose action is one of `actions`, newest first (of
    requests to `model` and `backend` where given)."""
    query = (
        select(
            _v.request_id, _v.ts, _v.stage, _v.policy, _v.action, _v.category, _v.rule, _v.score,
            _v.classifier, _r.prompt_hash, _r.response_hash, _r.prompt_text, _r.response_text,
        )
        .join(requests_table, _r.id == _v.request_id)
        .where(_v.ts >= since, _v.ts < until, _v.action.in_(actions))
        .where(*_served_by(model, backend))
        .order_by(_v.ts.desc(), _v.id.desc())
        .limit(limit)
    )  # fmt: skip
    with engine.connect() as conn:
        return [VerdictView(**dict(row)) for row in conn.execute(query).mappings()]


@dataclass(frozen=True, slots=True)
class ScoredAnswer:
    """One quality score with the answer it scored."""

    request_id: str
    ts: datetime
    scorer: str
    metric: str
    value: float
    model: str | None
    prompt_hash: str | None
    response_hash: str | None
    prompt_text: str | None
    response_text: str | None


def lowest_scores(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    metric: str = "overall",
    limit: int = 20,
    model: str | None = None,
    backend: str | None = None,
) -> list[ScoredAnswer]:
    """The window's lowest `metric` scores (any scorer), lowest first (of requests to `model`
    and `backend` where given; otherwise also of requests no longer stored)."""
    query = (
        select(
            _q.request_id, _q.ts, _q.scorer, _q.metric, _q.value, _r.model, _r.prompt_hash,
            _r.response_hash, _r.prompt_text, _r.response_text,
        )
        .outerjoin(requests_table, _r.id == _q.request_id)
        .where(_q.ts >= since, _q.ts < until, _q.metric == metric)
        .where(*_served_by(model, backend))
        .order_by(_q.value, _q.ts.desc(), _q.id)
        .limit(limit)
    )  # fmt: skip
    with engine.connect() as conn:
        return [ScoredAnswer(**dict(row)) for row in conn.execute(query).mappings()]


def _served_by(model: str | None, backend: str | None) -> list[ColumnElement[bool]]:
    """Conditions on the joined request: to `model`, through `backend` (None: any)."""
    conditions: list[ColumnElement[bool]] = []
    if model is not None:
        conditions.append(_r.model == model)
    if backend is not None:
        conditions.append(_r.backend == backend)
    return conditions


# --- probes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatestValue:
    """The newest sample of one metric of one target."""

    metric: str
    target: str
    ts: datetime
    value: float | None
    detail: str | None


def latest_probe_values(
    engine: Engine, *, metrics: tuple[str, ...] | None = None, since: datetime | None = None
) -> list[LatestValue]:
    """The newest sample of each (metric, target), optionally of `metrics` only and not older
    than `since`; sorted by metric, then target."""
    newest = select(_p.metric, _p.target, func.max(_p.id).label("id")).group_by(
        _p.metric, _p.target
    )
    if metrics is not None:
        newest = newest.where(_p.metric.in_(metrics))
    if since is not None:
        newest = newest.where(_p.ts >= since)
    ids = newest.subquery()
    query = (
        select(_p.metric, _p.target, _p.ts, _p.value, _p.detail)
        .join(ids, _p.id == ids.c.id)
        .order_by(_p.metric, _p.target)
    )
    with engine.connect() as conn:
        return [LatestValue(**dict(row)) for row in conn.execute(query).mappings()]


def backend_health(engine: Engine, *, since: datetime | None = None) -> list[LatestValue]:
    """The latest health check of each backend (`backend_up`: 1 up, 0 down; `detail` its
    status and error)."""
    return latest_probe_values(engine, metrics=("backend_up",), since=since)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
