"""Backend metrics parsing on hand-written exposition samples (tests/unit/probes/samples/)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.probes.backend_metrics import (
    BackendMetricsSample,
    BackendMetricsScraper,
    parse_backend_metrics,
    ttft_mean_between,
)

SAMPLES = Path(__file__).parent / "samples"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def sample_text(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_vllm_v1_series_are_summed_across_engines_and_ratios_averaged() -> None:
    sample = parse_backend_metrics(sample_text("vllm_v1_metrics.txt"), T0)
    assert sample == BackendMetricsSample(
        ts=T0,
        flavor="vllm",
        requests_running=5.0,
        requests_waiting=4.0,
        kv_cache_usage=0.5,
        ttft_sum_s=16.0,
        ttft_count=160.0,
        prompt_tokens_total=20000.0,
        generation_tokens_total=51200.0,
    )
    assert sample.ttft_mean_s == pytest.approx(0.1)


def test_older_vllm_names_kv_cache_usage_differently() -> None:
    sample = parse_backend_metrics(sample_text("vllm_v0_metrics.txt"), T0)
    assert (sample.flavor, sample.requests_running, sample.kv_cache_usage) == ("vllm", 1.0, 0.05)
    assert sample.ttft_count == 0.0 and sample.ttft_mean_s is None  # no request yet
    assert sample.prompt_tokens_total is None


def test_llamacpp_server_series() -> None:
    sample = parse_backend_metrics(sample_text("llamacpp_metrics.txt"), T0)
    assert sample == BackendMetricsSample(
        ts=T0,
        flavor="llamacpp",
        requests_running=1.0,
        requests_waiting=2.0,
        kv_cache_usage=0.125,
        prompt_tokens_total=1024.0,
        generation_tokens_total=4096.0,
    )


def test_a_series_the_backend_no_longer_exposes_is_none() -> None:
    text = "\n".join(
        line for line in sample_text("llamacpp_metrics.txt").splitlines() if "kv_cache" not in line
    )
    sample = parse_backend_metrics(text + "\n", T0)
    assert sample.kv_cache_usage is None and sample.requests_waiting == 2.0


def test_other_exposition_has_no_flavor_and_malformed_text_raises() -> None:
    other = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.5\n"
    assert parse_backend_metrics(other, T0) == BackendMetricsSample(ts=T0, flavor=None)
    with pytest.raises(ValueError):
        parse_backend_metrics("vllm:num_requests_running abc\n", T0)


def ttft_text(total: float, count: float) -> str:
    """A hand-written minimal vLLM exposition with only the TTFT histogram's sum and count."""
    return (
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        f'vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="g"}} {count}\n'
        f'vllm:time_to_first_token_seconds_count{{model_name="g"}} {count}\n'
        f'vllm:time_to_first_token_seconds_sum{{model_name="g"}} {total}\n'
    )


def test_ttft_mean_between_scrapes_and_across_a_backend_restart() -> None:
    first = parse_backend_metrics(ttft_text(10.0, 100), T0)
    later = parse_backend_metrics(ttft_text(13.0, 110), T0)
    assert ttft_mean_between(None, first) == pytest.approx(0.1)
    assert ttft_mean_between(first, later) == pytest.approx(0.3)
    assert ttft_mean_between(later, later) is None  # no request in between
    restarted = parse_backend_metrics(ttft_text(1.0, 4), T0)
    assert ttft_mean_between(later, restarted) == pytest.approx(0.25)


class ScriptedFetch:
    """Answers each fetch with the next item: exposition text, or an exception to raise."""

    def __init__(self, *answers: str | Exception) -> None:
        self._answers: Iterator[str | Exception] = iter(answers)

    async def __call__(self) -> str:
        answer = next(self._answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_scraper_fills_the_recent_ttft_mean() -> None:
    scraper = BackendMetricsScraper(
        ScriptedFetch(ttft_text(10.0, 100), ttft_text(13.0, 110)), now=lambda: T0
    )
    first, second = await scraper.scrape(), await scraper.scrape()
    assert first is not None and first.ttft_recent_mean_s == pytest.approx(0.1)
    assert second is not None and second.ttft_recent_mean_s == pytest.approx(0.3)


async def test_scraper_failures_give_none_and_one_log_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.probes.backend_metrics")
    refused = ConnectionRefusedError("connection refused")
    scraper = BackendMetricsScraper(
        ScriptedFetch(
            refused,
            refused,
            "# TYPE up gauge\nup 1\n",
            "vllm:num_requests_running abc\n",
            sample_text("llamacpp_metrics.txt"),
        )
    )
    results = [await scraper.scrape() for _ in range(5)]
    assert results[:4] == [None, None, None, None]
    assert results[4] is not None and results[4].flavor == "llamacpp"
    assert [r.getMessage() for r in caplog.records] == [
        "backend metrics: cannot fetch the backend's metrics: "
        "ConnectionRefusedError: connection refused",
        "backend metrics: the backend's metrics have no vLLM or llama.cpp series",
        "backend metrics: the backend's metrics do not parse: "
        "ValueError: could not convert string to float: 'abc'",
        "backend metrics: scraping again (llamacpp)",
    ]
