"""Per-principal rate limits: per-key quotas, the backend contract, decisions, HTTP headers.

A principal gets a *quota*: a request limit over a sliding window (the seed's default is
`100/hour`) and, optionally, a token budget over its own window (`100000/hour`): `acquire`
refuses a request when the requests in the window plus its cost exceed the limit, or when the
tokens charged in the budget's window have reached the budget. Tokens are charged after the
response (`charge_tokens`), so the last request may overshoot the budget; the next one waits.

The window is an exact sliding log, not fixed buckets: a request made at `t` counts while
`now < t + window` and stops counting at `t + window` exactly, so "100/hour" means at most 100
requests in *any* hour, which is what the seed did and what a client reading `Retry-After`
expects. Each principal's log holds one entry per allowed request (or per token charge) with
its weight and a running total, so a check is O(1) amortised and memory is O(limit) per active
principal: a few KB for the limits this proxy uses (hundreds per hour), where a fixed-window
counter would let 2x the limit through around a window edge and a sub-bucket counter would
count a request for up to one bucket too long or too short. Token logs hold one entry per
charged response, so they are bounded by the requests. Above `LOG_SLOTS` (1,024) units a log
would grow with the limit (a limit set "high enough never to refuse", 10^9/hour, held every
request of the hour: a gigabyte at a few thousand requests a second), so such a limit keeps
its log in slots of a window's 1,024th (`RateLimit.slot_us`): entries in one slot are one
entry, logged at the slot's end, so a request counts at most one slot (3.5 s of an hour) too
long and never too short, and a log holds at most about 1,024 entries.
Timestamps are integer microseconds so that the boundary is exact in both backends (floats in
Lua and Python would disagree at the last bit). A limit's value and its parsing (`100/hour`)
are `config_types.RateLimit`, so that settings can check one at load time. The backends:

    MemoryLimiter  (ratelimit_memory.py)  one process; idle principals are evicted
    RedisLimiter   (ratelimit_redis.py)   shared by replicas; one atomic Lua script per call

    LimiterUnavailable      `usage` could not reach the shared store (acquire and
                            charge_tokens never raise for that: they fail open or closed)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

from monitor.config_types import RateLimit

DEFAULT_RATE_LIMIT = "100/hour"


class LimiterUnavailable(Exception):
    """The shared store (Redis) cannot be reached to answer a read such as `usage`."""


@dataclass(frozen=True, slots=True)
class Quota:
    """What one principal may use: requests per window and an optional token budget."""

    requests: RateLimit
    tokens: RateLimit | None = None

    @classmethod
    def parse(cls, requests: str, tokens: str | None = None) -> Quota:
        return cls(RateLimit.parse(requests), RateLimit.parse(tokens) if tokens else None)


@dataclass(frozen=True, slots=True)
class Quotas:
    """Quota per principal: `overrides[principal]`, else `default`."""

    default: Quota = field(default_factory=lambda: Quota.parse(DEFAULT_RATE_LIMIT))
    overrides: Mapping[str, Quota] = field(default_factory=dict)

    def for_principal(self, principal: str) -> Quota:
        return self.overrides.get(principal, self.default)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one `acquire`.

    `limit`, `remaining` and `reset_at` are about requests: `remaining` after this request was
    counted (if allowed); `reset_at` (epoch seconds) is when the oldest counted request leaves
    the window, i.e. the next moment `remaining` grows (now, when nothing is counted).
    `retry_after_s` is 0 when allowed, else the wait until this request would fit
    (`window_s` when it never can: a cost over the limit, a budget of 0). The `token_*` fields
    are set when a token budget applies. `degraded`: the shared store was unreachable and the
    limiter failed open (allowed) or closed (refused) without counting.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    retry_after_s: float
    refused_by: Literal["requests", "tokens"] | None = None
    token_limit: int | None = None
    token_remaining: int | None = None
    token_reset_at: float | None = None
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """A principal's use of its quota now (for the admin API)."""

    principal: str
    quota: Quota
    requests: int
    remaining_requests: int
    reset_at: float
    tokens: int | None = None
    remaining_tokens: int | None = None
    tokens_reset_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The seed's shape; `requests_last_hour` counts the request window (an hour by default)."""
        out: dict[str, object] = {
            "requests_last_hour": self.requests,
            "remaining_requests": self.remaining_requests,
            "reset_time": _iso(self.reset_at),
            "limit": str(self.quota.requests),
            "window_s": self.quota.requests.window_s,
        }
        if self.quota.tokens is not None:
            out["tokens"] = self.tokens
            out["remaining_tokens"] = self.remaining_tokens
            out["tokens_reset_time"] = _iso(self.tokens_reset_at or self.reset_at)
            out["token_budget"] = str(self.quota.tokens)
        return out


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


class Limiter(Protocol):
    """A backend. `now` (epoch seconds) is for tests and callers with their own clock."""

    async def acquire(
        self,
        principal: str,
        limit: RateLimit,
        cost: int = 1,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Decision: ...

    async def charge_tokens(
        self, principal: str, tokens: int, budget: RateLimit, *, now: float | None = None
    ) -> None: ...

    async def usage(
        self,
        principal: str,
        limit: RateLimit,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Usage: ...

    async def aclose(self) -> None: ...


class RateLimiter:
    """Quotas per principal over a backend: what the proxy handler and admin API call."""

    def __init__(self, backend: Limiter, quotas: Quotas | None = None) -> None:
        self.backend = backend
        self.quotas = quotas or Quotas()

    async def acquire(self, principal: str, cost: int = 1, *, now: float | None = None) -> Decision:
        quota = self.quotas.for_principal(principal)
        return await self.backend.acquire(
            principal, quota.requests, cost, budget=quota.tokens, now=now
        )

    async def charge_tokens(self, principal: str, tokens: int, *, now: float | None = None) -> None:
        """Charge a response's tokens; a no-op for principals without a token budget."""
        budget = self.quotas.for_principal(principal).tokens
        if budget is not None and tokens > 0:
            await self.backend.charge_tokens(principal, tokens, budget, now=now)

    async def usage(self, principal: str, *, now: float | None = None) -> Usage:
        quota = self.quotas.for_principal(principal)
        return await self.backend.usage(principal, quota.requests, budget=quota.tokens, now=now)

    async def aclose(self) -> None:
        await self.backend.aclose()


@dataclass(frozen=True, slots=True)
class Window:
    """One log as a backend measured it, in integer microseconds since the epoch.

    `used`: the total weight in the window; `oldest_us`: the oldest entry's time (None when
    empty); `fits_at_us`: for a refusal, when enough entries will have left for it to fit
    (None when nothing can make it fit).
    """

    used: int
    oldest_us: int | None
    fits_at_us: int | None = None


def decide(
    now_us: int,
    allowed: bool,
    limit: RateLimit,
    cost: int,
    requests: Window,
    budget: RateLimit | None = None,
    tokens: Window | None = None,
) -> Decision:
    """The decision both backends return, from what they measured (one rule, one place)."""
    refused_by: Literal["requests", "tokens"] | None = None
    retry_after = 0.0
    if not allowed:
        waits = []
        if requests.used + cost > limit.amount:
            refused_by = "requests"
            waits.append(_wait(now_us, requests.fits_at_us, limit))
        if budget is not None and tokens is not None and tokens.used >= budget.amount:
            refused_by = refused_by or "tokens"
            waits.append(_wait(now_us, tokens.fits_at_us, budget))
        retry_after = max(waits, default=0.0)
    decision = Decision(
        allowed=allowed,
        limit=limit.amount,
        remaining=max(0, limit.amount - requests.used),
        reset_at=_reset_at(now_us, requests, limit),
        retry_after_s=retry_after,
        refused_by=refused_by,
    )
    if budget is None or tokens is None:
        return decision
    return replace(
        decision,
        token_limit=budget.amount,
        token_remaining=max(0, budget.amount - tokens.used),
        token_reset_at=_reset_at(now_us, tokens, budget),
    )


def measured_usage(
    principal: str,
    quota: Quota,
    now_us: int,
    requests: Window,
    tokens: Window | None = None,
) -> Usage:
    usage = Usage(
        principal=principal,
        quota=quota,
        requests=requests.used,
        remaining_requests=max(0, quota.requests.amount - requests.used),
        reset_at=_reset_at(now_us, requests, quota.requests),
    )
    if quota.tokens is None or tokens is None:
        return usage
    return replace(
        usage,
        tokens=tokens.used,
        remaining_tokens=max(0, quota.tokens.amount - tokens.used),
        tokens_reset_at=_reset_at(now_us, tokens, quota.tokens),
    )


def slot_end(now_us: int, slot_us: int) -> int:
    """The time an entry made at `now_us` is logged at: the end of its slot (itself when slots
    are 1 µs). Rounding up, never down, keeps a limit a limit: an entry counts up to one slot
    longer than exact, never shorter."""
    if slot_us <= 1:
        return now_us
    return -(-now_us // slot_us) * slot_us


def _reset_at(now_us: int, window: Window, limit: RateLimit) -> float:
    if window.oldest_us is None:
        return now_us / 1e6
    return (window.oldest_us + limit.window_us) / 1e6


def _wait(now_us: int, fits_at_us: int | None, limit: RateLimit) -> float:
    if fits_at_us is None:
        return limit.window_s
    return max(0, fits_at_us - now_us) / 1e6


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """Response headers for a decision (lower-case names, as ASGI wants them).

    - `x-ratelimit-limit`: the request limit of the principal's window.
    - `x-ratelimit-remaining`: requests left in the window after this one.
    - `x-ratelimit-reset`: epoch seconds (integer, rounded up) when the oldest counted request
      leaves the sliding window, the next moment `remaining` grows. Epoch, not a delta, as
      GitHub's and the seed's `reset_time`.
    - `retry-after` (refusals only): whole seconds to wait, rounded up, at least 1 (RFC 9110).
    - With a token budget, as OpenAI names them: `x-ratelimit-limit-tokens`,
      `x-ratelimit-remaining-tokens`, `x-ratelimit-reset-tokens` (epoch seconds, the same
      meaning for the token window).

    A degraded decision (shared store unreachable) knows no counts: only `retry-after` when it
    refuses, nothing when it allows.
    """
    headers: list[tuple[bytes, bytes]] = []
    if not decision.degraded:
        headers += [
            (b"x-ratelimit-limit", b"%d" % decision.limit),
            (b"x-ratelimit-remaining", b"%d" % decision.remaining),
            (b"x-ratelimit-reset", b"%d" % math.ceil(decision.reset_at)),
        ]
        if decision.token_limit is not None:
            headers += [
                (b"x-ratelimit-limit-tokens", b"%d" % decision.token_limit),
                (b"x-ratelimit-remaining-tokens", b"%d" % (decision.token_remaining or 0)),
                (
                    b"x-ratelimit-reset-tokens",
                    b"%d" % math.ceil(decision.token_reset_at or decision.reset_at),
                ),
            ]
    if not decision.allowed:
        headers.append((b"retry-after", b"%d" % max(1, math.ceil(decision.retry_after_s))))
    return headers
