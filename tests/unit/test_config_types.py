"""The settings' field types: one duration parser shared by durations and rate limits, and a
module that stays a leaf."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import TypeAdapter, ValidationError

from monitor.config_types import Duration, RateLimit, WebhookReceiver, parse_duration


@pytest.mark.parametrize(
    ("unit", "seconds"), [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
)
def test_durations_and_rate_limits_read_the_same_units(unit: str, seconds: float) -> None:
    assert parse_duration(f"3{unit}") == pytest.approx(3 * seconds)
    assert RateLimit.parse(f"7/3{unit}").window_s == pytest.approx(3 * seconds)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5 minutes", 300), ("30min", 1800), ("1.5 hours", 5400), ("2 days", 172800),
     ("1 hr 30 min", 5400), ("10sec", 10)],
)  # fmt: skip
def test_unit_names_only_when_asked_for(text: str, seconds: float) -> None:
    assert parse_duration(text, unit_names=True) == seconds
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "amount", "window_s"),
    [("10/1h30m", 10, 5400), ("5/250ms", 5, 0.25), ("3/ 2 days", 3, 172800),
     ("1/HOUR", 1, 3600), ("9/1 min", 9, 60)],
)  # fmt: skip
def test_rate_limit_periods_are_durations(text: str, amount: int, window_s: float) -> None:
    assert RateLimit.parse(text) == RateLimit(amount, window_s)


@pytest.mark.parametrize("text", ["10/60", "10/", "10/1.5", "10/-1h", "10/inf", "10/1e3s"])
def test_rate_limit_period_names_a_unit(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        RateLimit.parse(text)


def test_duration_field_parses_and_refuses() -> None:
    adapter = TypeAdapter(Duration)
    assert adapter.validate_python("1h30m") == 5400.0
    assert adapter.validate_python(2) == 2.0
    with pytest.raises(ValidationError, match="not a duration"):
        adapter.validate_python("5 minutes")


def test_webhook_receiver_severity_threshold() -> None:
    receiver = WebhookReceiver(name="ops", url="https://hooks.example.com/x", min_severity="high")
    assert [receiver.accepts(s) for s in ("low", "medium", "high", "critical")] == [
        False,
        False,
        True,
        True,
    ]


def test_the_module_is_a_leaf() -> None:
    """Importing the field types loads nothing else of this package."""
    code = (
        "import sys, monitor.config_types\n"
        "print(sorted(m for m in sys.modules if m == 'monitor' or m.startswith('monitor.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "['monitor', 'monitor.config_types']"
