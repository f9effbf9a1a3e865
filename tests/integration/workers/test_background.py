"""The workers inside the running app: probes (with a scripted NVML), backend health checks
against a backend that slows down and stops, alerts reaching a receiver, and what /ready,
/admin and /metrics show of it all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.store import alerts as alert_store
from monitor.store.samples import probe_values
from tests.support.asgi import read_body, serve_lifespan
from tests.support.fake_backend import FakeBackend
from tests.support.fake_nvml import FakeNvmlReader, device
from tests.support.proxy import RunningProxy, proxy_settings, start_proxy
from tests.support.servers import ThreadedServer, free_port
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

ADMIN = "admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


class Backend:
    """A fake backend on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        self.app = FakeBackend()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedServer | None = None

    def up(self) -> None:
        self._server = ThreadedServer(self.app, self.port).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=5)
            self._server = None


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    b.up()
    yield b
    b.down()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def make(
        backend_url: str, options: dict[str, Any] | None = None, **settings: Any
    ) -> RunningProxy:
        settings.setdefault("admin_token", ADMIN)
        directory = tmp_path / f"p{len(started)}"
        directory.mkdir()
        proxy = start_proxy(
            proxy_settings(backend_url, directory, **settings), monitoring_options=options
        )
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def poll(check: Callable[[], Any], within_s: float = 15.0, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s}s: {check}")
        time.sleep(every_s)


def test_probes_store_samples_and_show_on_metrics_and_stats(
    backend: Backend, start: Callable[..., RunningProxy]
) -> None:
    reader = FakeNvmlReader(devices=[device("GPU-a", temperature=71.0, power_mw=100_000.0)])
    proxy = start(
        backend.url,
        {"nvml_reader": lambda: reader},
        probes={"enabled": True, "interval_s": 0.1, "backend_port": backend.port},
    )
    poll(lambda: probe_values(proxy.engine, metric="gpu_temperature_c"))
    for _ in range(3):
        assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200
    # the energy meter counts a request when it ends, the summary once the recorder wrote it
    stats = poll(
        lambda: (
            (s := httpx.get(f"{proxy.url}/admin/stats", headers=AUTH).json())["energy"][
                "requests_measured"
            ]
            >= 3
            and (s["summary"]["total_requests"] or 0) >= 3
            and s
        )
    )
    assert stats["gpus"][0]["temperature_c"] == 71.0
    assert stats["gpu_probe"] == "available"
    assert stats["host"]["memory_used_mb"] > 0 and stats["host"]["proxy_rss_mb"] > 0
    # the fake backend runs in this process: the probe found it by its port
    assert stats["host"]["backend_rss_mb"] > 0
    assert stats["energy"]["joules_total"] > 0  # 100 W shared among the requests
    assert stats["summary"]["total_requests"] == 3
    assert {w["name"] for w in stats["workers"]} == {"probes", "rollups", "retention"}

    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert 'gemma_monitor_gpu_temperature_celsius{gpu="0"} 71.0' in metrics
    assert 'gemma_monitor_process_resident_bytes{process="proxy"}' in metrics
    assert "gemma_monitor_energy_joules_total" in metrics
    stored = {v.metric for v in probe_values(proxy.engine, limit=500)}
    assert {
        "host_cpu_percent",
        "host_memory_used_mb",
        "proxy_rss_mb",
        "backend_rss_mb",
        "gpu_memory_pct",
        "gpu_power_w",
    } <= stored
    poll(lambda: probe_values(proxy.engine, metric="energy_j"))


def test_without_nvml_the_rest_keeps_working(
    backend: Backend, start: Callable[..., RunningProxy]
) -> None:
    proxy = start(backend.url, probes={"enabled": True, "interval_s": 0.1})  # the real NVML
    poll(lambda: probe_values(proxy.engine, metric="host_cpu_percent"))
    stats = httpx.get(f"{proxy.url}/admin/stats", headers=AUTH).json()
    assert stats["gpus"] == []
    assert "NVML" in stats["gpu_probe"] or "nvidia-ml-py" in stats["gpu_probe"]
    assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200


def test_health_checks_follow_a_backend_that_slows_and_stops(
    backend: Backend, start: Callable[..., RunningProxy]
) -> None:
    proxy = start(
        backend.url,
        health={"enabled": True, "interval_s": 0.2, "degraded_after_s": 0.4, "timeout_s": 2},
    )

    def health() -> dict[str, Any]:
        return httpx.get(f"{proxy.url}/ready", headers=AUTH).json().get("backend_health") or {}

    assert poll(lambda: health().get("status") == "healthy")
    ready = httpx.get(f"{proxy.url}/ready", headers=AUTH)
    assert ready.status_code == 200
    checks = [r for r in backend.app.received if r.path == "/v1/chat/completions"]
    assert checks and checks[0].body["messages"] == [{"role": "user", "content": "Hello"}]
    assert checks[0].body["max_tokens"] == 4 and checks[0].body["temperature"] == 0

    backend.app.script.think_s = 0.6
    assert poll(lambda: health().get("status") == "degraded")
    backend.app.script.think_s = 0.0

    backend.down()
    assert poll(lambda: health().get("status") == "unhealthy")
    ready = httpx.get(f"{proxy.url}/ready", headers=AUTH)
    assert ready.status_code == 503
    assert "unreachable" in ready.json()["backend_health"]["error"]
    stats = httpx.get(f"{proxy.url}/admin/stats", headers=AUTH).json()
    assert stats["backend_health"]["status"] == "unhealthy"
    assert "gemma_monitor_backend_up 0.0" in httpx.get(f"{proxy.url}/metrics").text

    backend.up()
    assert poll(lambda: health().get("status") == "healthy")
    ups = [v.value for v in probe_values(proxy.engine, metric="backend_up", limit=500)]
    assert 0.0 in ups and 1.0 in ups


def test_an_unhealthy_backend_fires_an_alert_at_the_receiver_and_resolves(
    backend: Backend, start: Callable[..., RunningProxy]
) -> None:
    receiver = RecordingReceiver(secret="hook-secret-42")
    rule = {
        "name": "backend_unhealthy",
        "metric": "backend_up",
        "comparison": "<",
        "threshold": 1,
        "window": "2s",
        "for": "0.5s",
        "resolve_after": "0.5s",
        "severity": "critical",
        "no_data": "keep",
    }
    with ReceiverServer(receiver) as hook:
        proxy = start(
            backend.url,
            health={"enabled": True, "interval_s": 0.2, "timeout_s": 1},
            alerts={
                "enabled": True,
                "interval_s": 0.2,
                "default_rules": False,
                "rules": [rule],
            },
            webhook_url=hook.url,
            webhook_secret="hook-secret-42",
        )
        time.sleep(0.5)
        assert receiver.deliveries == []  # healthy: nothing to say
        backend.down()
        (firing,) = receiver.wait_for(1, timeout=15)
        assert firing.verified is True
        body = firing.json()
        assert (body["alert"], body["state"], body["severity"]) == (
            "backend_unhealthy",
            "firing",
            "critical",
        )

        alerts = httpx.get(f"{proxy.url}/admin/alerts?state=firing", headers=AUTH).json()
        (alert,) = alerts["alerts"]
        fingerprint = alert["fingerprint"]
        ack = httpx.post(
            f"{proxy.url}/admin/alerts/{fingerprint}/ack", headers=AUTH, json={"by": "oncall"}
        )
        assert ack.status_code == 200
        assert (
            'gemma_monitor_alerts{severity="critical",state="firing"} 1.0'
            in httpx.get(f"{proxy.url}/metrics").text
        )

        backend.up()
        deliveries = receiver.wait_for(2, timeout=15)
        assert [d.json()["state"] for d in deliveries] == ["firing", "resolved"]
        assert deliveries[1].json()["acknowledged"] is True
        history = httpx.get(f"{proxy.url}/admin/alerts/{fingerprint}", headers=AUTH).json()
        assert [e["kind"] for e in history["events"]] == [
            "pending",
            "firing",
            "acknowledged",
            "resolved",
        ]
        time.sleep(0.6)
        assert len(receiver.deliveries) == 2  # no storm: one notification per transition
    rows = alert_store.list_deliveries(proxy.engine)
    assert sorted(d.status for d in rows) == ["delivered", "delivered"]


def test_admin_monitoring_routes_need_the_token_and_check_input(
    backend: Backend, start: Callable[..., RunningProxy]
) -> None:
    proxy = start(backend.url, alerts={"enabled": True, "interval_s": 60})
    for path in ("/admin/stats", "/admin/alerts", "/admin/summary", "/admin/deliveries"):
        assert httpx.get(f"{proxy.url}{path}").status_code == 401
    assert httpx.get(f"{proxy.url}/admin/summary?window=banana", headers=AUTH).status_code == 422
    assert httpx.get(f"{proxy.url}/admin/summary?window=400d", headers=AUTH).status_code == 422
    assert httpx.get(f"{proxy.url}/admin/alerts?state=odd", headers=AUTH).status_code == 422
    missing = httpx.post(f"{proxy.url}/admin/alerts/0123456789abcdef/ack", headers=AUTH)
    assert missing.status_code == 404
    assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200
    summary = poll(
        lambda: (
            (s := httpx.get(f"{proxy.url}/admin/summary?window=5m", headers=AUTH).json())[
                "total_requests"
            ]
            and s
        )
    )
    assert summary["successful_requests"] == 1 and summary["success_rate"] == 1.0


class MetricsBackend:
    """An HTTP server answering GET /metrics with a vLLM exposition (the unit tests' sample)."""

    def __init__(self) -> None:
        samples = Path(__file__).parents[2] / "unit" / "probes" / "samples"
        self.text = (samples / "vllm_v1_metrics.txt").read_bytes()
        self.scrapes = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        await read_body(receive)
        found = scope["path"] == "/metrics"
        self.scrapes += found
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"text/plain; version=0.0.4")],
            }
        )
        await send({"type": "http.response.body", "body": self.text if found else b"{}"})


def test_backend_metrics_are_scraped_into_the_store_and_metrics(
    start: Callable[..., RunningProxy],
) -> None:
    app = MetricsBackend()
    server = ThreadedServer(app).start()
    try:
        proxy = start(server.url, backend_metrics={"enabled": True, "interval_s": 0.1})
        poll(lambda: probe_values(proxy.engine, metric="backend_kv_cache_usage"))
        stored = {v.metric: v for v in probe_values(proxy.engine, probe="backend", limit=50)}
        assert stored["backend_requests_running"].value == 5.0
        assert stored["backend_requests_waiting"].value == 4.0
        assert stored["backend_kv_cache_usage"].value == 0.5
        assert stored["backend_requests_running"].detail == "vllm"
        metrics = httpx.get(f"{proxy.url}/metrics").text
        assert "gemma_monitor_backend_kv_cache_usage_ratio 0.5" in metrics
        assert "gemma_monitor_backend_requests_waiting 4.0" in metrics
    finally:
        server.stop(timeout=5)
