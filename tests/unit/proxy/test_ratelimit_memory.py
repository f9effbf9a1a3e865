"""Rate limits in one process: parsing, sliding-window semantics on an injected clock, token
budgets, per-key quotas, eviction, and the HTTP headers."""

from __future__ import annotations

import asyncio

import pytest

from monitor.config_types import RateLimit
from monitor.proxy.ratelimit import (
    Decision,
    Quota,
    Quotas,
    RateLimiter,
    rate_limit_headers,
)
from monitor.proxy.ratelimit_memory import MemoryLimiter

T = 1_700_000_000.0  # an arbitrary epoch second
MINUTE, HOUR = 60.0, 3600.0


@pytest.mark.parametrize(
    ("text", "amount", "window_s"),
    [
        ("100/hour", 100, 3600),
        ("10/minute", 10, 60),
        ("5/second", 5, 1),
        ("1000/day", 1000, 86400),
        ("100/2h", 100, 7200),
        ("50/30 min", 50, 1800),
        (" 7 / 1.5 Hours ", 7, 5400),
        ("0/hour", 0, 3600),
    ],
)
def test_parse(text: str, amount: int, window_s: float) -> None:
    assert RateLimit.parse(text) == RateLimit(amount, window_s)


@pytest.mark.parametrize(
    "text", ["", "100", "hour", "100/fortnight", "-1/hour", "100/0h", "1e3/hour", "100/hour/2"]
)
def test_parse_refuses_naming_the_string(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit") as info:
        RateLimit.parse(text)
    assert repr(text) in str(info.value)


def test_str_and_default() -> None:
    assert str(RateLimit.parse("100/hour")) == "100/hour"
    assert str(RateLimit.parse("100/2h")) == "100/7200s"
    assert Quotas().for_principal("anyone") == Quota(RateLimit(100, 3600))


async def test_requests_at_t_then_59_then_61_minutes() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("2/hour")
    first = await limiter.acquire("p", limit, now=T)
    assert (first.allowed, first.remaining, first.reset_at) == (True, 1, T + HOUR)
    second = await limiter.acquire("p", limit, now=T + 59 * MINUTE)
    assert (second.allowed, second.remaining, second.reset_at) == (True, 0, T + HOUR)
    third = await limiter.acquire("p", limit, now=T + 59 * MINUTE + 30)
    assert not third.allowed and third.refused_by == "requests"
    assert third.retry_after_s == pytest.approx(30)
    # at t+61min the request made at t has left the window; the one at t+59min still counts
    fourth = await limiter.acquire("p", limit, now=T + 61 * MINUTE)
    assert (fourth.allowed, fourth.remaining) == (True, 0)
    assert fourth.reset_at == T + 59 * MINUTE + HOUR


async def test_exact_counts_at_the_window_boundary() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("3/hour")
    t = T + 0.1  # not a round number: the boundary must be exact anyway
    for _ in range(3):
        assert (await limiter.acquire("p", limit, now=t)).allowed
    just_before = await limiter.acquire("p", limit, now=t + HOUR - 1e-6)
    assert not just_before.allowed
    assert just_before.retry_after_s == pytest.approx(1e-6)
    at_boundary = await limiter.acquire("p", limit, now=t + HOUR)
    assert (at_boundary.allowed, at_boundary.remaining) == (True, 2)
    assert (await limiter.usage("p", limit, now=t + HOUR)).requests == 1


async def test_refusals_are_not_counted_and_retry_after_is_when_it_fits() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("2/minute")
    await limiter.acquire("p", limit, now=T)
    await limiter.acquire("p", limit, now=T + 10)
    for dt in (20, 30, 40):
        refused = await limiter.acquire("p", limit, now=T + dt)
        assert (refused.allowed, refused.remaining, refused.reset_at) == (False, 0, T + 60)
        assert refused.retry_after_s == pytest.approx(60 - dt)
    # a cost of 2 must wait for both entries to leave
    assert (await limiter.acquire("p", limit, 2, now=T + 50)).retry_after_s == pytest.approx(20)
    assert (await limiter.acquire("p", limit, now=T + 60)).allowed


async def test_costs_that_never_fit() -> None:
    limiter = MemoryLimiter()
    over = await limiter.acquire("p", RateLimit.parse("3/minute"), 4, now=T)
    assert (over.allowed, over.remaining, over.retry_after_s) == (False, 3, 60)
    blocked = await limiter.acquire("p", RateLimit.parse("0/hour"), now=T)
    assert (blocked.allowed, blocked.retry_after_s) == (False, HOUR)
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire("p", RateLimit.parse("3/minute"), 0, now=T)


async def test_per_key_limits() -> None:
    quotas = Quotas(
        default=Quota.parse("1/hour"),
        overrides={"gold": Quota.parse("3/hour"), "blocked": Quota.parse("0/hour")},
    )
    limiter = RateLimiter(MemoryLimiter(), quotas)
    allowed = {
        principal: [(await limiter.acquire(principal, now=T)).allowed for _ in range(4)]
        for principal in ("gold", "someone", "blocked")
    }
    assert allowed == {
        "gold": [True, True, True, False],
        "someone": [True, False, False, False],
        "blocked": [False] * 4,
    }
    assert (await limiter.acquire("gold", now=T)).limit == 3


async def test_token_budget() -> None:
    limiter = RateLimiter(MemoryLimiter(), Quotas(Quota.parse("100/hour", "1000/hour")))
    first = await limiter.acquire("p", now=T)
    assert (first.token_limit, first.token_remaining) == (1000, 1000)
    await limiter.charge_tokens("p", 600, now=T + 1)
    assert (await limiter.acquire("p", now=T + 2)).token_remaining == 400
    await limiter.charge_tokens("p", 500, now=T + 3)  # the last response overshoots
    spent = await limiter.acquire("p", now=T + 4)
    assert (spent.allowed, spent.refused_by, spent.token_remaining) == (False, "tokens", 0)
    assert spent.remaining == 98  # requests are not the reason, and a refusal is not counted
    assert spent.retry_after_s == pytest.approx(HOUR - 3)  # when the 600 leave, 500 < 1000
    assert spent.token_reset_at == T + 1 + HOUR
    assert (await limiter.acquire("p", now=T + 1 + HOUR)).allowed
    usage = await limiter.usage("p", now=T + 1 + HOUR)
    assert (usage.tokens, usage.remaining_tokens, usage.requests) == (500, 500, 2)


async def test_charge_without_a_budget_is_a_no_op() -> None:
    backend = MemoryLimiter()
    limiter = RateLimiter(backend, Quotas(Quota.parse("10/hour")))
    await limiter.charge_tokens("p", 5000, now=T)
    assert len(backend) == 0
    assert (await limiter.acquire("p", now=T)).token_limit is None


async def test_usage_in_the_seeds_shape() -> None:
    limiter = RateLimiter(MemoryLimiter())  # the default: 100/hour
    for dt in (0, 10, 20):
        await limiter.acquire("p", now=T + dt)
    usage = await limiter.usage("p", now=T + 30)
    assert usage.to_dict() == {
        "requests_last_hour": 3,
        "remaining_requests": 97,
        "reset_time": "2023-11-14T23:13:20+00:00",  # T + 1 hour
        "limit": "100/hour",
        "window_s": 3600.0,
    }
    fresh = await limiter.usage("nobody", now=T)
    assert (fresh.requests, fresh.remaining_requests, fresh.reset_at) == (0, 100, T)
    with_budget = RateLimiter(MemoryLimiter(), Quotas(Quota.parse("100/hour", "5000/day")))
    await with_budget.charge_tokens("p", 1200, now=T)
    as_dict = (await with_budget.usage("p", now=T)).to_dict()
    assert (as_dict["tokens"], as_dict["remaining_tokens"]) == (1200, 3800)
    assert as_dict["token_budget"] == "5000/day"


async def test_idle_principals_are_evicted() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("5/minute")
    for i in range(100):
        await limiter.acquire(f"user{i}", limit, now=T + i * 0.01)
    assert len(limiter) == 100
    # a minute later every log is empty: each call evicts a few from the idle end
    for _ in range(20):
        await limiter.acquire("late", limit, now=T + 2 * MINUTE)
    assert len(limiter) == 1 and limiter.evicted_idle == 100
    # the full scan, for a periodic task
    await limiter.acquire("other", limit, now=T + 2 * MINUTE)
    assert limiter.evict_idle(now=T + 4 * MINUTE) == 2 and len(limiter) == 0


async def test_max_principals_bounds_memory_without_evicting_the_active() -> None:
    limiter, limit = MemoryLimiter(max_principals=10), RateLimit.parse("5/hour")
    for i in range(25):
        await limiter.acquire(f"user{i}", limit, now=T + i)
    # the first ten keep their own windows; the other fifteen shared the overflow window,
    # which let five of them in
    assert len(limiter) == 10 and limiter.overflowed == 15
    assert (await limiter.usage("user0", limit, now=T + 30)).requests == 1
    assert (await limiter.usage("user24", limit, now=T + 30)).requests == 0
    late = await limiter.acquire("user99", limit, now=T + 30)
    assert (late.allowed, late.refused_by) == (False, "requests")
    # once the first ones are idle, newcomers get windows of their own again
    fresh = await limiter.acquire("user99", limit, now=T + HOUR + 1)
    assert fresh.allowed and (await limiter.usage("user99", limit, now=T + HOUR + 1)).requests == 1


async def test_a_flood_of_new_principals_does_not_reset_an_active_window() -> None:
    limiter, limit = MemoryLimiter(max_principals=1000), RateLimit.parse("3/hour")
    for i in range(3):
        assert (await limiter.acquire("victim", limit, now=T + i)).allowed
    assert not (await limiter.acquire("victim", limit, now=T + 3)).allowed
    for i in range(20_000):  # fresh principals, as a client cycling addresses would send
        await limiter.acquire(f"flood{i}", limit, now=T + 4)
    refused = await limiter.acquire("victim", limit, now=T + 5)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert len(limiter) == 1000


async def test_a_high_limit_keeps_its_log_in_slots() -> None:
    """Above 1,024 units a log keeps a window's 1,024th as its resolution: 100,000 requests over
    ten seconds make three entries, not 100,000, and each counts to its slot's end plus the
    window (never less than exact, at most one slot more)."""
    limit = RateLimit.parse("1000000/hour")
    slot_s = limit.slot_us / 1e6
    assert limit.slot_us == round(3600e6) // 1024 and RateLimit.parse("1024/hour").slot_us == 1
    limiter = MemoryLimiter()
    start = (T // slot_s + 1) * slot_s  # a slot boundary: the requests span three slots
    for i in range(100_000):
        assert (await limiter.acquire("p", limit, now=start + 0.5 + i * 1e-4)).allowed
    log = limiter._principals["p"].requests
    assert len(log.entries) == 3 and log.total == 100_000
    in_first_slot = log.entries[0][1]
    first = await limiter.usage("p", limit, now=start + 0.5)
    assert first.reset_at == pytest.approx(start + slot_s + HOUR)  # the first slot's end
    # exact would let the first requests go at start + 0.5 + 1 h; they stay till their slot ends
    assert (await limiter.usage("p", limit, now=start + 0.6 + HOUR)).requests == 100_000
    left = await limiter.usage("p", limit, now=start + slot_s + HOUR)
    assert left.requests == 100_000 - in_first_slot


async def test_concurrent_acquires_count_exactly() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("50/hour")
    decisions = await asyncio.gather(*(limiter.acquire("p", limit) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))


def test_headers_when_allowed() -> None:
    decision = Decision(True, 100, 42, T + 0.2, 0.0)
    assert rate_limit_headers(decision) == [
        (b"x-ratelimit-limit", b"100"),
        (b"x-ratelimit-remaining", b"42"),
        (b"x-ratelimit-reset", b"1700000001"),  # epoch seconds, rounded up
    ]


def test_headers_when_refused_with_a_token_budget() -> None:
    decision = Decision(
        False, 100, 0, T + 10, 0.2, "requests", token_limit=5000, token_remaining=12,
        token_reset_at=T + 7.5,
    )  # fmt: skip
    assert rate_limit_headers(decision) == [
        (b"x-ratelimit-limit", b"100"),
        (b"x-ratelimit-remaining", b"0"),
        (b"x-ratelimit-reset", b"1700000010"),
        (b"x-ratelimit-limit-tokens", b"5000"),
        (b"x-ratelimit-remaining-tokens", b"12"),
        (b"x-ratelimit-reset-tokens", b"1700000008"),
        (b"retry-after", b"1"),  # rounded up, never 0
    ]
    assert (b"retry-after", b"3599") in rate_limit_headers(Decision(False, 1, 0, T, 3598.01))


def test_headers_of_degraded_decisions() -> None:
    assert rate_limit_headers(Decision(True, 100, 100, T, 0.0, degraded=True)) == []
    closed = Decision(False, 100, 0, T, 5.0, degraded=True)
    assert rate_limit_headers(closed) == [(b"retry-after", b"5")]


async def test_headers_from_a_real_sequence() -> None:
    limiter, limit = MemoryLimiter(), RateLimit.parse("1/minute")
    allowed = dict(rate_limit_headers(await limiter.acquire("p", limit, now=T)))
    assert allowed[b"x-ratelimit-remaining"] == b"0"
    assert allowed[b"x-ratelimit-reset"] == b"1700000060"
    assert b"retry-after" not in allowed
    refused = dict(rate_limit_headers(await limiter.acquire("p", limit, now=T + 20.5)))
    assert refused[b"retry-after"] == b"40"
