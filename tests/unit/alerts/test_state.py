"""The alert state machine: pending, firing, resolved; exactly one notification per transition."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.rules import Evaluation, evaluate
from monitor.alerts.state import AlertTracker, Notification, fingerprint
from monitor.config_types import AlertRule

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def latency_rule(**fields: object) -> AlertRule:
    base: dict[str, object] = {
        "name": "slow",
        "metric": "latency",
        "comparison": ">",
        "threshold": 10,
        "severity": "medium",
    }
    return AlertRule.model_validate({**base, **fields})


def reading(rule: AlertRule, value: float | None, **labels: str) -> Evaluation:
    return evaluate(rule, {"latency": value}, labels)


def run(
    tracker: AlertTracker, rule: AlertRule, values: Sequence[float | None], step_s: float = 10
) -> list[tuple[float, str]]:
    """Step once per value, `step_s` apart; the notifications as (time offset, kind)."""
    sent: list[tuple[float, str]] = []
    for i, value in enumerate(values):
        for n in tracker.step([reading(rule, value)], at(i * step_s)):
            sent.append((i * step_s, n.kind))
    return sent


def test_fingerprint_is_stable_and_depends_on_name_and_labels() -> None:
    assert fingerprint("slow", {"b": "2", "a": "1"}) == fingerprint("slow", {"a": "1", "b": "2"})
    assert len(fingerprint("slow", {})) == 16
    assert fingerprint("slow", {}) != fingerprint("slow2", {})
    assert fingerprint("slow", {"gpu": "0"}) != fingerprint("slow", {"gpu": "1"})
    # stable across processes and releases: sha256 of the documented canonical JSON
    canonical = b'["slow",[["a","1"],["b","2"]]]'
    assert fingerprint("slow", {"b": "2", "a": "1"}) == hashlib.sha256(canonical).hexdigest()[:16]


def test_without_for_a_breach_fires_at_once_and_notifies_once() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    sent = run(tracker, latency_rule(), [5, 20, 20, 20, 5, 5])
    assert sent == [(10, "firing"), (40, "resolved")]
    kinds = [e.kind for e in tracker.history]
    assert kinds == ["pending", "firing", "resolved"]


def test_for_duration_keeps_the_alert_pending_until_it_elapses() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule(**{"for": "30s"})
    sent = run(tracker, rule, [20, 20, 20, 20, 20])  # t = 0, 10, 20, 30, 40
    assert sent == [(30, "firing")]
    (alert,) = tracker.active()
    assert (alert.state, alert.pending_since, alert.fired_at) == ("firing", at(0), at(30))


def test_a_breach_shorter_than_for_is_cancelled_without_notification() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule(**{"for": "30s"})
    assert run(tracker, rule, [20, 20, 5, 20, 20, 20]) == []
    assert [e.kind for e in tracker.history] == ["pending", "cancelled", "pending"]
    assert tracker.active()[0].pending_since == at(30)  # the timer restarted


def test_resolve_after_holds_the_alert_until_the_condition_stays_clear() -> None:
    tracker = AlertTracker(resolve_after_s=30)
    #                              0   10  20 30  40 50 60  70 80 90
    sent = run(tracker, latency_rule(), [20, 20, 5, 5, 20, 5, 5, 5, 5, 5])
    # clear from 20 to 30 then a breach at 40 restarts the clear timer: clear since 50, so
    # resolved at 80
    assert sent == [(0, "firing"), (80, "resolved")]


def test_noisy_breach_and_clear_sequence_notifies_exactly_once_per_transition() -> None:
    tracker = AlertTracker(resolve_after_s=60)
    rule = latency_rule(**{"for": "20s"})
    flapping = [20, 5, 20, 5, 20, 20, 20, 5, 20, 5, 20, 5, 5, 20, 5, 20]  # never clear 60 s
    settled = [5] * 8
    again = [20, 20, 20, 5, 5, 5, 5, 5, 5, 5, 5]
    sent = run(tracker, rule, flapping + settled + again)
    assert [kind for _, kind in sent] == ["firing", "resolved", "firing", "resolved"]
    first_fire = sent[0][0]
    assert first_fire == 60  # breaching at 40, 50, 60: 20 s
    # each transition notified once, each episode has its own idempotency key
    assert len({n for n in sent}) == 4


def test_notification_keys_are_unique_per_episode_and_kind() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule()
    notes: list[Notification] = []
    for i, value in enumerate([20, 5, 20, 5]):
        notes += tracker.step([reading(rule, value)], at(i))
    keys = [n.key for n in notes]
    assert len(set(keys)) == 4
    assert keys[0].startswith(fingerprint("slow", {}))
    assert keys[0].endswith("-firing") and keys[1].endswith("-resolved")
    assert keys[0].rsplit("-", 1)[0] == keys[1].rsplit("-", 1)[0]  # same episode


def test_notifications_carry_a_snapshot_of_the_alert() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule()
    (firing,) = tracker.step([reading(rule, 20)], at(0))
    (resolved,) = tracker.step([reading(rule, 3)], at(10))
    assert (firing.alert.state, firing.alert.value, firing.alert.threshold) == ("firing", 20, 10)
    assert firing.alert.resolved_at is None
    assert (resolved.alert.state, resolved.alert.value, resolved.alert.resolved_at) == (
        "resolved",
        3,
        at(10),
    )
    assert resolved.at == at(10)


def test_acknowledged_alert_still_resolves_and_notifies_the_resolve() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule()
    (firing,) = tracker.step([reading(rule, 20)], at(0))
    assert tracker.acknowledge(firing.alert.fingerprint, at(5), by="ops@example.com")
    assert tracker.acknowledge(firing.alert.fingerprint, at(6), by="someone else")  # idempotent
    assert tracker.step([reading(rule, 20)], at(10)) == []
    (resolved,) = tracker.step([reading(rule, 1)], at(20))
    assert resolved.kind == "resolved"
    assert resolved.alert.acknowledged
    assert (resolved.alert.acknowledged_at, resolved.alert.acknowledged_by) == (
        at(5),
        "ops@example.com",
    )
    assert [e.kind for e in tracker.history] == ["pending", "firing", "acknowledged", "resolved"]
    assert tracker.acknowledge(firing.alert.fingerprint, at(30)) is False  # nothing active


def test_labels_make_separate_alerts() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    rule = latency_rule(labels={"team": "ml"})
    sent = tracker.step([reading(rule, 20, gpu="0"), reading(rule, 20, gpu="1")], at(0))
    assert len(sent) == 2
    assert {n.alert.labels["gpu"] for n in sent} == {"0", "1"}
    assert all(n.alert.labels["team"] == "ml" for n in sent)
    (resolved,) = tracker.step([reading(rule, 1, gpu="0"), reading(rule, 20, gpu="1")], at(10))
    assert resolved.alert.labels["gpu"] == "0"
    assert [a.labels["gpu"] for a in tracker.active()] == ["1"]


@pytest.mark.parametrize(
    ("no_data", "expected"),
    [("ok", ["firing", "resolved"]), ("breaching", ["firing"]), ("keep", ["firing"])],
)
def test_no_data_follows_the_rule(no_data: str, expected: list[str]) -> None:
    tracker = AlertTracker(resolve_after_s=0)
    sent = run(tracker, latency_rule(no_data=no_data), [20, None, None])
    assert [kind for _, kind in sent] == expected


def test_no_data_never_starts_an_alert_when_kept_or_ok() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    assert run(tracker, latency_rule(no_data="keep"), [None, None]) == []
    assert run(tracker, latency_rule(no_data="ok"), [None, None]) == []
    assert [k for _, k in run(tracker, latency_rule(no_data="breaching"), [None])] == ["firing"]


def test_keep_resolves_once_data_comes_back_clear() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    sent = run(tracker, latency_rule(no_data="keep"), [20, None, None, 5])
    assert sent == [(0, "firing"), (30, "resolved")]


def test_rule_resolve_after_overrides_the_tracker_default() -> None:
    tracker = AlertTracker(resolve_after_s=600)
    sent = run(tracker, latency_rule(resolve_after="10s"), [20, 5, 5])
    assert sent == [(0, "firing"), (20, "resolved")]


def test_fingerprints_without_an_evaluation_are_left_alone() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    tracker.step([reading(latency_rule(), 20)], at(0))
    assert tracker.step([], at(100)) == []
    assert [a.state for a in tracker.active()] == ["firing"]


def test_retire_resolves_firing_alerts_of_removed_rules_and_cancels_pending_ones() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    kept, firing, pending = (
        latency_rule(name="kept"),
        latency_rule(name="gone"),
        latency_rule(name="waiting", **{"for": "1h"}),
    )
    tracker.step([reading(r, 20) for r in (kept, firing, pending)], at(0))
    (resolved,) = tracker.retire({"kept"}, at(10))
    assert (resolved.kind, resolved.alert.rule.name) == ("resolved", "gone")
    assert [a.rule.name for a in tracker.active()] == ["kept"]
    assert [(e.rule, e.kind) for e in tracker.take_events()][-2:] == [
        ("gone", "resolved"),
        ("waiting", "cancelled"),
    ]


def test_take_events_returns_new_events_once() -> None:
    tracker = AlertTracker(resolve_after_s=0)
    run(tracker, latency_rule(), [20, 5])
    assert [e.kind for e in tracker.take_events()] == ["pending", "firing", "resolved"]
    assert tracker.take_events() == []
    assert len(tracker.history) == 3


def test_history_is_bounded() -> None:
    tracker = AlertTracker(resolve_after_s=0, history_size=4)
    run(tracker, latency_rule(), [20, 5, 20, 5])
    assert len(tracker.history) == 4
    assert [e.kind for e in tracker.history] == ["resolved", "pending", "firing", "resolved"]
    assert len(tracker.take_events()) == 6  # the unpersisted events are all kept


def test_saved_alerts_restore_across_a_restart_without_renotifying() -> None:
    tracker = AlertTracker(resolve_after_s=20)
    rule = latency_rule(**{"for": "10s"})
    run(tracker, rule, [20, 20, 5])  # fired at 10, clear since 20
    tracker.acknowledge(tracker.active()[0].fingerprint, at(21), by="ops")
    # what the store keeps of each active alert (`Alert.to_dict()`), through it as JSON
    saved = json.loads(json.dumps([alert.to_dict() for alert in tracker.active()]))

    restarted = AlertTracker(resolve_after_s=20)
    restarted.restore(saved)
    assert restarted.active() == tracker.active()
    assert restarted.step([reading(rule, 5)], at(30)) == []  # still firing, not fired again
    (resolved,) = restarted.step([reading(rule, 5)], at(40))
    assert resolved.kind == "resolved"
    assert resolved.alert.acknowledged_by == "ops"
