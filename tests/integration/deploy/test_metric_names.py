"""Every metric the Prometheus rules and the Grafana dashboard query exists on a real /metrics.

A real proxy (with the cluster's guard policy from deploy/kubernetes, a scripted NVML so GPU
metrics exist, probes, health checks, alerts and quality scoring on) takes plain, streaming,
blocked, redacted, invalid and unauthorised requests; then /metrics is scraped and every metric
name read by a PromQL parser out of the rules and the dashboard must be on it. Recording rule
outputs are made by Prometheus from the others, and `up` by Prometheus itself. The probe paths
the manifests use answer on the same proxy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy_files import (
    KUBERNETES,
    expressions,
    metric_names,
    monitor_containers,
    recording_rules,
    render,
)
from tests.support.fake_backend import FakeBackend
from tests.support.fake_nvml import FakeNvmlReader, device
from tests.support.proxy import RunningProxy, proxy_settings, start_proxy
from tests.support.servers import ThreadedServer

KEY = "deploy-test-key-0123456789"
HEADERS = {"authorization": f"Bearer {KEY}"}
PROMETHEUS_OWN = {"up"}  # the scrape's own series, not the monitor's


def chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": "gemma", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def backend() -> Iterator[ThreadedServer]:
    server = ThreadedServer(FakeBackend()).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(backend: ThreadedServer, tmp_path: Path) -> Iterator[RunningProxy]:
    reader = FakeNvmlReader(devices=[device("GPU-0"), device("GPU-1", temperature=71.0)])
    settings = proxy_settings(
        backend.url,
        tmp_path,
        api_keys=[KEY],
        policies=str(KUBERNETES / "base" / "policy.yaml"),
        probes={"enabled": True, "interval_s": 0.2, "backend_port": backend.port},
        health={"enabled": True, "interval_s": 0.2},
        alerts={"enabled": True, "interval_s": 0.2},
        quality={"sample_rate": 1.0},
    )
    running = start_proxy(settings, monitoring_options={"nvml_reader": lambda: reader})
    yield running
    running.stop()


def send_traffic(url: str) -> None:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=chat("Hello")).status_code == 200
            assert client.post("/api/chat", json={**chat("Hi"), "stream": False}).status_code == 200
            with client.stream(
                "POST", "/v1/chat/completions", json=chat("Stream it", stream=True)
            ) as stream:
                assert stream.status_code == 200
                assert "".join(stream.iter_text()).rstrip().endswith("[DONE]")
        blocked = client.post("/v1/chat/completions", json=chat("How to synthesize sarin?"))
        assert blocked.status_code == 400 and "CONTENT_FILTERED" in blocked.text
        redacted = client.post("/v1/chat/completions", json=chat("Mail me at a.b@example.com"))
        assert redacted.status_code == 200
        invalid = client.post("/v1/chat/completions", json={"model": "gemma", "messages": []})
        assert invalid.status_code == 400
        refused = httpx.post(f"{url}/v1/chat/completions", json=chat("Hello"), timeout=30)
        assert refused.status_code == 401


def exposed(url: str) -> set[str]:
    """Every sample name /metrics exposes (counters with _total, histograms' _bucket ...)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_queried_metric_is_on_metrics(proxy: RunningProxy) -> None:
    send_traffic(proxy.url)
    wanted: dict[str, str] = {}
    recorded = set(recording_rules())
    for expression in expressions():
        for name in metric_names(expression.promql) - recorded - PROMETHEUS_OWN:
            wanted.setdefault(name, expression.where)
    assert len(wanted) >= 30
    # probes, health checks and quality scores arrive on their own schedule: wait, bounded
    deadline = time.monotonic() + 30
    while True:
        missing = {name: where for name, where in wanted.items() if name not in exposed(proxy.url)}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert missing == {}, f"queried but not on /metrics: {missing}"


def test_a_misspelt_metric_would_be_missed(proxy: RunningProxy) -> None:
    """The comparison above is between real names: one letter off is not on /metrics."""
    names = exposed(proxy.url)
    assert "gemma_monitor_recorder_records_written_total" in names
    assert "gemma_monitor_recorder_records_writen_total" not in names


def test_the_manifests_probe_paths_answer(proxy: RunningProxy) -> None:
    paths = set()
    for _, container in monitor_containers(render("replicas")):
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in container:
                paths.add(container[kind]["httpGet"]["path"])
    assert paths == {"/health", "/ready"}
    deadline = time.monotonic() + 15  # /ready waits for the first health check
    for path in sorted(paths):
        while (status := httpx.get(f"{proxy.url}{path}", timeout=10).status_code) != 200:
            assert time.monotonic() < deadline, f"{path}: {status}"
            time.sleep(0.1)
