"""The shared rate limiter: the same sliding logs in Redis, so that proxy replicas share windows.

Each call is one Lua script (EVALSHA, falling back to EVAL when Redis answers NOSCRIPT after
a restart or SCRIPT FLUSH), so the check and the count are atomic across replicas. Per
principal, under `prefix` and a `{principal}` hash tag (one Redis Cluster slot):

    <prefix>{<principal>}:r   sorted set: one member per allowed request, score = time in µs
    <prefix>{<principal>}:t   sorted set: one member per token charge
    <prefix>{<principal>}:m   hash: running totals of both logs, a member sequence

Members are `<time>-<seq>:<weight>`; the totals make a check O(1) amortised. Every write sets
TTLs of a window (plus a second), so a principal that stops leaves nothing behind.

The clock is Redis `TIME` (one clock for all replicas, whatever their own clocks say) unless
the caller passes `now`, epoch seconds, as tests do.

When Redis is unreachable (refused, reset, timed out), a call decides without it: with
`fail_open` (the default) the request is allowed, uncounted; otherwise refused with
`retry_after_s = closed_retry_after_s`. Either way the decision is `degraded`, a warning is
logged once per outage (and an info line when Redis is back), `degraded_calls` and `outages`
count, and for `probe_interval_s` after a failure calls do not even try, so that a dead or
black-holed Redis costs no connect timeout per request. Token charges made in an outage are
dropped (`dropped_charges`); `usage` raises `LimiterUnavailable`. Script errors are defects
and propagate.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from monitor.config_types import RateLimit
from monitor.proxy.ratelimit import (
    Decision,
    LimiterUnavailable,
    Quota,
    Usage,
    Window,
    decide,
    measured_usage,
)
from monitor.proxy.redis_wire import ScriptClient

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "gemma-monitor:rl:"

# ARGV: op (acquire | charge | usage), now µs ("" = Redis TIME), limit, window µs, cost,
# budget (-1 = none), budget window µs, tokens to charge, slot µs, budget slot µs.
# Returns: now, allowed, used, oldest, fits_at, tokens used, tokens oldest, tokens fits_at
# (-1 for none). Numbers go through string.format('%d'): Lua prints numbers with 14 digits.
SCRIPT = """
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local meta = KEYS[3]
local function fmt(n) return string.format('%d', n) end
local function weight(member) return tonumber(string.match(member, ':(%d+)$')) end

local function trim(log, field, window)
  local cutoff = fmt(now - window)
  local total = tonumber(redis.call('HGET', meta, field)) or 0
  local expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #expired > 0 then
    for i = 1, #expired do total = total - weight(expired[i]) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    if total < 0 or redis.call('ZCARD', log) == 0 then total = 0 end
    redis.call('HSET', meta, field, fmt(total))
  end
  return total
end

-- the end of `now`'s slot (`ratelimit.slot_end`), in integer steps: no float rounding
local function slot_end(slot)
  if slot <= 1 then return now end
  local k = math.floor(now / slot)
  while k * slot < now do k = k + 1 end
  while (k - 1) * slot >= now do k = k - 1 end
  return k * slot
end

local function add(log, field, total, amount, window, slot)
  local at = slot_end(slot)
  local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
  if #newest > 0 and tonumber(newest[2]) >= at then
    -- the same slot (or a clock that stepped back): one entry, at the newest entry's time
    at = tonumber(newest[2])
    amount = amount + weight(newest[1])
    total = total - weight(newest[1])
    redis.call('ZREM', log, newest[1])
  end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  redis.call('ZADD', log, fmt(at), string.format('%d-%d:%d', at, seq, amount))
  redis.call('HSET', meta, field, fmt(total + amount))
  local ttl = math.floor(window / 1000) + 1000
  redis.call('PEXPIRE', log, fmt(ttl))
  if redis.call('PTTL', meta) < ttl then redis.call('PEXPIRE', meta, fmt(ttl)) end
  return total + amount
end

local function measure(log, excess, window)
  local first = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  local oldest, fits = -1, -1
  if #first > 0 then oldest = tonumber(first[2]) end
  local freed, start = 0, 0
  while excess > 0 and fits < 0 do
    -- every weight is at least 1: the next (excess - freed) entries may be enough
    local n = math.min(excess - freed, 32)
    local batch = redis.call('ZRANGE', log, start, start + n - 1, 'WITHSCORES')
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
      freed = freed + weight(batch[i])
      if freed >= excess then fits = tonumber(batch[i + 1]) + window break end
    end
    start = start + n
  end
  return oldest, fits
end

local limit, window, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local budget, bwindow = tonumber(ARGV[6]), tonumber(ARGV[7])
local slot, bslot = tonumber(ARGV[9]), tonumber(ARGV[10])
if op == 'charge' then
  add(KEYS[2], 't', trim(KEYS[2], 't', bwindow), tonumber(ARGV[8]), bwindow, bslot)
  return {now}
end
local used = trim(KEYS[1], 'r', window)
local tused = 0
if budget >= 0 then tused = trim(KEYS[2], 't', bwindow) end
local allowed = 0
local excess, texcess = 0, 0
if op == 'acquire' then
  if used + cost <= limit and (budget < 0 or tused < budget) then
    allowed = 1
    used = add(KEYS[1], 'r', used, cost, window, slot)
  else
    excess, texcess = used + cost - limit, tused - budget + 1
  end
end
local oldest, fits = measure(KEYS[1], excess, window)
local toldest, tfits = -1, -1
if budget >= 0 then toldest, tfits = measure(KEYS[2], texcess, bwindow) end
return {now, allowed, used, oldest, fits, tused, toldest, tfits}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class RedisLimiter:
    """Sliding-log limits in Redis. See `monitor.proxy.ratelimit` for the semantics."""

    def __init__(
        self,
        client: Redis | ScriptClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        fail_open: bool = True,
        closed_retry_after_s: float = 1.0,
        probe_interval_s: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.fail_open = fail_open
        self.closed_retry_after_s = closed_retry_after_s
        self.probe_interval_s = probe_interval_s
        self.owns_client = owns_client
        self.degraded_calls = 0
        self.outages = 0
        self.dropped_charges = 0
        self._down = False
        self._probe_at = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        fail_open: bool = True,
        closed_retry_after_s: float = 1.0,
        probe_interval_s: float = 1.0,
        timeout_s: float = 0.5,
    ) -> RedisLimiter:
        """A limiter with its own client (`redis_wire.ScriptClient`: one pipelined
        connection, short timeouts, no retries on the request path)."""
        client = ScriptClient(url, connect_timeout_s=timeout_s, timeout_s=timeout_s)
        return cls(
            client,
            prefix=prefix,
            fail_open=fail_open,
            closed_retry_after_s=closed_retry_after_s,
            probe_interval_s=probe_interval_s,
            owns_client=True,
        )

    def keys(self, principal: str) -> list[str]:
        base = f"{self.prefix}{{{principal}}}:"
        return [base + "r", base + "t", base + "m"]

    async def acquire(
        self,
        principal: str,
        limit: RateLimit,
        cost: int = 1,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Decision:
        if cost < 1:
            raise ValueError(f"cost must be at least 1, not {cost}")
        out = await self._run(principal, "acquire", now, limit, cost, budget)
        if out is None:
            return self._degraded(limit, now)
        now_us, allowed, used, oldest, fits, tused, toldest, tfits = out
        requests = Window(used, _opt(oldest), _opt(fits))
        tokens = Window(tused, _opt(toldest), _opt(tfits)) if budget is not None else None
        return decide(now_us, bool(allowed), limit, cost, requests, budget, tokens)

    async def charge_tokens(
        self, principal: str, tokens: int, budget: RateLimit, *, now: float | None = None
    ) -> None:
        if tokens <= 0:
            return
        out = await self._run(principal, "charge", now, budget, 1, budget, tokens)
        if out is None:
            self.dropped_charges += 1

    async def usage(
        self,
        principal: str,
        limit: RateLimit,
        *,
        budget: RateLimit | None = None,
        now: float | None = None,
    ) -> Usage:
        out = await self._run(principal, "usage", now, limit, 1, budget)
        if out is None:
            raise LimiterUnavailable(f"Redis unreachable: no usage for {principal!r}")
        now_us, _, used, oldest, _, tused, toldest, _ = out
        tokens = Window(tused, _opt(toldest)) if budget is not None else None
        return measured_usage(
            principal, Quota(limit, budget), now_us, Window(used, _opt(oldest)), tokens
        )

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()

    async def _run(
        self,
        principal: str,
        op: str,
        now: float | None,
        limit: RateLimit,
        cost: int,
        budget: RateLimit | None,
        tokens: int = 0,
    ) -> Sequence[int] | None:
        """The script's answer, or None when Redis is unreachable (or recently was)."""
        if self._down and time.monotonic() < self._probe_at:
            self.degraded_calls += 1
            return None
        args = (
            op,
            "" if now is None else round(now * 1_000_000),
            limit.amount,
            limit.window_us,
            cost,
            -1 if budget is None else budget.amount,
            0 if budget is None else budget.window_us,
            tokens,
            limit.slot_us,
            1 if budget is None else budget.slot_us,
        )
        keys = self.keys(principal)
        try:
            try:
                result = await self.client.evalsha(SCRIPT_SHA, 3, *keys, *args)
            except NoScriptError:
                result = await self.client.eval(SCRIPT, 3, *keys, *args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._failed(exc)
            return None
        if self._down:
            self._down = False
            log.info(
                "rate limiter: Redis reachable again after %d degraded calls", self.degraded_calls
            )
        return [int(v) for v in result]

    def _failed(self, exc: Exception) -> None:
        self.degraded_calls += 1
        self._probe_at = time.monotonic() + self.probe_interval_s
        if not self._down:
            self._down = True
            self.outages += 1
            log.warning(
                "rate limiter: Redis unreachable (%s: %s); failing %s until it is back",
                type(exc).__name__,
                exc,
                "open (requests allowed, uncounted)"
                if self.fail_open
                else "closed (requests refused)",
            )

    def _degraded(self, limit: RateLimit, now: float | None) -> Decision:
        at = time.time() if now is None else now
        if self.fail_open:
            return Decision(True, limit.amount, limit.amount, at, 0.0, degraded=True)
        return Decision(False, limit.amount, 0, at, self.closed_retry_after_s, degraded=True)


def _opt(value: int) -> int | None:
    return None if value < 0 else value
