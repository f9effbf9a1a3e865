"""`BackendHealthCheck`: the periodic synthetic request that says whether the backend answers.

One `check()` sends a tiny greedy chat request ("Hello", a few tokens, temperature 0) through
the injected `send` and times it end to end:

    answered in time          → healthy
    answered, but slower than `degraded_after_s` (5 s, the seed's threshold) → degraded
    raised, or no answer within `timeout_s` → unhealthy (with the error's text)

`send` is whatever the app uses to reach the backend (the proxy's own backend client, so no HTTP
library is imported here); it must raise when the backend fails (connection refused, a non-2xx
status, a body that is not a completion) and may return anything when it succeeds. Only
`unhealthy` counts as a failure in `consecutive_failures`; a slow answer is still an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from monitor.record import utcnow

logger = logging.getLogger(__name__)

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
Send = Callable[[Mapping[str, Any]], Awaitable[object]]

_MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    ts: datetime
    status: HealthStatus
    latency_ms: float  # until the answer, the error, or the timeout
    error: str | None
    consecutive_failures: int  # unhealthy results in a row, this one included


def health_request(model: str | None, max_tokens: int = 4) -> dict[str, Any]:
    """The synthetic request, in the OpenAI chat shape."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": False,
    }
    if model is not None:
        body["model"] = model
    return body


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:_MAX_ERROR_CHARS]


class BackendHealthCheck:
    """Runs one timed synthetic request per `check()` and remembers the failure streak."""

    def __init__(
        self,
        send: Send,
        *,
        model: str | None = None,
        max_tokens: int = 4,
        degraded_after_s: float = 5.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not 0 < degraded_after_s <= timeout_s:
            raise ValueError("need 0 < degraded_after_s <= timeout_s")
        self._send = send
        self._body = health_request(model, max_tokens)
        self.degraded_after_s = degraded_after_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._now = now
        self.consecutive_failures = 0
        self.last: HealthCheckResult | None = None

    async def check(self) -> HealthCheckResult:
        ts = self._now()
        started = self._clock()
        error: str | None = None
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                await self._send(self._body)
        except TimeoutError as exc:  # ours, or one `send` raised itself
            error = (
                f"no answer within {self.timeout_s:g} s"
                if deadline.expired()
                else (describe_error(exc))
            )
        except Exception as exc:  # any failure of the backend is the result, not an error here
            error = describe_error(exc)
        elapsed = self._clock() - started
        status: HealthStatus
        if error is not None:
            status = "unhealthy"
            self.consecutive_failures += 1
        else:
            status = "degraded" if elapsed > self.degraded_after_s else "healthy"
            self.consecutive_failures = 0
        result = HealthCheckResult(
            ts=ts,
            status=status,
            latency_ms=round(elapsed * 1000.0, 3),
            error=error,
            consecutive_failures=self.consecutive_failures,
        )
        self._log_change(result)
        self.last = result
        return result

    def _log_change(self, result: HealthCheckResult) -> None:
        previous = self.last.status if self.last else "healthy"
        if result.status == previous:
            return
        if result.status == "unhealthy":
            logger.warning("backend health: unhealthy: %s", result.error)
        elif result.status == "degraded":
            logger.warning("backend health: degraded, answered in %.0f ms", result.latency_ms)
        else:
            logger.info("backend health: healthy again (%.0f ms)", result.latency_ms)
