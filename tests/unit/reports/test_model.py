"""The report's status rules, headline and schedule slots, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.rules import default_rules
from monitor.reports.model import assess, headline, seed_thresholds
from monitor.reports.svg import nice_ceiling
from monitor.workers.reports import latest_slot, report_key

THRESHOLDS = seed_thresholds()
GOOD = {
    "success_rate": 0.99, "mean_response_time_s": 1.0, "process_memory_mb": 1000.0,
    "mean_tokens_per_s": 30.0,
}  # fmt: skip


def test_the_seed_thresholds_come_from_the_built_in_rules() -> None:
    rules = {r.metric: r.threshold for r in default_rules()}
    assert {m: t.value for m, t in THRESHOLDS.items()} == {
        m: rules[m]
        for m in ("success_rate", "mean_response_time_s", "process_memory_mb", "mean_tokens_per_s")
    }


@pytest.mark.parametrize(
    ("changes", "firing", "down", "status"),
    [
        ({}, [], False, "healthy"),
        ({"success_rate": None, "mean_tokens_per_s": None}, [], False, "healthy"),  # idle
        ({"mean_response_time_s": 12.0}, [], False, "degraded"),
        ({"mean_tokens_per_s": 4.0}, [], False, "degraded"),
        ({"process_memory_mb": 9000.0}, [], False, "degraded"),
        ({}, [{"rule": "quality_drop", "severity": "low"}], False, "degraded"),
        ({"success_rate": 0.94}, [], False, "unhealthy"),
        ({}, [{"rule": "backend_unhealthy", "severity": "critical"}], False, "unhealthy"),
        ({}, [], True, "unhealthy"),
    ],
)
def test_status_rules(
    changes: dict[str, float | None], firing: list[dict[str, str]], down: bool, status: str
) -> None:
    found, reasons = assess({**GOOD, **changes}, THRESHOLDS, firing, down)
    assert found == status
    assert bool(reasons) == (status != "healthy")


def test_headline() -> None:
    summary = {"total_requests": 10, "success_rate": 0.9921, "p95_response_time": 1.43}
    assert headline("healthy", summary, 3, 0) == (
        "healthy: 99.2 % success, p95 1.4 s, 3 alerts fired and resolved"
    )
    assert headline("degraded", summary, 1, 1) == (
        "degraded: 99.2 % success, p95 1.4 s, 1 alert fired, 1 still firing"
    )
    assert headline("healthy", {"total_requests": 0}, 0, 0) == (
        "healthy: no requests in this window, no alerts"
    )


def test_schedule_slots() -> None:
    now = datetime(2026, 3, 4, 5, 30, tzinfo=UTC)
    assert latest_slot("off", "06:00", now) is None
    assert latest_slot("daily", "06:00", now) == datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    assert latest_slot("daily", "05:30", now) == now
    assert latest_slot("6h", "06:00", now) == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    weekly = latest_slot("7d", "06:00", now + timedelta(days=1))
    assert weekly is not None and weekly.weekday() == 3  # from Thursday 1970-01-01
    assert report_key(now) == "report:2026-03-04T05:30:00Z"


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 9.5, 10, 10.5, 8600)] == [
        1.0, 1.0, 5.0, 10.0, 10.0, 20.0, 10000.0,
    ]  # fmt: skip
