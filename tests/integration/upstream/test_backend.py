"""The backend's key goes with every request the monitor sends it, not only proxied ones:
checked against a fake backend that answers 401 without it (as vLLM with `--api-key` does)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

KEY = "sk-backend-0123"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


def test_the_backend_key_goes_with_listings_ready_health_checks_and_scrapes(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    fake_backend.required_key = KEY
    proxy = make_proxy(
        backend_api_key=KEY,
        health={"enabled": True, "interval_s": 0.2, "timeout_s": 2},
        backend_metrics={"enabled": True, "interval_s": 0.2},
    )
    assert httpx.get(f"{proxy.url}/v1/models").status_code == 200
    assert httpx.get(f"{proxy.url}/api/tags").json()["models"]
    assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200

    def seen() -> tuple[bool, bool]:
        received = list(fake_backend.received)
        scraped = any(r.path == "/metrics" for r in received)
        checked = any(isinstance(r.body, dict) and r.body.get("temperature") == 0 for r in received)
        return scraped, checked

    deadline = time.monotonic() + 10
    while seen() != (True, True):  # a metrics scrape and a health check happened
        assert time.monotonic() < deadline, seen()
        time.sleep(0.05)
    ready = httpx.get(f"{proxy.url}/ready")
    assert ready.status_code == 200, ready.text  # the backend probe and health checks passed
    missing = [
        f"{r.method} {r.path}"
        for r in fake_backend.received
        if r.headers.get("authorization") != f"Bearer {KEY}"
    ]
    assert missing == []
