"""The report's read side (`store.reports`) on real databases: which rows each window holds,
at its edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from monitor.alerts.state import Alert, AlertState
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.config_types import AlertRule
from monitor.record import Outcome, RequestRecord
from monitor.store.alerts import Enqueued, finish, list_deliveries, save_step
from monitor.store.inserts import insert_rows
from monitor.store.reports import FiredAlert, alerts_fired_in, delivery_counts, outcome_counts

UNTIL = datetime(2026, 2, 3, 12, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=2)
TICK = timedelta(microseconds=1)


def test_outcome_counts_are_of_the_half_open_window(engine: Engine) -> None:
    stored: list[tuple[str, datetime, Outcome]] = [
        ("before", SINCE - TICK, "ok"),
        ("first", SINCE, "ok"),
        ("middle", SINCE + timedelta(hours=1), "blocked_input"),
        ("last", UNTIL - TICK, "ok"),
        ("after", UNTIL, "backend_error"),
    ]
    records = [
        RequestRecord(id=i, ts=ts, route="/v1/chat/completions", protocol="openai", outcome=o)
        for i, ts, o in stored
    ]
    insert_rows(engine, [r.to_row() for r in records])

    assert outcome_counts(engine, SINCE, UNTIL) == {"ok": 2, "blocked_input": 1}
    assert outcome_counts(engine, UNTIL, UNTIL + timedelta(hours=1)) == {"backend_error": 1}
    assert outcome_counts(engine, UNTIL + TICK, UNTIL + timedelta(hours=1)) == {}


def _alert(
    name: str,
    state: AlertState,
    fired_at: datetime | None,
    resolved_at: datetime | None = None,
    value: float | None = 0.5,
) -> Alert:
    rule = AlertRule.model_validate(
        {
            "name": name,
            "metric": "success_rate",
            "comparison": "<",
            "threshold": 0.95,
            "window": "5m",
            "severity": "high",
        }
    )
    return Alert(
        fingerprint=name[:16],
        rule=rule,
        labels={},
        state=state,
        pending_since=(fired_at or UNTIL) - timedelta(minutes=5),
        value=value,
        threshold=0.95,
        fired_at=fired_at,
        resolved_at=resolved_at,
    )


def test_alerts_fired_in_holds_those_firing_at_some_moment_of_the_window(engine: Engine) -> None:
    hour = timedelta(hours=1)
    alerts = [
        _alert("resolved_before", "resolved", SINCE - 3 * hour, SINCE - TICK),
        _alert("at_until", "firing", UNTIL),
        _alert("resolved_at_since", "resolved", SINCE - hour, SINCE),
        _alert("fired_after", "firing", UNTIL + TICK),
        _alert("spanning", "firing", SINCE - 2 * hour),
        _alert("never_fired", "pending", None),
        _alert("inside", "resolved", SINCE + hour, SINCE + 2 * hour - TICK, value=None),
    ]
    save_step(engine, alerts, [], [], UNTIL)

    fired = alerts_fired_in(engine, SINCE, UNTIL)

    assert [a.rule for a in fired] == ["spanning", "resolved_at_since", "inside", "at_until"]
    assert fired[2] == FiredAlert(
        rule="inside",
        severity="high",
        state="resolved",
        fingerprint="inside",
        fired_at=SINCE + hour,
        resolved_at=SINCE + 2 * hour - TICK,
        value=None,
        threshold=0.95,
    )
    assert fired[0].resolved_at is None and fired[0].value == 0.5
    later = alerts_fired_in(engine, UNTIL + hour, UNTIL + 2 * hour)
    assert [a.rule for a in later] == ["spanning", "at_until", "fired_after"]
    assert alerts_fired_in(engine, SINCE - 4 * hour, SINCE - 3 * hour - TICK) == []


def _enqueued(key: str) -> Enqueued:
    outgoing = OutgoingWebhook(
        receiver="ops", url="http://127.0.0.1:9/hook", body=b"{}", headers={}, key=key
    )
    return Enqueued(outgoing=outgoing, fingerprint="f", rule="low_success_rate", kind="firing")


def test_delivery_counts_are_by_status_of_those_created_in_the_window(engine: Engine) -> None:
    created = {
        "before": SINCE - TICK,
        "first": SINCE,
        "delivered": SINCE + timedelta(hours=1),
        "failed": SINCE + timedelta(hours=1),
        "last": UNTIL - TICK,
        "after": UNTIL,
    }
    for key, at in created.items():
        save_step(engine, [], [], [_enqueued(key)], at)
    for delivery in list_deliveries(engine):
        if delivery.key in ("delivered", "failed"):
            finish(
                engine,
                delivery.id,
                status=delivery.key,
                attempted=True,
                last_status=200 if delivery.key == "delivered" else 500,
                last_error=None,
                next_attempt_at=None,
                now=UNTIL,
            )

    assert delivery_counts(engine, SINCE, UNTIL) == {"pending": 2, "delivered": 1, "failed": 1}
    assert delivery_counts(engine, UNTIL, UNTIL + timedelta(hours=1)) == {"pending": 1}
    assert delivery_counts(engine, UNTIL + TICK, UNTIL + timedelta(hours=1)) == {}
