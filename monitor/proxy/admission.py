"""Admission: who is asking (the principal), whether they may (API keys), and how often (rate
limits). Runs before the body is read, so a refused request costs almost nothing.

The principal is a sha256 of the API key (16 hex chars), never the key; without a key, the
configured user header, then the client's address, hashed the same way.
"""

from __future__ import annotations

import hashlib
import logging

from monitor.config import Settings
from monitor.config_types import RateLimit
from monitor.errors import RateLimited, Unauthorized
from monitor.proxy.exchange import Scope, header
from monitor.proxy.ratelimit import (
    Decision,
    Quota,
    Quotas,
    RateLimiter,
    rate_limit_headers,
)
from monitor.proxy.ratelimit_memory import MemoryLimiter

log = logging.getLogger(__name__)


def principal_id(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:16]


def _bearer(scope: Scope) -> bytes | None:
    auth = header(scope, b"authorization")
    if auth and auth[:7].lower() == b"bearer " and len(auth) > 7:
        return auth[7:].strip()
    return header(scope, b"x-api-key")


class Admission:
    """Checks API keys and rate limits for one request; refusals are raised as `ProxyError`s."""

    def __init__(self, settings: Settings, limiter: RateLimiter | None) -> None:
        self._keys = frozenset(
            principal_id(key.get_secret_value().encode()) for key in settings.api_keys
        )
        self._user_header = settings.user_header.lower().encode() if settings.user_header else None
        self.limiter = limiter

    async def admit(self, scope: Scope) -> tuple[str | None, Decision | None]:
        """The request's principal and its rate-limit decision (None when limits are off)."""
        principal = self.principal(scope)
        if self.limiter is None or principal is None:
            return principal, None
        decision = await self.limiter.acquire(principal)
        if not decision.allowed:
            error = RateLimited(
                f"rate limit exceeded: {decision.limit} requests per window; "
                f"retry in {max(1, round(decision.retry_after_s))}s"
                if decision.refused_by != "tokens"
                else "token budget exhausted for this window"
            )
            error.headers = rate_limit_headers(decision)
            raise error
        return principal, decision

    def principal(self, scope: Scope) -> str | None:
        key = _bearer(scope)
        if self._keys:
            if key is None:
                raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
            principal = principal_id(key)
            if principal not in self._keys:
                raise Unauthorized("invalid API key")
            return principal
        if key is not None:
            return principal_id(key)
        if self._user_header is not None:
            user = header(scope, self._user_header)
            if user:
                return principal_id(user)
        client = scope.get("client")
        return principal_id(client[0].encode()) if client else None

    async def charge(self, principal: str | None, tokens: int) -> None:
        if self.limiter is not None and principal is not None and tokens:
            await self.limiter.charge_tokens(principal, tokens)


def build_limiter(settings: Settings) -> RateLimiter | None:
    """The configured limiter: Redis when `redis_url` is set, else in memory; None when off."""
    if not settings.rate_limit_enabled:
        return None
    budget = settings.token_budget
    default = Quota(
        RateLimit.parse(settings.rate_limit), RateLimit.parse(budget) if budget else None
    )
    overrides = {
        principal: Quota(RateLimit.parse(limit), default.tokens)
        for principal, limit in settings.rate_limits.items()
    }
    quotas = Quotas(default, overrides)
    if settings.redis_url:
        from monitor.proxy.ratelimit_redis import RedisLimiter

        return RateLimiter(
            RedisLimiter.from_url(settings.redis_url, fail_open=settings.rate_limit_fail_open),
            quotas,
        )
    return RateLimiter(MemoryLimiter(), quotas)
