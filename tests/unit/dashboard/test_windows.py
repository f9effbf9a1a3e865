"""Windows: presets end at the next whole minute, custom ranges are whole UTC days, steps keep
charts within their point budget."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from monitor.dashboard import windows

NOW = datetime(2026, 3, 4, 10, 17, 42, tzinfo=UTC)


@pytest.mark.parametrize("label", list(windows.PRESETS))
def test_a_preset_ends_at_the_next_minute_and_starts_on_a_whole_step(label: str) -> None:
    window = windows.preset(label, NOW)
    assert window.until == datetime(2026, 3, 4, 10, 18, tzinfo=UTC)
    span = windows.PRESETS[label]
    assert span <= window.span < span + window.step
    assert window.step >= timedelta(minutes=1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (window.since - epoch) % window.step == timedelta(0)
    assert span / window.step <= windows.MAX_POINTS


def test_steps_grow_with_the_window() -> None:
    assert windows.preset("Last 15 minutes", NOW).step == timedelta(minutes=1)
    assert windows.preset("Last 24 hours", NOW).step == timedelta(minutes=15)
    assert windows.preset("Last 30 days", NOW).step == timedelta(hours=6)


def test_a_custom_range_is_whole_days_and_stops_now() -> None:
    window = windows.custom(date(2026, 3, 1), date(2026, 3, 2), NOW)
    assert (window.since, window.until) == (
        datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    )  # fmt: skip
    today = windows.custom(date(2026, 3, 4), date(2026, 3, 4), NOW)
    assert today.until == datetime(2026, 3, 4, 10, 18, tzinfo=UTC)
    swapped = windows.custom(date(2026, 3, 2), date(2026, 3, 1), NOW)
    assert swapped.since == window.since
