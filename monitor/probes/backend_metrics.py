"""Backend metrics: selected series from the backend's own Prometheus endpoint.

vLLM (`/metrics`) and llama.cpp's server (started with `--metrics`) expose queue length, running
requests, KV-cache usage and token counters; vLLM also a time-to-first-token histogram. These
are read into one `BackendMetricsSample` with the same fields whatever the backend, so the store
and the alerts need not know which one it is:

| field | vLLM | llama.cpp server |
|---|---|---|
| requests_running | vllm:num_requests_running | llamacpp:requests_processing |
| requests_waiting | vllm:num_requests_waiting | llamacpp:requests_deferred |
| kv_cache_usage (0..1) | vllm:kv_cache_usage_perc, older vllm:gpu_cache_usage_perc | llamacpp:kv_cache_usage_ratio |
| ttft_sum_s, ttft_count | vllm:time_to_first_token_seconds (histogram) | |
| prompt_tokens_total | vllm:prompt_tokens_total | llamacpp:prompt_tokens_total |
| generation_tokens_total | vllm:generation_tokens_total | llamacpp:tokens_predicted_total |

Series with labels (vLLM's `model_name`, `engine`) are summed, except ratios, which are averaged.
`parse_backend_metrics` is pure; `BackendMetricsScraper.scrape()` is the worker's step around an
injected async `fetch` that returns the exposition text (so no HTTP library is imported here).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from monitor.probes.backend_health import describe_error
from monitor.record import utcnow

logger = logging.getLogger(__name__)

Flavor = Literal["vllm", "llamacpp"]


@dataclass(frozen=True, slots=True)
class _Series:
    field: str
    names: tuple[str, ...]  # sample names, the first present wins (newest name first)
    mean: bool = False  # average across label sets (a ratio) instead of summing


_SELECTED = (
    _Series("requests_running", ("vllm:num_requests_running", "llamacpp:requests_processing")),
    _Series("requests_waiting", ("vllm:num_requests_waiting", "llamacpp:requests_deferred")),
    _Series(
        "kv_cache_usage",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"),
        mean=True,
    ),
    _Series("ttft_sum_s", ("vllm:time_to_first_token_seconds_sum",)),
    _Series("ttft_count", ("vllm:time_to_first_token_seconds_count",)),
    _Series("prompt_tokens_total", ("vllm:prompt_tokens_total", "llamacpp:prompt_tokens_total")),
    _Series(
        "generation_tokens_total",
        ("vllm:generation_tokens_total", "llamacpp:tokens_predicted_total"),
    ),
)
_WANTED = frozenset(name for series in _SELECTED for name in series.names)


@dataclass(frozen=True, slots=True)
class BackendMetricsSample:
    ts: datetime
    flavor: Flavor | None
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1, despite vLLM's "_perc"
    ttft_sum_s: float | None = None  # cumulative, since the backend started
    ttft_count: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    ttft_recent_mean_s: float | None = None  # since the previous scrape (set by the scraper)

    @property
    def ttft_mean_s(self) -> float | None:
        """Mean time to first token since the backend started."""
        if self.ttft_sum_s is None or not self.ttft_count:
            return None
        return self.ttft_sum_s / self.ttft_count


def parse_backend_metrics(text: str, ts: datetime) -> BackendMetricsSample:
    """The selected series of one exposition. Raises ValueError on malformed text."""
    values: dict[str, list[float]] = defaultdict(list)
    flavor: Flavor | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if flavor is None and sample.name.startswith(("vllm:", "llamacpp:")):
                flavor = "vllm" if sample.name.startswith("vllm:") else "llamacpp"
            if sample.name in _WANTED:
                values[sample.name].append(float(sample.value))
    fields: dict[str, float] = {}
    for series in _SELECTED:
        found = next((values[name] for name in series.names if values.get(name)), None)
        if found:
            fields[series.field] = sum(found) / len(found) if series.mean else sum(found)
    return BackendMetricsSample(ts=ts, flavor=flavor, **fields)


def ttft_mean_between(
    previous: BackendMetricsSample | None, current: BackendMetricsSample
) -> float | None:
    """Mean time to first token of the requests that started between two scrapes.

    A count lower than before means the backend restarted: its histogram began again at zero.
    """
    if current.ttft_sum_s is None or current.ttft_count is None:
        return None
    total, count = current.ttft_sum_s, current.ttft_count
    if (
        previous is not None
        and previous.ttft_sum_s is not None
        and previous.ttft_count is not None
        and previous.ttft_count <= count
    ):
        total -= previous.ttft_sum_s
        count -= previous.ttft_count
    return total / count if count > 0 else None


class BackendMetricsScraper:
    """One `scrape()` per tick: fetch, parse, and the TTFT mean since the previous scrape.

    A failed fetch, malformed text, or text with none of the selected series gives None and one
    log line until a scrape succeeds again.
    """

    def __init__(
        self, fetch: Callable[[], Awaitable[str]], *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self._fetch = fetch
        self._now = now
        self._previous: BackendMetricsSample | None = None
        self._problem: str | None = None  # the last one logged

    async def scrape(self) -> BackendMetricsSample | None:
        try:
            text = await self._fetch()
        except Exception as exc:  # a backend without metrics is a normal condition
            self._fail(f"cannot fetch the backend's metrics: {describe_error(exc)}")
            return None
        try:
            sample = parse_backend_metrics(text, self._now())
        except ValueError as exc:
            self._fail(f"the backend's metrics do not parse: {describe_error(exc)}")
            return None
        if sample.flavor is None:
            self._fail("the backend's metrics have no vLLM or llama.cpp series")
            return None
        sample = dataclasses.replace(
            sample, ttft_recent_mean_s=ttft_mean_between(self._previous, sample)
        )
        self._previous = sample
        if self._problem is not None:
            logger.info("backend metrics: scraping again (%s)", sample.flavor)
            self._problem = None
        return sample

    def _fail(self, problem: str) -> None:
        if problem != self._problem:
            logger.warning("backend metrics: %s", problem)
            self._problem = problem
