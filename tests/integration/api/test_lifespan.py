"""The app's lifespan, driven over the ASGI lifespan protocol on the real app and real SQLite: a
start that fails half-way stops what had started, and a stop that fails at shutdown does not
keep the recorder from flushing. One service method is replaced to raise (the fault); what is
asserted is the real services' state and the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.app import MonitorApp, Services, create_app
from monitor.record import RequestRecord, utcnow
from monitor.store.queries import get_request
from tests.support.proxy import proxy_settings

CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "Name three primes."}]}
# records wait in the recorder's queue until it stops: only the shutdown flush writes them
HOLD_RECORDS = {"recorder_flush_interval_s": 60.0, "recorder_batch_size": 1000}


class Lifespan:
    """The server's side of the ASGI lifespan protocol, for one app."""

    def __init__(self, app: MonitorApp) -> None:
        self._inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(app(scope, self._inbox.get, self._outbox.put))

    async def send(self, message_type: str) -> str:
        """Send `message_type`; the type of the app's answer."""
        self._inbox.put_nowait({"type": message_type})
        answer = await asyncio.wait_for(self._outbox.get(), 30)
        return str(answer["type"])


def make_app(backend_url: str, tmp_path: Path, **overrides: Any) -> MonitorApp:
    return create_app(proxy_settings(backend_url, tmp_path, **{**HOLD_RECORDS, **overrides}))


def record(request_id: str) -> RequestRecord:
    return RequestRecord(
        id=request_id, ts=utcnow(), route="/v1/chat/completions", protocol="openai"
    )


def fail_after(method: Callable[..., Awaitable[None]], error: Exception) -> Callable[..., Any]:
    """`method`, then `error`: a stop that did its work but reports a failure."""

    async def failing(*args: Any) -> None:
        await method(*args)
        raise error

    return failing


def backend_is_open(services: Services) -> bool:
    try:
        return services.backend.pool is not None
    except RuntimeError:  # "used before open()", as after close()
        return False


async def test_a_start_failing_half_way_stops_what_had_started(
    fake_backend_url: str, tmp_path: Path
) -> None:
    app = make_app(fake_backend_url, tmp_path)
    services = app.services
    seen: dict[str, bool] = {}

    async def failing_start() -> None:
        seen["backend open"] = backend_is_open(services)
        seen["quality running"] = services.quality.running
        services.recorder.submit(record("submitted-during-start-up"))
        raise RuntimeError("monitoring cannot start")

    services.monitoring.start = failing_start  # type: ignore[method-assign]
    lifespan = Lifespan(app)
    assert await lifespan.send("lifespan.startup") == "lifespan.startup.failed"
    with pytest.raises(RuntimeError, match="monitoring cannot start"):
        await lifespan.task
    assert seen == {"backend open": True, "quality running": True}  # started before the fault
    assert not backend_is_open(services)
    assert not services.quality.running
    # the recorder was stopped, hence flushed: the record it held is in the database
    assert get_request(services.recorder.engine, "submitted-during-start-up") is not None


@pytest.mark.parametrize("fault", ["quality", "limiter"])
async def test_a_stop_failing_at_shutdown_still_flushes_the_records(
    fake_backend_url: str, tmp_path: Path, fault: str
) -> None:
    app = make_app(fake_backend_url, tmp_path, rate_limit="100/minute")
    services = app.services
    error = RuntimeError(f"{fault} cannot stop")
    if fault == "quality":
        services.quality.stop = fail_after(services.quality.stop, error)  # type: ignore[method-assign]
    else:
        limiter = services.admission.limiter
        assert limiter is not None
        limiter.aclose = fail_after(limiter.aclose, error)  # type: ignore[method-assign]
    lifespan = Lifespan(app)
    assert await lifespan.send("lifespan.startup") == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        resp = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200, resp.text
    request_id = resp.headers["x-request-id"]
    assert get_request(services.recorder.engine, request_id) is None  # still queued

    assert await lifespan.send("lifespan.shutdown") == "lifespan.shutdown.failed"
    with pytest.raises(RuntimeError, match=f"{fault} cannot stop"):
        await lifespan.task
    stored = get_request(services.recorder.engine, request_id)
    assert stored is not None and stored.outcome == "ok"
    assert not backend_is_open(services)
    assert not services.quality.running


async def test_shutdown_runs_in_order(fake_backend_url: str, tmp_path: Path) -> None:
    app = make_app(fake_backend_url, tmp_path, rate_limit="100/minute")
    services = app.services
    limiter = services.admission.limiter
    assert limiter is not None
    stopped: list[str] = []

    def noting(name: str, method: Callable[..., Awaitable[None]]) -> Callable[..., Any]:
        async def stop(*args: Any) -> None:
            stopped.append(name)
            await method(*args)

        return stop

    # each stop still runs; the wrapper only notes when
    services.monitoring.stop = noting("monitoring", services.monitoring.stop)  # type: ignore[method-assign]
    services.quality.stop = noting("quality", services.quality.stop)  # type: ignore[method-assign]
    services.backend.close = noting("backend", services.backend.close)  # type: ignore[method-assign]
    services.handler.aclose = noting("guard", services.handler.aclose)  # type: ignore[method-assign]
    limiter.aclose = noting("limiter", limiter.aclose)  # type: ignore[method-assign]
    services.recorder.stop = noting("recorder", services.recorder.stop)  # type: ignore[method-assign]
    lifespan = Lifespan(app)
    assert await lifespan.send("lifespan.startup") == "lifespan.startup.complete"
    assert await lifespan.send("lifespan.shutdown") == "lifespan.shutdown.complete"
    await lifespan.task
    assert stopped == ["monitoring", "quality", "backend", "guard", "limiter", "recorder"]
