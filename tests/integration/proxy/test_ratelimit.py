"""Rate limits in real Redis: the same behaviour as in memory, atomic across replicas, keys that
expire, NOSCRIPT, and Redis outages (a closed port, a cut connection) failing open or closed."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from monitor.config_types import RateLimit
from monitor.proxy.ratelimit import (
    Decision,
    LimiterUnavailable,
    Quota,
    Quotas,
    RateLimiter,
    Usage,
    rate_limit_headers,
)
from monitor.proxy.ratelimit_memory import MemoryLimiter
from monitor.proxy.ratelimit_redis import RedisLimiter
from tests.support.redis_db import redis_prefix, redis_url
from tests.support.servers import free_port
from tests.support.tcp_relay import TcpRelay

T = 1_700_000_000.0
MINUTE, HOUR = 60.0, 3600.0


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    async with redis_prefix() as client_and_prefix:
        yield client_and_prefix


@pytest.fixture(params=["wire", "redis-py"])
async def limiter(
    request: pytest.FixtureRequest, redis: tuple[Redis, str]
) -> AsyncIterator[RedisLimiter]:
    """Through the limiter's own client (`from_url`), then through a redis-py client."""
    client, prefix = redis
    if request.param == "redis-py":
        yield RedisLimiter(client, prefix=prefix)
        return
    own = RedisLimiter.from_url(redis_url(), prefix=prefix)
    yield own
    await own.aclose()


async def test_requests_at_t_then_59_then_61_minutes(limiter: RedisLimiter) -> None:
    limit = RateLimit.parse("2/hour")
    first = await limiter.acquire("p", limit, now=T)
    assert (first.allowed, first.remaining, first.reset_at) == (True, 1, T + HOUR)
    assert (await limiter.acquire("p", limit, now=T + 59 * MINUTE)).allowed
    third = await limiter.acquire("p", limit, now=T + 59 * MINUTE + 30)
    assert (third.allowed, third.refused_by) == (False, "requests")
    assert third.retry_after_s == pytest.approx(30)
    fourth = await limiter.acquire("p", limit, now=T + 61 * MINUTE)
    assert (fourth.allowed, fourth.remaining, fourth.reset_at) == (True, 0, T + 119 * MINUTE)


async def test_exact_counts_at_the_window_boundary(limiter: RedisLimiter) -> None:
    limit, t = RateLimit.parse("3/hour"), T + 0.1
    for _ in range(3):
        assert (await limiter.acquire("p", limit, now=t)).allowed
    just_before = await limiter.acquire("p", limit, now=t + HOUR - 1e-6)
    assert not just_before.allowed and just_before.retry_after_s == pytest.approx(1e-6)
    at_boundary = await limiter.acquire("p", limit, now=t + HOUR)
    assert (at_boundary.allowed, at_boundary.remaining) == (True, 2)


async def test_token_budget_and_usage(limiter: RedisLimiter) -> None:
    rl = RateLimiter(limiter, Quotas(Quota.parse("100/hour", "1000/hour")))
    await rl.acquire("p", now=T)
    await rl.charge_tokens("p", 600, now=T + 1)
    await rl.charge_tokens("p", 500, now=T + 3)
    spent = await rl.acquire("p", now=T + 4)
    assert (spent.allowed, spent.refused_by, spent.remaining) == (False, "tokens", 99)
    assert spent.retry_after_s == pytest.approx(HOUR - 3)
    assert (await rl.acquire("p", now=T + 1 + HOUR)).allowed
    usage = await rl.usage("p", now=T + 1 + HOUR)
    assert (usage.requests, usage.tokens, usage.remaining_tokens) == (1, 500, 500)
    assert usage.to_dict()["requests_last_hour"] == 1


async def test_same_decisions_as_memory(limiter: RedisLimiter) -> None:
    """A random script of acquires, charges and usage reads: both backends answer alike."""
    memory = MemoryLimiter()
    quotas = {
        "a": Quota.parse("5/minute", "300/2min"),
        "b": Quota.parse("3/10s"),
        "c": Quota.parse("2/second", "50/second"),
        "d": Quota.parse("3000/10s", "5000/20s"),  # above 1,024: logs kept in slots
    }
    rng = random.Random(7)
    now = T + 0.123456
    outcomes: set[str | None] = set()
    for _ in range(600):
        now += rng.choice([0, 1e-6, 0.1, 0.7, 3, 11])
        principal = rng.choice("abcd")
        quota = quotas[principal]
        what = rng.random()
        if what < 0.6:
            cost = rng.choice([1, 1, 1, 2] if principal != "d" else [1, 400, 900])
            decisions = [
                await backend.acquire(principal, quota.requests, cost, budget=quota.tokens, now=now)
                for backend in (memory, limiter)
            ]
            outcomes.add(decisions[0].refused_by)
            got: list[Decision] | list[Usage] = decisions
        elif what < 0.85 and quota.tokens is not None:
            tokens = rng.randint(1, 200 if principal != "d" else 2000)
            for backend in (memory, limiter):
                await backend.charge_tokens(principal, tokens, quota.tokens, now=now)
            continue
        else:
            got = [
                await backend.usage(principal, quota.requests, budget=quota.tokens, now=now)
                for backend in (memory, limiter)
            ]
        assert got[0] == got[1], f"at {now}: memory {got[0]} != redis {got[1]}"
    assert outcomes == {None, "requests", "tokens"}  # the script reached every branch


async def test_a_high_limit_keeps_a_bounded_log(
    limiter: RedisLimiter, redis: tuple[Redis, str]
) -> None:
    """3,000 requests in one slot of a 10^9/hour limit: one sorted-set member, not 3,000."""
    client, _ = redis
    limit = RateLimit.parse("1000000000/hour")
    start = (T // (limit.slot_us / 1e6) + 1) * limit.slot_us / 1e6
    for i in range(3000):
        assert (await limiter.acquire("p", limit, now=start + 0.1 + i * 1e-4)).allowed
    requests_key = limiter.keys("p")[0]
    assert await client.zcard(requests_key) == 1
    usage = await limiter.usage("p", limit, now=start + 1)
    assert usage.requests == 3000
    assert usage.reset_at == pytest.approx(start + limit.slot_us / 1e6 + HOUR)


async def test_two_replicas_share_one_window_atomically(redis: tuple[Redis, str]) -> None:
    client, prefix = redis
    # 200 calls at once, pipelined on each replica's one connection: a loaded runner may take
    # longer than the request path's 0.5 s to answer them all, and the limiter would fail open,
    # which is not what this test is about (atomicity); outages have tests of their own
    replicas = [RedisLimiter.from_url(redis_url(), prefix=prefix, timeout_s=5.0) for _ in range(2)]
    limit = RateLimit.parse("50/hour")
    try:
        decisions = await asyncio.gather(
            *(replicas[i % 2].acquire("shared", limit) for i in range(200))
        )
        assert sum(d.allowed for d in decisions) == 50
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))
        assert all(not d.degraded for d in decisions)
        assert await client.zcard(replicas[0].keys("shared")[0]) == 50
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_redis_clock_when_the_caller_gives_none(limiter: RedisLimiter) -> None:
    before = time.time()
    decision = await limiter.acquire("p", RateLimit.parse("10/minute"))
    assert before - 1 <= decision.reset_at - 60 <= time.time() + 1


async def test_keys_live_under_the_prefix_and_expire(
    limiter: RedisLimiter, redis: tuple[Redis, str]
) -> None:
    client, prefix = redis
    await limiter.acquire("p", RateLimit.parse("5/minute"), budget=RateLimit.parse("100/2min"))
    await limiter.charge_tokens("p", 10, RateLimit.parse("100/2min"))
    keys = sorted([k.decode() async for k in client.scan_iter(match=prefix + "*")])
    assert keys == [f"{prefix}{{p}}:m", f"{prefix}{{p}}:r", f"{prefix}{{p}}:t"]
    ttls = {key[-1]: await client.pttl(key) for key in keys}
    assert 59_000 < ttls["r"] <= 61_000
    assert 119_000 < ttls["t"] <= 121_000
    assert ttls["m"] >= ttls["t"]  # the totals outlive the logs they sum
    # a short window: gone from Redis soon after, nothing leaks
    await limiter.acquire("brief", RateLimit.parse("5/0.1s"))
    assert await client.exists(*limiter.keys("brief")) == 2  # no token charge: no token log
    await asyncio.sleep(1.5)  # TTL: the window plus a second
    assert await client.exists(*limiter.keys("brief")) == 0


async def test_noscript_falls_back_to_eval(limiter: RedisLimiter, redis: tuple[Redis, str]) -> None:
    client, _ = redis
    limit = RateLimit.parse("3/minute")
    await limiter.acquire("p", limit, now=T)
    await client.script_flush()
    decision = await limiter.acquire("p", limit, now=T + 1)
    assert (decision.allowed, decision.remaining) == (True, 1)
    assert (await limiter.acquire("p", limit, now=T + 2)).remaining == 0


def _closed_port_limiter(fail_open: bool) -> RedisLimiter:
    return RedisLimiter.from_url(
        f"redis://127.0.0.1:{free_port()}/0", fail_open=fail_open, probe_interval_s=0
    )


async def test_unreachable_redis_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    limiter, limit = _closed_port_limiter(fail_open=True), RateLimit.parse("1/hour")
    with caplog.at_level(logging.WARNING, logger="monitor.proxy.ratelimit_redis"):
        decisions = [await limiter.acquire("p", limit) for _ in range(3)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert rate_limit_headers(decisions[0]) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failing open" in warnings[0].getMessage()
    assert (limiter.degraded_calls, limiter.outages) == (3, 1)
    await limiter.charge_tokens("p", 100, RateLimit.parse("1000/hour"))
    assert limiter.dropped_charges == 1
    with pytest.raises(LimiterUnavailable):
        await limiter.usage("p", limit)
    await limiter.aclose()


async def test_unreachable_redis_fails_closed() -> None:
    limiter = _closed_port_limiter(fail_open=False)
    decision = await limiter.acquire("p", RateLimit.parse("100/hour"))
    assert (decision.allowed, decision.degraded, decision.refused_by) == (False, True, None)
    assert rate_limit_headers(decision) == [(b"retry-after", b"1")]
    await limiter.aclose()


async def test_outage_and_recovery(
    redis: tuple[Redis, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, prefix = redis
    host, port = redis_url().split("//")[1].split("/")[0].split(":")
    limit = RateLimit.parse("2/hour")
    with TcpRelay(host, int(port)).start() as relay:
        limiter = RedisLimiter.from_url(
            f"redis://127.0.0.1:{relay.port}/0", prefix=prefix, probe_interval_s=0.5
        )
        with caplog.at_level(logging.INFO, logger="monitor.proxy.ratelimit_redis"):
            assert not (await limiter.acquire("p", limit, now=T)).degraded
            relay.cut()
            down = [await limiter.acquire("p", limit, now=T + i) for i in range(1, 4)]
            assert all(d.allowed and d.degraded for d in down)
            # within the probe interval a call does not even try Redis (no connect timeout per
            # request on a black-holed host): Redis is back, yet the answer is still degraded
            relay.restore()
            assert (await limiter.acquire("p", limit, now=T + 5)).degraded
            await asyncio.sleep(0.6)
            back = await limiter.acquire("p", limit, now=T + 6)
        # uncounted in the outage: the window holds only the requests Redis saw
        assert (back.allowed, back.degraded, back.remaining) == (True, False, 0)
        assert limiter.outages == 1 and limiter.degraded_calls == 4
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unreachable" in m for m in messages) == 1
        assert sum("reachable again" in m for m in messages) == 1
        await limiter.aclose()


def test_decision_is_a_plain_value() -> None:
    assert Decision(True, 1, 0, T, 0.0) == Decision(True, 1, 0, T, 0.0)
