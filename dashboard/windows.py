"""The time window every page shows: a preset ending now, or a custom range; and its step.

A window is half-open, `since <= t < until`, in aware UTC datetimes, as the store's functions
take it. The step (one chart point) grows with the window so a chart has at most about
`MAX_POINTS` points, never less than a minute: the rollups' grain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from monitor.store.rollups import aligned_since

PRESETS: dict[str, timedelta] = {
    "Last 15 minutes": timedelta(minutes=15),
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
}
CUSTOM = "Custom range"
DEFAULT = "Last hour"
MAX_POINTS = 120
_STEPS = [timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)]


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime
    step: timedelta
    label: str

    @property
    def span(self) -> timedelta:
        return self.until - self.since

    def describe(self) -> str:
        return f"{self.label} ({_fmt(self.since)} to {_fmt(self.until)} UTC, {_fmt_step(self.step)} steps)"


def step_for(span: timedelta) -> timedelta:
    """The smallest step from `_STEPS` that keeps `span` within `MAX_POINTS` points."""
    for step in _STEPS:
        if span / step <= MAX_POINTS:
            return step
    return _STEPS[-1]


def preset(label: str, now: datetime) -> Window:
    """The preset `label` ending at `now` (rounded up to the minute, so that live refreshes
    within one minute read the same minutes and the newest minute is included).

    The start is moved back to a whole multiple of the step (less than one step more than the
    span), as time-series dashboards do: every chart point then covers whole steps, and a long
    window reads hourly rollups instead of minute rollups at each step's edges."""
    until = _ceil_minute(now)
    span = PRESETS[label]
    step = step_for(span)
    return Window(aligned_since(until, span, step), until, step, label)


def custom(start: date, end: date, now: datetime) -> Window:
    """Whole days from `start` to `end` inclusive (UTC), not past now; at least one minute."""
    if end < start:
        start, end = end, start
    since = datetime.combine(start, time(), tzinfo=UTC)
    until = min(datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC), _ceil_minute(now))
    until = max(until, since + timedelta(minutes=1))
    return Window(
        since, until, step_for(until - since), f"{start.isoformat()} to {end.isoformat()}"
    )


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _fmt_step(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
