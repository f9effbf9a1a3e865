"""The alert state machine: pending → firing → resolved, one alert per fingerprint.

Pure and clock-free: `AlertTracker.step(evaluations, now)` takes the latest evaluations and
the time, updates the alerts and returns the notifications to send. The app's worker owns the
loop, the clock, persistence (`take_events`, `restore`) and delivery.

An alert is identified by its *fingerprint*: a stable hash of the rule name and the labels
(the rule's labels, then the evaluation's target labels, such as ``gpu: "0"``), so the same
condition on the same target is always the same alert, across steps and restarts.

Transitions, for one fingerprint (``for`` from the rule, ``resolve_after`` from the rule or
the tracker's default)::

    (none)  ──breaching──►  pending                        event "pending"
    pending ──clear──────►  (none)                         event "cancelled", no notification
    pending ──breaching for `for` seconds──►  firing       event "firing", notify once
    firing  ──breaching──►  firing                         (the clear timer restarts)
    firing  ──clear for `resolve_after` seconds──►  resolved    event "resolved", notify once
    resolved ──breaching──► a new alert, pending again (a new episode, new `starts_at`)

Hysteresis, so a flapping condition cannot cause a storm: firing needs an unbroken breach of
``for`` seconds, and resolving needs an unbroken clear of ``resolve_after`` seconds; any
breach while firing restarts the clear timer. A condition that flips faster than both
produces at most one firing notification, and its resolve once it settles. Both durations are
measured between steps' `now`, so a check happens at the first step at or after they elapse.

"No data" follows the rule's ``no_data`` option: clear, breaching, or the last known condition.
A fingerprint with no evaluation in a step is left alone (its rule may run on another
schedule); `retire` ends the alerts of rules that are no longer configured.

Acknowledging (an operator, through the admin API) marks an active alert; it changes no
transition: an acknowledged alert still resolves, and its resolve is still notified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from monitor.alerts.rules import Evaluation
from monitor.config_types import AlertRule, Severity

AlertState = Literal["pending", "firing", "resolved"]
EventKind = Literal["pending", "firing", "resolved", "cancelled", "acknowledged"]
NotificationKind = Literal["firing", "resolved"]

DEFAULT_RESOLVE_AFTER_S = 60.0


def fingerprint(rule_name: str, labels: Mapping[str, str]) -> str:
    """16 hex chars of sha256 over ``["<rule>",[["<label>","<value>"],...]]`` (labels sorted,
    compact JSON): stable across runs and releases, and the same for the same rule and target."""
    canonical = json.dumps([rule_name, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """One episode of one rule on one target, from its first breach to its resolve."""

    fingerprint: str
    rule: AlertRule
    labels: dict[str, str]
    state: AlertState
    pending_since: datetime
    value: float | None = None
    threshold: float | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    clear_since: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    last_breaching: bool = True

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def copy(self) -> Alert:
        return dataclasses.replace(self, labels=dict(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601), for the alerts table and `restore`."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["rule"] = self.rule.model_dump(mode="json", by_alias=True)
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        values = dict(data)
        values["rule"] = AlertRule.model_validate(values["rule"])
        for name in ("pending_since", "fired_at", "resolved_at", "clear_since", "acknowledged_at"):
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One entry of an alert's history."""

    fingerprint: str
    rule: str
    kind: EventKind
    at: datetime
    value: float | None = None
    by: str | None = None  # who acknowledged


@dataclass(frozen=True, slots=True)
class Notification:
    """An alert that fired or resolved: to be delivered to every configured receiver."""

    kind: NotificationKind
    alert: Alert  # a copy, as it was at the transition
    at: datetime

    @property
    def key(self) -> str:
        """Idempotency key: the same for redeliveries of this transition, unique otherwise."""
        started = self.alert.fired_at or self.alert.pending_since
        return f"{self.alert.fingerprint}-{started.strftime('%Y%m%dT%H%M%S%f')}-{self.kind}"


@dataclass
class AlertTracker:
    """Active alerts by fingerprint, stepped by evaluations; see the module docstring."""

    resolve_after_s: float = DEFAULT_RESOLVE_AFTER_S
    history_size: int = 1000
    alerts: dict[str, Alert] = field(default_factory=dict)
    history: deque[AlertEvent] = field(init=False)
    _new_events: list[AlertEvent] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def step(self, evaluations: Iterable[Evaluation], now: datetime) -> list[Notification]:
        notifications: list[Notification] = []
        for evaluation in evaluations:
            notification = self._step_one(evaluation, now)
            if notification is not None:
                notifications.append(notification)
        return notifications

    def acknowledge(self, fingerprint: str, now: datetime, by: str = "") -> bool:
        """Mark an active alert acknowledged; False when there is none with this fingerprint."""
        alert = self.alerts.get(fingerprint)
        if alert is None:
            return False
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = now, by
            self._record(alert, "acknowledged", now, by=by)
        return True

    def retire(self, configured: Collection[str], now: datetime) -> list[Notification]:
        """End the alerts of rules not in `configured`: firing ones resolve (and notify)."""
        notifications = []
        for alert in [a for a in self.alerts.values() if a.rule.name not in configured]:
            if alert.state == "firing":
                notifications.append(self._resolve(alert, now))
            else:
                self._cancel(alert, now)
        return notifications

    def active(self) -> list[Alert]:
        return sorted(self.alerts.values(), key=lambda a: (a.pending_since, a.fingerprint))

    def take_events(self) -> list[AlertEvent]:
        """Events since the last call, oldest first: for the caller to persist."""
        events, self._new_events = self._new_events, []
        return events

    def restore(self, snapshot: Iterable[Mapping[str, Any]]) -> None:
        """Reload active alerts (after a restart), so none fires or resolves twice."""
        for data in snapshot:
            alert = Alert.from_dict(data)
            self.alerts[alert.fingerprint] = alert

    def _step_one(self, evaluation: Evaluation, now: datetime) -> Notification | None:
        rule = evaluation.rule
        labels = {**rule.labels, **evaluation.labels}
        key = fingerprint(rule.name, labels)
        alert = self.alerts.get(key)
        breaching = self._condition(evaluation, alert)
        if alert is None:
            if not breaching:
                return None
            alert = Alert(key, rule, labels, "pending", pending_since=now)
            self.alerts[key] = alert
            self._record(alert, "pending", now, evaluation.value)
        alert.rule, alert.last_breaching = rule, breaching
        if evaluation.value is not None:
            alert.value, alert.threshold = evaluation.value, evaluation.threshold
        if alert.state == "pending":
            if not breaching:
                self._cancel(alert, now)
            elif _elapsed(alert.pending_since, now) >= rule.for_:
                alert.state, alert.fired_at = "firing", now
                self._record(alert, "firing", now, alert.value)
                return Notification("firing", alert.copy(), now)
            return None
        if breaching:
            alert.clear_since = None
            return None
        if alert.clear_since is None:
            alert.clear_since = now
        resolve_after = self.resolve_after_s if rule.resolve_after is None else rule.resolve_after
        if _elapsed(alert.clear_since, now) >= resolve_after:
            return self._resolve(alert, now)
        return None

    def _condition(self, evaluation: Evaluation, alert: Alert | None) -> bool:
        if evaluation.status != "no_data":
            return evaluation.breaching
        if evaluation.rule.no_data == "keep":
            return alert.last_breaching if alert is not None else False
        return evaluation.rule.no_data == "breaching"

    def _resolve(self, alert: Alert, now: datetime) -> Notification:
        alert.state, alert.resolved_at = "resolved", now
        del self.alerts[alert.fingerprint]
        self._record(alert, "resolved", now, alert.value)
        return Notification("resolved", alert.copy(), now)

    def _cancel(self, alert: Alert, now: datetime) -> None:
        del self.alerts[alert.fingerprint]
        self._record(alert, "cancelled", now, alert.value)

    def _record(
        self,
        alert: Alert,
        kind: EventKind,
        now: datetime,
        value: float | None = None,
        by: str | None = None,
    ) -> None:
        event = AlertEvent(alert.fingerprint, alert.rule.name, kind, now, value, by)
        self.history.append(event)
        self._new_events.append(event)


def _elapsed(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()
