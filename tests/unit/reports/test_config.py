"""The `reports` settings section: off by default, schedules checked at load time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from monitor.config import ReportSettings, Settings


def test_reports_are_off_by_default() -> None:
    assert Settings().reports.schedule == "off"


@pytest.mark.parametrize("schedule", ["daily", "6h", "OFF", "1d12h"])
def test_valid_schedules(schedule: str) -> None:
    assert ReportSettings(schedule=schedule).schedule == schedule.lower()


@pytest.mark.parametrize("schedule", ["weekly", "10s", "-1h"])
def test_invalid_schedules(schedule: str) -> None:
    with pytest.raises(ValidationError):
        ReportSettings(schedule=schedule)


def test_invalid_time_of_day() -> None:
    with pytest.raises(ValidationError):
        ReportSettings(schedule="daily", at="25:00")
