"""The read side of a health report: what happened in one window, beyond its summary.

`monitor.reports` builds the report from these and from `store.summaries.summarize`; it holds
no SQL of its own. Each function opens its own short connection and reads one window: requests
and deliveries in the half-open window `since <= ts < until`, alerts by the span they were
firing, which may reach past either end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from monitor.store.models import alert_deliveries_table, alerts_table, requests_table

_r = requests_table.c
_a = alerts_table.c
_d = alert_deliveries_table.c


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
    """How many requests of the window ended in each outcome (outcomes with none are absent)."""
    query = (
        select(_r.outcome, func.count()).where(_r.ts >= since, _r.ts < until).group_by(_r.outcome)
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
