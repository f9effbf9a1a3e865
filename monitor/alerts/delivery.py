"""One delivery attempt of a webhook, and when to try again.

The outbox worker (wired by the app) stores each `OutgoingWebhook` unsigned, then repeats:
take the due rows, `attempt` each, and on a retryable failure schedule the next attempt
``next_attempt_delay(attempts)`` seconds later. The HTTP call is an injected async `Post`
(``post(url, body, headers) -> status``), so this module imports no HTTP library.

Outcomes: a 2xx status is delivered. 408, 425, 429 and 5xx, a timeout or a transport error
(any exception `post` raises) are retryable: the receiver may be down for minutes, a restart
of ours loses nothing since the row stays in the outbox. Any other status (400, 401, 404, ...)
is a permanent failure: retrying the same bytes cannot succeed, so it is stored as failed and
shown to the operator instead.

Backoff is exponential with *full jitter* (AWS Architecture Blog, "Exponential Backoff And
Jitter"): after n failed attempts, wait a uniform random time in
``[0, min(cap, base * 2 ** (n - 1))]``, which spreads retries from many alerts and replicas
instead of having them hit a recovering receiver together.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from monitor.alerts.webhooks import OutgoingWebhook, signed

Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]

RETRYABLE_STATUSES = frozenset({408, 425, 429})
_MAX_EXPONENT = 62  # 2**62 times any sane base is past any cap; keeps the float finite


@dataclass(frozen=True, slots=True)
class AttemptResult:
    delivered: bool
    retryable: bool
    status: int | None = None  # None when no response came back
    error: str | None = None  # why it failed, for the deliveries table


def is_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


def next_attempt_delay(
    attempt: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait after `attempt` failed attempts (1 = the first): full jitter, uniform in
    ``[0, min(cap, base * 2 ** (attempt - 1))]``."""
    if attempt < 1:
        raise ValueError("attempt counts failed attempts: 1 or more")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return (rng or random).uniform(0.0, ceiling)


async def attempt(
    outgoing: OutgoingWebhook,
    post: Post,
    now: float,
    secret: str | None = None,
    timeout_s: float = 10.0,
) -> AttemptResult:
    """POST `outgoing` once, signed for unix time `now` when there is a secret."""
    request = signed(outgoing, secret, now)
    try:
        async with asyncio.timeout(timeout_s):
            status = await post(request.url, request.body, request.headers)
    except TimeoutError:
        return AttemptResult(False, True, error=f"no response within {timeout_s:g}s")
    except Exception as exc:  # transport failures become a failed, retryable attempt
        return AttemptResult(False, True, error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return AttemptResult(True, False, status)
    return AttemptResult(False, is_retryable(status), status, error=f"HTTP {status}")
