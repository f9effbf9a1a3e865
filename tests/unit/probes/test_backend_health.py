from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.probes.backend_health import BackendHealthCheck

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class FakeBackend:
    """A `send` whose answer takes `takes_s` on a fake clock, or raises `error`."""

    def __init__(self) -> None:
        self.now = 100.0
        self.takes_s = 0.2
        self.error: Exception | None = None
        self.bodies: list[Mapping[str, Any]] = []

    def clock(self) -> float:
        return self.now

    async def send(self, body: Mapping[str, Any]) -> object:
        self.bodies.append(body)
        self.now += self.takes_s
        if self.error is not None:
            raise self.error
        return {"choices": [{"message": {"content": "Hi"}}]}


def check_on(backend: FakeBackend, **options: Any) -> BackendHealthCheck:
    return BackendHealthCheck(backend.send, clock=backend.clock, now=lambda: T0, **options)


async def test_a_quick_answer_is_healthy_and_the_request_is_tiny_and_greedy() -> None:
    backend = FakeBackend()
    result = await check_on(backend, model="gemma-3-270m").check()
    assert (result.ts, result.status, result.error, result.consecutive_failures) == (
        T0,
        "healthy",
        None,
        0,
    )
    assert result.latency_ms == pytest.approx(200.0)
    assert backend.bodies == [
        {
            "model": "gemma-3-270m",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 4,
            "temperature": 0,
            "stream": False,
        }
    ]


async def test_a_slow_answer_is_degraded_but_not_a_failure() -> None:
    backend = FakeBackend()
    check = check_on(backend)
    backend.takes_s = 5.5
    result = await check.check()
    assert (result.status, result.consecutive_failures) == ("degraded", 0)
    assert result.latency_ms == pytest.approx(5500.0)
    backend.takes_s = 1.5
    assert (await check_on(backend, degraded_after_s=1.0).check()).status == "degraded"


async def test_errors_are_unhealthy_and_counted_until_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.probes.backend_health")
    backend = FakeBackend()
    check = check_on(backend)
    backend.error = ConnectionRefusedError("[Errno 111] Connection refused")
    first, second = await check.check(), await check.check()
    assert (first.status, first.error, first.consecutive_failures) == (
        "unhealthy",
        "ConnectionRefusedError: [Errno 111] Connection refused",
        1,
    )
    assert second.consecutive_failures == 2 and check.consecutive_failures == 2
    backend.error = None
    recovered = await check.check()
    assert (recovered.status, recovered.consecutive_failures) == ("healthy", 0)
    assert check.last is recovered
    assert [r.getMessage() for r in caplog.records] == [
        "backend health: unhealthy: ConnectionRefusedError: [Errno 111] Connection refused",
        "backend health: healthy again (200 ms)",
    ]


async def test_no_answer_within_the_timeout_is_unhealthy() -> None:
    never = asyncio.Event()

    async def hang(body: Mapping[str, Any]) -> object:
        await never.wait()
        return None

    result = await BackendHealthCheck(hang, degraded_after_s=0.01, timeout_s=0.05).check()
    assert (result.status, result.error) == ("unhealthy", "no answer within 0.05 s")


async def test_a_timeout_raised_by_send_itself_keeps_its_own_text() -> None:
    backend = FakeBackend()
    backend.error = TimeoutError("read timed out")
    result = await check_on(backend).check()
    assert result.error == "TimeoutError: read timed out"


async def test_long_error_text_is_cut() -> None:
    backend = FakeBackend()
    backend.error = RuntimeError("x" * 5000)
    result = await check_on(backend).check()
    assert result.error is not None and len(result.error) == 500


async def test_cancelling_a_check_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def hang(body: Mapping[str, Any]) -> object:
        started.set()
        await asyncio.Event().wait()
        return None

    check = BackendHealthCheck(hang)
    task = asyncio.create_task(check.check())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert check.consecutive_failures == 0 and check.last is None


def test_thresholds_must_make_sense() -> None:
    backend = FakeBackend()
    with pytest.raises(ValueError):
        check_on(backend, degraded_after_s=10, timeout_s=5)
