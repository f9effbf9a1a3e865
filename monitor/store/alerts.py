"""Alerts, their history, and the webhook outbox.

The alert worker saves each evaluation step in one transaction (`save_step`): the alerts as
they now are, the step's events, and one outbox row per notification and receiver. The
notification therefore exists exactly when the transition that caused it was stored: a crash
between the two cannot lose or duplicate it (the transactional outbox pattern), and the
unique (receiver, key) pair makes a repeated save harmless.

The delivery worker `claim`s due rows (moving their next attempt past a lease, so a second
replica does not send them at the same time), attempts them, and `finish`es each attempt:
delivered, failed for good, or pending again at a later time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from monitor.alerts.state import Alert, AlertEvent
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.store.inserts import upsert_insert
from monitor.store.leader_lock import Fence
from monitor.store.models import alert_deliveries_table, alert_events_table, alerts_table

_a = alerts_table.c
_e = alert_events_table.c
_d = alert_deliveries_table.c

ACTIVE_STATES = ("pending", "firing")


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A notification for one receiver, as the outbox stores it."""

    outgoing: OutgoingWebhook
    fingerprint: str
    rule: str
    kind: str  # firing, resolved


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row."""

    id: int
    key: str
    receiver: str
    fingerprint: str
    rule: str
    kind: str
    url: str
    body: str
    headers: dict[str, str]
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "receiver": self.receiver,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "delivered_at": _iso(self.delivered_at),
        }


def save_step(
    engine: Engine,
    alerts: Iterable[Alert],
    events: Sequence[AlertEvent],
    enqueued: Sequence[Enqueued],
    now: datetime,
    fence: Fence | None = None,
) -> None:
    """Store one evaluation step atomically: alert rows (upserted by fingerprint and start),
    the alerts' events (a cancelled one closes its pending row), and the outbox rows. With a
    `fence` (replicas on Postgres), nothing is stored unless this replica is still the
    leader: `NotLeader` is raised and the transaction rolled back."""
    with engine.begin() as conn:
        if fence is not None:
            fence.hold(conn)
        for alert in alerts:
            _upsert_alert(conn, alert, now)
        for event in events:
            if event.kind == "cancelled":
                conn.execute(
                    update(alerts_table)
                    .where(_a.fingerprint == event.fingerprint, _a.state == "pending")
                    .values(state="cancelled", updated_at=now)
                )
        if events:
            conn.execute(
                insert(alert_events_table),
                [
                    {"fingerprint": e.fingerprint, "rule": e.rule, "kind": e.kind, "at": e.at,
                     "value": e.value, "by": e.by}
                    for e in events
                ],
            )  # fmt: skip
        if enqueued:
            _enqueue(conn, enqueued, now)


def _upsert_alert(conn: Connection, alert: Alert, now: datetime) -> None:
    values = {
        "rule": alert.rule.name,
        "severity": alert.severity,
        "labels": dict(alert.labels),
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        # An acknowledgement stored by the dashboard since the worker's last read stands.
        "acknowledged_at": func.coalesce(_a.acknowledged_at, alert.acknowledged_at),
        "acknowledged_by": func.coalesce(_a.acknowledged_by, alert.acknowledged_by),
        "updated_at": now,
        "snapshot": alert.to_dict(),
    }
    changed = conn.execute(
        update(alerts_table)
        .where(_a.fingerprint == alert.fingerprint, _a.pending_since == alert.pending_since)
        .values(**values)
    ).rowcount
    if not changed:
        values.update(acknowledged_at=alert.acknowledged_at, acknowledged_by=alert.acknowledged_by)
        conn.execute(
            insert(alerts_table).values(
                fingerprint=alert.fingerprint, pending_since=alert.pending_since, **values
            )
        )


def url_origin(url: str) -> str:
    """What the outbox stores of a receiver's URL: its origin, with "/…" when it had more.
    Receiver URLs often carry their credential (Slack's path, a `?token=`), and delivery reads
    the whole URL from the configuration, never from the row."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.hostname or ''}"
    if parts.port is not None:
        origin += f":{parts.port}"
    rest = parts.path not in ("", "/") or parts.query or parts.fragment
    return origin + "/…" if rest else origin


def _enqueue(conn: Connection, enqueued: Sequence[Enqueued], now: datetime) -> None:
    rows = [
        {
            "key": item.outgoing.key,
            "receiver": item.outgoing.receiver,
            "fingerprint": item.fingerprint,
            "rule": item.rule,
            "kind": item.kind,
            "url": url_origin(item.outgoing.url),
            "body": item.outgoing.body.decode(),
            "headers": item.outgoing.headers,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for item in enqueued
    ]
    stmt = upsert_insert(alert_deliveries_table, conn.dialect.name)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["receiver", "key"]), rows)


def active_snapshots(engine: Engine, fence: Fence | None = None) -> list[dict[str, Any]]:
    """The stored pending and firing alerts, as `AlertTracker.restore` takes them; with a
    `fence`, read under it, after every write of an earlier leader (or `NotLeader`)."""
    query = select(_a.snapshot).where(_a.state.in_(ACTIVE_STATES)).order_by(_a.id)
    with engine.begin() as conn:
        if fence is not None:
            fence.hold(conn)
        return [dict(snapshot) for (snapshot,) in conn.execute(query)]


def stored_acknowledgements(engine: Engine) -> dict[str, tuple[datetime, str | None]]:
    """Who acknowledged each active alert, and when, as stored (the dashboard acknowledges
    through the store, not through the alert worker)."""
    query = select(_a.fingerprint, _a.acknowledged_at, _a.acknowledged_by).where(
        _a.state.in_(ACTIVE_STATES), _a.acknowledged_at.is_not(None)
    )
    with engine.connect() as conn:
        return {fp: (at, by) for fp, at, by in conn.execute(query)}


def list_alerts(
    engine: Engine, *, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Alert episodes, newest first; `state` filters (pending, firing, resolved, cancelled)."""
    query = select(alerts_table).order_by(_a.pending_since.desc(), _a.id.desc()).limit(limit)
    if state is not None:
        query = query.where(_a.state == state)
    with engine.connect() as conn:
        return [_alert_dict(row) for row in conn.execute(query).mappings()]


def alert_history(engine: Engine, fingerprint: str, limit: int = 200) -> list[dict[str, Any]]:
    """The events of one fingerprint, oldest first."""
    query = (
        select(alert_events_table)
        .where(_e.fingerprint == fingerprint)
        .order_by(_e.at, _e.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            {"kind": r.kind, "at": _iso(r.at), "value": r.value, "by": r.by, "rule": r.rule}
            for r in conn.execute(query)
        ]


def claim(engine: Engine, now: datetime, lease: timedelta, limit: int = 50) -> list[Delivery]:
    """Due pending rows, each moved to `now + lease` first so that no other worker takes it
    meanwhile (a row another worker moved between our read and our update is skipped). Only
    the oldest pending row of each (receiver, alert) is due, so notifications keep their order.
    """
    oldest = (
        select(func.min(_d.id)).where(_d.status == "pending").group_by(_d.receiver, _d.fingerprint)
    )
    query = (
        select(alert_deliveries_table)
        .where(_d.status == "pending", _d.next_attempt_at <= now, _d.id.in_(oldest))
        .order_by(_d.next_attempt_at, _d.id)
        .limit(limit)
    )
    claimed: list[Delivery] = []
    with engine.begin() as conn:
        for row in conn.execute(query).mappings().all():
            taken = conn.execute(
                update(alert_deliveries_table)
                .where(_d.id == row["id"], _d.next_attempt_at == row["next_attempt_at"])
                .values(next_attempt_at=now + lease)
            ).rowcount
            if taken:
                claimed.append(_delivery(row))
    return claimed


def finish(
    engine: Engine,
    delivery_id: int,
    *,
    status: str,
    attempted: bool,
    last_status: int | None,
    last_error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Record one attempt's outcome: `delivered`, `failed`, or `pending` until
    `next_attempt_at`. `attempted` is False when nothing was sent (a receiver that is no
    longer configured)."""
    values: dict[str, Any] = {
        "status": status,
        "last_status": last_status,
        "last_error": last_error,
        "next_attempt_at": next_attempt_at,
    }
    if attempted:
        values["attempts"] = _d.attempts + 1
    if status == "delivered":
        values["delivered_at"] = now
    with engine.begin() as conn:
        conn.execute(update(alert_deliveries_table).where(_d.id == delivery_id).values(**values))


def list_deliveries(
    engine: Engine, *, status: str | None = None, fingerprint: str | None = None, limit: int = 100
) -> list[Delivery]:
    """Outbox rows, newest first."""
    query = select(alert_deliveries_table).order_by(_d.id.desc()).limit(limit)
    if status is not None:
        query = query.where(_d.status == status)
    if fingerprint is not None:
        query = query.where(_d.fingerprint == fingerprint)
    with engine.connect() as conn:
        return [_delivery(row) for row in conn.execute(query).mappings()]


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        key=row["key"],
        receiver=row["receiver"],
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        kind=row["kind"],
        url=row["url"],
        body=row["body"],
        headers=dict(row["headers"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


def _alert_dict(row: Any) -> dict[str, Any]:
    return {
        "fingerprint": row["fingerprint"],
        "rule": row["rule"],
        "severity": row["severity"],
        "labels": dict(row["labels"]),
        "state": row["state"],
        "value": row["value"],
        "threshold": row["threshold"],
        "pending_since": _iso(row["pending_since"]),
        "fired_at": _iso(row["fired_at"]),
        "resolved_at": _iso(row["resolved_at"]),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
