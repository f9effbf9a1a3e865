"""`/ready` through the real app: a status for anyone, the reasons for the operator only, and
one backend and database probe per second however many ask."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.servers import free_port

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_ready_tells_anyone_only_its_status(make_proxy: Callable[..., RunningProxy]) -> None:
    backend_url = f"http://127.0.0.1:{free_port()}"
    proxy = make_proxy(backend_url=backend_url, admin_token=ADMIN_TOKEN)
    anyone = httpx.get(f"{proxy.url}/ready")
    assert anyone.status_code == 503 and anyone.json() == {"status": "not ready"}
    assert "127.0.0.1" not in anyone.text
    wrong = httpx.get(f"{proxy.url}/ready", headers={"authorization": "Bearer nope"})
    assert wrong.json() == {"status": "not ready"}
    operator = httpx.get(f"{proxy.url}/ready", headers=ADMIN)
    assert operator.status_code == 503
    detail = operator.json()
    assert detail["database"] == "ok" and "unreachable" in detail["backend"]


def test_ready_when_ready(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    proxy = make_proxy()  # no admin token: never the details
    ready = httpx.get(f"{proxy.url}/ready", headers=ADMIN)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_a_flood_of_ready_costs_one_probe_a_second(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    proxy = make_proxy()

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            answers = await asyncio.gather(*(client.get("/ready") for _ in range(200)))
        return [a.status_code for a in answers]

    statuses = asyncio.run(flood())
    assert statuses == [200] * 200
    probes = [r for r in fake_backend.received if r.path == "/v1/models"]
    assert 1 <= len(probes) <= 3, len(probes)
