"""A real Gemma backend stopped under traffic: the proxy's alerts fire at a real webhook
receiver within the rule's window, and resolve once the backend is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from monitor.backends.local import LocalGemmaServer
from monitor.store import alerts as alert_store
from tests.support.load import Background
from tests.support.proxy import RunningProxy
from tests.support.tcp_relay import TcpRelay
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

pytestmark = pytest.mark.e2e

WINDOW_S = 10.0
SECRET = "e2e-hook-secret"


class Traffic(Background):
    """One client sending a short chat request every `gap_s` seconds (at most `limit`)."""

    def __init__(self, url: str, model: str, gap_s: float = 0.25, limit: int = 400) -> None:
        super().__init__(gap_s, timeout=30, limit=limit)
        self.url, self.model = url, model
        self.statuses: list[int] = []

    def send(self, client: httpx.Client) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 3,
            "temperature": 0,
        }
        try:
            status = client.post(f"{self.url}/v1/chat/completions", json=body).status_code
        except httpx.HTTPError:
            status = 0
        self.statuses.append(status)


def test_backend_stopped_under_traffic_fires_and_resolves(
    make_proxy: Callable[..., RunningProxy], gemma_backend: LocalGemmaServer
) -> None:
    target = urlsplit(gemma_backend.url)
    rules = [
        {
            "name": "low_success_rate",
            "metric": "success_rate",
            "comparison": "<",
            "threshold": 0.95,
            "window": WINDOW_S,
            "for": "1s",
            "resolve_after": "2s",
            "severity": "high",
        },
        {
            "name": "backend_unhealthy",
            "metric": "backend_up",
            "comparison": "<",
            "threshold": 1,
            "window": WINDOW_S,
            "for": "1s",
            "resolve_after": "2s",
            "severity": "critical",
            "no_data": "keep",
        },
    ]
    receiver = RecordingReceiver(secret=SECRET)
    with (
        TcpRelay(target.hostname or "127.0.0.1", target.port or 80) as relay,
        ReceiverServer(receiver) as hook,
    ):
        proxy = make_proxy(
            backend_url=f"http://127.0.0.1:{relay.port}",
            read_timeout_s=60.0,
            health={"enabled": True, "interval_s": 0.5, "timeout_s": 10},
            alerts={
                "enabled": True,
                "interval_s": 0.5,
                "default_rules": False,
                "rules": rules,
            },
            webhook_url=hook.url,
            webhook_secret=SECRET,
        )
        with Traffic(proxy.url, gemma_backend.model_alias) as traffic:
            deadline = time.monotonic() + 60
            while traffic.statuses.count(200) < 5:  # a healthy stretch first
                assert time.monotonic() < deadline, traffic.statuses
                time.sleep(0.2)
            assert receiver.deliveries == []

            relay.cut()
            cut_at = time.monotonic()
            firing = receiver.wait_for(2, timeout=WINDOW_S + 20)
            fired_after = time.monotonic() - cut_at
            print(f"\nboth alerts firing at the receiver {fired_after:.1f} s after the cut")
            assert fired_after <= WINDOW_S  # within the rules' window
            assert sorted(d.json()["alert"] for d in firing) == [
                "backend_unhealthy",
                "low_success_rate",
            ]
            assert all(d.json()["state"] == "firing" and d.verified for d in firing)

            relay.restore()
            restored_at = time.monotonic()
            done = receiver.wait_for(4, timeout=WINDOW_S + 40)
            print(f"resolved {time.monotonic() - restored_at:.1f} s after the backend returned")
            resolved = [d.json() for d in done[2:]]
            assert sorted(r["alert"] for r in resolved) == ["backend_unhealthy", "low_success_rate"]
            assert all(r["state"] == "resolved" for r in resolved)
        failures = traffic.statuses.count(502) + traffic.statuses.count(504)
        assert failures > 0 and traffic.statuses[-1] == 200
        time.sleep(1.0)
        assert len(receiver.deliveries) == 4  # exactly one per transition
    stored = alert_store.list_alerts(proxy.engine)
    assert sorted((a["rule"], a["state"]) for a in stored) == [
        ("backend_unhealthy", "resolved"),
        ("low_success_rate", "resolved"),
    ]
