"""The read side of a health report, and the outbox rows of scheduled reports.

`monitor.reports` builds the report from these and from the rollups (`store.rollups`); it
holds no SQL of its own. What is here reads little: the alerts of a window and of now, the
outbox's deliveries, the latest health checks. Requests and deliveries are of the half-open
window `since <= ts < until`; alerts are taken by the span they were firing, which may reach
past either end.

The per-request export (`iter_requests`, `iter_quality`) is the exception: every row of the
window, read `PAGE_SIZE` rows at a time (keyset pages, or a server-side cursor), so the caller
holds one page at a time, whatever the window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select
from sqlalchemy.engine import Connection, Engine

from monitor.store.alerts import Enqueued, _enqueue
from monitor.store.models import (
    alert_deliveries_table,
    alerts_table,
    probe_samples_table,
    quality_scores_table,
    requests_table,
)

_r = requests_table.c
_a = alerts_table.c
_d = alert_deliveries_table.c
_p = probe_samples_table.c
_q = quality_scores_table.c


@dataclass(frozen=True, slots=True)
class FiredAlert:
    """One alert episode that was firing at some moment of a window."""

    rule: str
    severity: str
    state: str
    fingerprint: str
    fired_at: datetime
    resolved_at: datetime | None
    value: float | None
    threshold: float | None


def outcome_counts(engine: Engine, since: datetime, until: datetime) -> dict[str, int]:
    """How many requests of the window ended in each outcome (outcomes with none are absent),
    a record kept by sampling counting its weight."""
    query = (
        select(_r.outcome, func.sum(_r.weight))
        .where(_r.ts >= since, _r.ts < until)
        .group_by(_r.outcome)
    )
    with engine.connect() as conn:
        return {outcome: int(count) for outcome, count in conn.execute(query)}


def alerts_fired_in(engine: Engine, since: datetime, until: datetime) -> list[FiredAlert]:
    """The alerts that fired by `until` and had not resolved before `since`, by firing time.

    Both ends are inclusive: an alert that fired at `until` or resolved at `since` was firing
    at a moment of the window.
    """
    query = (
        select(alerts_table)
        .where(
            _a.fired_at.is_not(None),
            _a.fired_at <= until,
            or_(_a.resolved_at.is_(None), _a.resolved_at >= since),
        )
        .order_by(_a.fired_at)
    )
    with engine.connect() as conn:
        return [
            FiredAlert(
                rule=row.rule,
                severity=row.severity,
                state=row.state,
                fingerprint=row.fingerprint,
                fired_at=row.fired_at,
                resolved_at=row.resolved_at,
                value=row.value,
                threshold=row.threshold,
            )
            for row in conn.execute(query)
        ]


def delivery_counts(engine: Engine, since: datetime, until: datetime) -> dict[str, int]:
    """How many webhook deliveries created in the window are in each status (pending,
    delivered, failed; statuses with none are absent)."""
    query = (
        select(_d.status, func.count())
        .where(_d.created_at >= since, _d.created_at < until)
        .group_by(_d.status)
    )
    with engine.connect() as conn:
        return {status: int(count) for status, count in conn.execute(query)}


# The per-request export: keyset pages of the window's rows, read as the writer asks for them,
# so a month of requests never sits in memory at once.

PAGE_SIZE = 2000
PROCESS_MEMORY_METRICS = ("backend_rss_mb", "proxy_rss_mb")  # preferred first
GPU_MEMORY_METRIC = "gpu_memory_used_mb"
SAMPLE_MAX_AGE = timedelta(minutes=5)
FIRST_SPAN, MIN_SPAN, MAX_SPAN = timedelta(hours=1), timedelta(seconds=1), timedelta(days=1)

# quality_metrics key ← (scorer, metric) of `quality_scores`
QUALITY_EXPORT = {
    "relevance_score": ("heuristic", "relevance"),
    "coherence_score": ("heuristic", "coherence"),
    "safety_score": ("heuristic", "safety"),
    "factual_accuracy": ("heuristic", "factual_accuracy"),
    "user_satisfaction": ("user", "satisfaction"),
}


@dataclass(frozen=True, slots=True)
class ExportedRequest:
    """One request of the window, with the memory readings in effect when it was made."""

    id: str
    ts: datetime
    model: str | None
    outcome: str
    error_code: str | None
    latency_ms: float | None
    completion_tokens: int | None
    tokens_per_s: float | None
    input_chars: int | None
    memory_mb: float | None
    gpu_memory_mb: float | None
    weight: int = 1  # the requests this record stands for (sampling)


@dataclass(frozen=True, slots=True)
class ExportedQuality:
    """The scores of one request of the window, one value per `QUALITY_EXPORT` key."""

    request_id: str
    ts: datetime
    scores: dict[str, float | None]


def iter_requests(
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    page_size: int = PAGE_SIZE,
    max_sample_age: timedelta = SAMPLE_MAX_AGE,
) -> Iterator[ExportedRequest]:
    """The requests of `since <= ts < until` in time order, read `page_size` at a time.

    Memory is the latest probe sample at or before the request's time, and no older than
    `max_sample_age` (else None): the backend's RSS where it is probed, else this proxy's. GPU
    memory is the sum, over the GPUs, of each GPU's latest such sample (None without a GPU).
    Both streams are walked side by side, so memory stays bounded by the page size.
    """
    columns = (
        _r.id, _r.ts, _r.model, _r.outcome, _r.error_code, _r.latency_ms,
        _r.completion_tokens, _r.tokens_per_s, _r.input_chars, _r.weight,
    )  # fmt: skip
    metrics = (*PROCESS_MEMORY_METRICS, GPU_MEMORY_METRIC)
    with engine.connect() as conn:
        samples = _keyset(
            conn,
            select(_p.ts, _p.id, _p.metric, _p.target, _p.value).where(
                _p.metric.in_(metrics), _p.value.is_not(None)
            ),
            _p.ts, _p.id, since - max_sample_age, until, page_size,
        )  # fmt: skip
        process: dict[str, tuple[datetime, float]] = {}  # metric → latest (ts, MB)
        gpus: dict[str, tuple[datetime, float]] = {}  # GPU → latest (ts, MB)
        pending = next(samples, None)
        for row in _keyset(conn, select(*columns), _r.ts, _r.id, since, until, page_size):
            values: Sequence[Any] = row
            rid, ts, model, outcome, error, latency, tokens, rate, chars, weight = values
            while pending is not None and pending[0] <= ts:
                sample: Sequence[Any] = pending
                sampled, _, metric, target, value = sample
                if metric == GPU_MEMORY_METRIC:
                    gpus[target] = (sampled, float(value))
                else:
                    process[metric] = (sampled, float(value))
                pending = next(samples, None)
            oldest = ts - max_sample_age
            memory = None
            for metric in PROCESS_MEMORY_METRICS:
                found = process.get(metric)
                if found is not None and found[0] >= oldest:
                    memory = found[1]
                    break
            fresh = [mb for sampled, mb in gpus.values() if sampled >= oldest]
            yield ExportedRequest(
                rid, ts, model, outcome, error, latency, tokens, rate, chars,
                memory, sum(fresh) if fresh else None, weight,
            )  # fmt: skip


def iter_quality(
    engine: Engine, since: datetime, until: datetime, *, page_size: int = PAGE_SIZE
) -> Iterator[ExportedQuality]:
    """The quality scores recorded in `since <= ts < until`, one entry per request and moment
    of scoring (a scorer writes all its metrics at once; feedback a user sends later is an
    entry of its own), in time order, with the `QUALITY_EXPORT` scores (None where that scorer
    did not score it at that moment).

    Read through the scores' time index in keyset pages, like the requests: no join, so no
    plan that a table's missing statistics could make quadratic.
    """
    keys = {pair: key for key, pair in QUALITY_EXPORT.items()}
    wanted = or_(*(and_(_q.scorer == s, _q.metric == m) for s, m in QUALITY_EXPORT.values()))
    query = select(_q.ts, _q.id, _q.request_id, _q.scorer, _q.metric, _q.value).where(wanted)
    moment: datetime | None = None
    entries: dict[str, ExportedQuality] = {}  # the requests scored at `moment`
    with engine.connect() as conn:
        for row in _keyset(conn, query, _q.ts, _q.id, since, until, page_size):
            values: Sequence[Any] = row
            ts, _, rid, scorer, metric, value = values
            if ts != moment:
                yield from entries.values()
                moment, entries = ts, {}
            entry = entries.get(rid)
            if entry is None:
                entry = entries[rid] = ExportedQuality(rid, ts, dict.fromkeys(QUALITY_EXPORT))
            entry.scores[keys[(scorer, metric)]] = value
    yield from entries.values()


def _keyset(
    conn: Connection,
    query: Select[Any],
    ts: ColumnElement[datetime],
    key: ColumnElement[Any],
    since: datetime,
    until: datetime,
    page_size: int,
) -> Iterator[Row[Any]]:
    """The rows of `query` with `since <= ts < until`, in (ts, key) order, one page at a time.

    Each page starts after the last (ts, key) seen, so no page rereads or skips a row, and is
    also bounded in time (`ts` below a horizon that grows while pages come back short and
    shrinks while they come back full): without it, a planner that expects few rows sorts
    the whole rest of the window for every page, and a month's export takes quadratic time.
    """
    low, after, span = since, None, FIRST_SPAN
    while low < until:
        high = min(low + span, until)
        page_query = query.where(ts >= low, ts < high)
        if after is not None:  # low is the last row's ts: skip the rows read at it
            page_query = page_query.where(or_(ts > after[0], key > after[1]))
        rows = conn.execute(page_query.order_by(ts, key).limit(page_size)).all()
        yield from rows
        if len(rows) == page_size:
            last = rows[-1]
            low, after = last._mapping[ts], (last._mapping[ts], last._mapping[key])
            span = max(span / 2, MIN_SPAN)
        else:
            low, after = high, None
            span = min(span * 2, MAX_SPAN)


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert firing now, as the seed's `current_alerts` listed it (and a little more)."""

    rule: str
    severity: str
    description: str
    fingerprint: str
    fired_at: datetime | None
    value: float | None
    threshold: float | None
    acknowledged_by: str | None


def firing_alerts(engine: Engine) -> list[ActiveAlert]:
    """The alerts firing now, in the order they fired."""
    query = select(alerts_table).where(_a.state == "firing").order_by(_a.fired_at, _a.id)
    with engine.connect() as conn:
        return [
            ActiveAlert(
                rule=row.rule,
                severity=row.severity,
                description=str((row.snapshot or {}).get("rule", {}).get("description") or ""),
                fingerprint=row.fingerprint,
                fired_at=row.fired_at,
                value=row.value,
                threshold=row.threshold,
                acknowledged_by=row.acknowledged_by,
            )
            for row in conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A webhook delivery of the window that failed for good, or is still being retried."""

    receiver: str
    rule: str
    kind: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime


def delivery_problems(
    engine: Engine, since: datetime, until: datetime, *, limit: int = 20
) -> list[FailedDelivery]:
    """The window's deliveries not (yet) delivered, newest first."""
    query = (
        select(alert_deliveries_table)
        .where(_d.created_at >= since, _d.created_at < until, _d.status != "delivered")
        .order_by(_d.created_at.desc(), _d.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            FailedDelivery(
                r.receiver,
                r.rule,
                r.kind,
                r.status,
                r.attempts,
                r.last_status,
                r.last_error,
                r.created_at,
            )
            for r in conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The latest backend health check of a window, for one backend."""

    target: str
    ts: datetime
    up: bool
    detail: str | None


LATEST_CHECKS = 200


def latest_health_checks(engine: Engine, since: datetime, until: datetime) -> list[HealthCheck]:
    """Each backend's latest `backend_up` sample of the window, among the window's last
    `LATEST_CHECKS` checks (read backwards through the metric and time index, so a month's
    window costs what an hour's does; a backend silent for that long has no latest check)."""
    query = (
        select(_p.target, _p.ts, _p.value, _p.detail)
        .where(_p.metric == "backend_up", _p.ts >= since, _p.ts < until)
        .order_by(_p.ts.desc(), _p.id.desc())
        .limit(LATEST_CHECKS)
    )
    found: dict[str, HealthCheck] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            found.setdefault(
                row.target, HealthCheck(row.target, row.ts, bool(row.value), row.detail)
            )
    return sorted(found.values(), key=lambda check: check.target)


def enqueue_notifications(engine: Engine, enqueued: Sequence[Enqueued], now: datetime) -> None:
    """Put notifications other than alerts (scheduled reports) in the webhook outbox, in one
    transaction; a (receiver, key) already there is left as it is, so enqueueing twice sends
    once."""
    if not enqueued:
        return
    with engine.begin() as conn:
        _enqueue(conn, enqueued, now)


def notification_exists(engine: Engine, key: str) -> bool:
    """Whether the outbox holds a notification with this key, for any receiver."""
    query = select(_d.id).where(_d.key == key).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None
