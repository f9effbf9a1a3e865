"""Alert rules: parsing, defaults and evaluation, including missing data."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from monitor.alerts import rules
from monitor.alerts.rules import evaluate
from monitor.config_types import AlertRule, parse_duration


def rule(**fields: object) -> AlertRule:
    base: dict[str, object] = {"name": "r", "metric": "m", "comparison": ">", "threshold": 10}
    return AlertRule.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), (1.5, 1.5), ("45", 45.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0),
     ("2d", 172800.0), ("250ms", 0.25), (" 1h 5s ", 3605.0)],
)  # fmt: skip
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "-5m", "5x", True, None, math.inf, -1])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_rule_from_configuration_with_for_alias_and_durations() -> None:
    r = rule(window="10m", **{"for": "2m"}, resolve_after="90s", severity="high")
    assert (r.window, r.for_, r.resolve_after, r.severity) == (600.0, 120.0, 90.0, "high")
    assert r.model_dump(by_alias=True)["for"] == 120.0
    assert AlertRule.model_validate(r.model_dump(by_alias=True)) == r


@pytest.mark.parametrize(
    "bad",
    [{"severity": "urgent"}, {"comparison": "=>"}, {"threshold": math.nan}, {"name": "has space"},
     {"window": 0}, {"unknown": 1}, {"no_data": "maybe"}],
)  # fmt: skip
def test_rule_rejects_invalid_fields(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        rule(**bad)


def test_rules_are_immutable() -> None:
    with pytest.raises(ValidationError):
        rule().threshold = 3


def test_parse_rules_rejects_duplicate_names() -> None:
    raw = [{"name": "a", "metric": "m", "comparison": ">", "threshold": 1}] * 2
    with pytest.raises(ValueError, match="duplicate alert rule names: a"):
        rules.parse_rules(raw)


def test_default_rules_are_the_seeds_and_the_additions() -> None:
    by_name = {r.name: r for r in rules.default_rules()}
    seed = {
        "high_response_time": ("mean_response_time_s", ">", 10, "medium"),
        "high_memory": ("process_memory_mb", ">", 8192, "medium"),
        "low_throughput": ("mean_tokens_per_s", "<", 5, "low"),
        "low_success_rate": ("success_rate", "<", 0.95, "high"),
        "no_successful_requests": ("successful_requests", "<", 1, "high"),
        "backend_unhealthy": ("backend_up", "<", 1, "critical"),
        "gpu_memory_high": ("gpu_memory_pct", ">", 95, "medium"),
        "gpu_temperature_high": ("gpu_temperature_c", ">", 85, "high"),
        "blocked_requests_spike": ("blocked_rate", ">", 3, "medium"),
        "quality_drop": ("quality_overall", "<", 0.8, "low"),
    }
    assert {
        n: (r.metric, r.comparison, r.threshold, r.severity) for n, r in by_name.items()
    } == seed
    for r in by_name.values():
        assert r.metric in rules.SUMMARY_FIELDS
        assert r.baseline is None or r.baseline in rules.SUMMARY_FIELDS
        assert r.description


@pytest.mark.parametrize(
    ("comparison", "value", "status"),
    [(">", 11, "breaching"), (">", 10, "ok"), (">=", 10, "breaching"), (">=", 9.9, "ok"),
     ("<", 9, "breaching"), ("<", 10, "ok"), ("<=", 10, "breaching"), ("<=", 10.1, "ok")],
)  # fmt: skip
def test_evaluate_compares_value_and_threshold(comparison: str, value: float, status: str) -> None:
    result = evaluate(rule(comparison=comparison), {"m": value})
    assert (result.status, result.value, result.threshold) == (status, value, 10.0)
    assert result.breaching is (status == "breaching")


@pytest.mark.parametrize("summary", [{}, {"m": None}, {"m": math.nan}, {"m": math.inf}, {"m": "x"}])
def test_missing_value_is_no_data(summary: dict[str, object]) -> None:
    result = evaluate(rule(), summary)  # type: ignore[arg-type]
    assert (result.status, result.value, result.breaching) == ("no_data", None, False)


def test_zero_is_a_value_not_missing_data() -> None:
    r = rules.default_rules()[4]  # no_successful_requests
    assert evaluate(r, {"successful_requests": 0}).status == "breaching"
    assert evaluate(r, {"successful_requests": 3}).status == "ok"


def test_booleans_count_as_numbers() -> None:
    assert evaluate(rule(comparison="<", threshold=1), {"m": False}).status == "breaching"


def test_baseline_threshold_is_a_multiplier_with_a_floor() -> None:
    r = rule(threshold=3, baseline="b", baseline_floor=0.02)
    usual = evaluate(r, {"m": 0.2, "b": 0.05})
    assert usual.threshold == pytest.approx(0.15)
    assert usual.status == "breaching"
    quiet = evaluate(r, {"m": 0.05, "b": 0.0})  # floor: 3 x 0.02
    assert quiet.status == "ok"
    assert quiet.threshold == pytest.approx(0.06)
    assert evaluate(r, {"m": 0.05}).status == "no_data"


def test_evaluation_carries_target_labels_and_evaluate_all_skips_disabled() -> None:
    result = evaluate(rule(), {"m": 1}, labels={"gpu": "0"})
    assert result.labels == {"gpu": "0"}
    results = rules.evaluate_all([rule(name="on"), rule(name="off", enabled=False)], {"m": 11})
    assert [(e.rule.name, e.status) for e in results] == [("on", "breaching")]
