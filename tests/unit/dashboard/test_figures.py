"""The figures pages show, from the rollups' results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.dashboard import figures

from monitor.alerts.rules import default_rules
from monitor.store.histogram import Histogram
from monitor.store.rollups import ProbePoint, QualityPoint, RequestSlice, VerdictSlice

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_seed_thresholds_come_from_the_default_rules_in_chart_units() -> None:
    seed = figures.seed_thresholds()
    by_metric = {r.metric: r.threshold for r in default_rules()}
    assert seed["mean_response_time_s"].value == by_metric["mean_response_time_s"] * 1000
    assert seed["success_rate"].value == by_metric["success_rate"] * 100
    assert seed["process_memory_mb"].value == by_metric["process_memory_mb"]
    assert seed["mean_tokens_per_s"].value == by_metric["mean_tokens_per_s"]


def test_headline_rates_count_only_what_the_backend_served() -> None:
    total = RequestSlice(T0, requests=10, latency_ms=Histogram.of([100.0] * 6),
                         outcomes={"ok": 6, "backend_error": 2, "blocked_input": 2})  # fmt: skip
    numbers = figures.headline(total)
    assert numbers["success_rate"] == 75.0
    assert numbers["error_rate"] == 25.0
    assert numbers["blocked"] == 2.0
    assert numbers["latency_mean"] == 100.0
    assert numbers["ttft_p95"] is None  # no data, not zero
    empty = figures.headline(RequestSlice(T0))
    assert empty["success_rate"] is None and empty["latency_p95"] is None


def test_request_rows_give_a_per_minute_rate_whatever_the_step() -> None:
    rows = figures.request_rows([RequestSlice(T0, requests=30)], timedelta(minutes=5))
    assert rows[0]["requests/min"] == 6.0


def test_verdicts_are_counted_by_action_and_grouped_by_check() -> None:
    counts = {("input", "block", "injection", "inj.ignore", "default"): 3,
              ("output", "block", "secret", "aws", "default"): 2,
              ("input", "redact", "pii", "pii.email", "default"): 4,
              ("input", "allow", "", "", "default"): 50}  # fmt: skip
    rows = figures.verdict_rows([VerdictSlice(T0, counts), VerdictSlice(T0 + timedelta(1), counts)])
    assert figures.action_counts(rows) == {
        "blocked input": 6, "blocked output": 4, "redacted": 8, "flagged": 0,
    }  # fmt: skip
    by_policy = figures.verdict_totals(rows, ["policy"])
    assert by_policy == [{"policy": "default", "verdicts": 18}]


def test_content_shows_text_only_when_it_is_stored() -> None:
    assert figures.content("hello", "ab" * 32, "full") == "hello"
    assert figures.content("hello", "ab" * 32, "none") == "sha256:" + "ab" * 8 + "…"
    assert figures.content(None, None, "full") == "-"


def test_probe_and_quality_means_weigh_every_sample_alike() -> None:
    series = {("energy_j", "gpu"): [ProbePoint(T0, 10.0, 5.0, 15.0, 4)],
              ("energy_tokens", "gpu"): [ProbePoint(T0, 20.0, 20.0, 20.0, 2)]}  # fmt: skip
    assert figures.energy_per_1k_tokens(series) == 1000.0
    quality = {("heuristic", "overall"): [QualityPoint(T0, 0.5, 1), QualityPoint(T0, 1.0, 3)]}
    assert figures.quality_means(quality) == {"heuristic.overall": 0.875}


def test_a_duration_fits_its_tile_in_ms_below_a_second_and_in_seconds_above() -> None:
    assert figures.duration(None) == "-"
    assert figures.duration(850.4) == "850 ms"
    assert figures.duration(10_960.0) == "10.96 s"
